"""The pairing URI: what parses (and into what) and what is refused, by the real parser."""

from __future__ import annotations

from tests.vectors.fixed import JSON, hx
from tests.vectors.session import make_offer
from tunnel.errors import OfferFormatError
from tunnel.offer import PairingOffer


def _case(what: str, uri: str) -> JSON:
    try:
        offer = PairingOffer.from_uri(uri)
    except OfferFormatError as exc:
        return {"case": what, "uri": uri, "ok": False, "error": str(exc)}
    return {
        "case": what,
        "uri": uri,
        "ok": True,
        "version": offer.version,
        "station": offer.station,
        "addresses": [[host, port] for host, port in offer.addresses],
        "offer_id": hx(offer.offer_id),
        "offer_key": hx(offer.public_key),
        "secret": hx(offer.secret),
        "expires_at": offer.expires_at,
        "psk": hx(offer.psk()),
    }


def uri_cases() -> JSON:
    offer, _, _ = make_offer()
    good = offer.to_uri()
    query = good.split("?", 1)[1]
    fields = dict(p.split("=", 1) for p in query.split("&") if not p.startswith("a="))

    def uri(**changes: str | None) -> str:
        merged = {**fields, **changes}
        parts = [f"{k}={v}" for k, v in merged.items() if v is not None and k != "a"]
        addresses = changes.get("a") or "192.0.2.10:8765"
        return "fieldstation://pair?" + "&".join(
            [*(f"a={a}" for a in addresses.split("|")), *parts]
        )

    cases = [
        ("the QR code of session.json", good),
        ("a DNS name and a second, IPv6 address", uri(a="kiosk-3.local:8765|[fe80::1]:9000")),
        ("an unknown parameter is ignored", good + "&z=later"),
        ("'+' in a value is a space", uri(n="Clinic+B")),
        ("version 3", uri(v="3")),
        ("base64url with padding", uri(id=fields["id"] + "=")),
        ("an offer id of 9 bytes", uri(id="AAAAAAAAAAAA")),
        ("no secret", uri(s=None)),
        ("the name twice", good + "&n=other"),
        ("an IPv6 address without brackets", uri(a="2001:db8::a:8765")),
        ("port 0", uri(a="192.0.2.10:0")),
        ("no address", "fieldstation://pair?" + "&".join(f"{k}={v}" for k, v in fields.items())),
        ("not a pairing URI", good.replace("//pair?", "//join?")),
    ]
    return {
        "description": "URIs as the real parser reads them: the fields and the psk of each"
        " that parses, the error of each that does not (the message is the reference"
        " phone's; only ok/not ok is the standard). Expiry (x) is judged by the phone's"
        " clock and is not checked here.",
        "cases": [_case(what, text) for what, text in cases],
    }
