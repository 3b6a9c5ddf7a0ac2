"""Turn what the medic typed (a URI or a short code) into where and how to link."""

from __future__ import annotations

from medic_phone.errors import PhoneError
from medic_phone.node import Target
from medic_phone.store import PhoneStore
from tunnel.offer import PairingOffer
from tunnel.pake import normalize_code


def _url(host: str, port: int) -> str:
    return f"ws://[{host}]:{port}/" if ":" in host else f"ws://{host}:{port}/"


def _parse_connect(connect: str) -> str:
    host, sep, port = connect.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PhoneError(f"--connect wants HOST:PORT, not {connect!r}")
    return _url(host.strip("[]"), int(port))


async def resolve_target(
    text: str,
    store: PhoneStore,
    *,
    station: str | None,
    connect: str | None,
    listen_for: float,
) -> Target:
    text = text.strip()
    if text.lower().startswith("fieldstation:"):
        offer = PairingOffer.from_uri(text)
        key = "offer:" + offer.offer_id.hex()
        urls = (
            (_parse_connect(connect),) if connect else tuple(_url(h, p) for h, p in offer.addresses)
        )
        saved = await store.find_link(key)
        if saved is None:
            import time

            if offer.is_expired(time.time()):
                raise PhoneError("this pairing URI has expired: scan the current code")
        return Target(
            key, urls, offer.station, uri_offer=(offer.offer_id, offer.public_key, offer.psk())
        )
    code = normalize_code(text)
    key = "code:" + code
    if connect:
        return Target(key, (_parse_connect(connect),), station or "", code=code)
    from medic_phone.discovery import find_station

    found = await find_station(station, listen_for)
    urls = tuple(_url(a, found.port) for a in found.addresses)
    return Target(key, urls, found.name, code=code)
