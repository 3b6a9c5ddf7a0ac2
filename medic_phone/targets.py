"""Turn what the medic typed (a URI or a short code) into where and how to link.

Nothing here touches the network: mDNS answers are gathered while linking
(``medic_phone.connect``), beside the addresses known here (the URI's, ``--connect``,
or where a saved link last reached its station).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lan.addresses import is_loopback
from medic_phone.errors import PhoneError
from medic_phone.store import PhoneStore
from tunnel.offer import PairingOffer
from tunnel.pake import normalize_code

# An offer stays valid this long after it rotates (the station keeps the previous one),
# so a URI whose expiry has just passed may still pair.
OFFER_GRACE = 10.0
# A code's offer lives at most a rotation plus the grace; the phone cannot know when the
# code was shown, so it allows the default rotation (30 s) plus the grace.
CODE_WINDOW = 40.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to link: from a URI, a code, ``--connect``, or a saved link."""

    key: str  # what identifies this pairing in the store: the offer id or the code
    addresses: tuple[tuple[str, int], ...]  # known before any mDNS answer
    station: str  # the station's name when known ("" for a code without --station)
    uri_offer: tuple[bytes, bytes, bytes] | None = None
    code: str | None = None
    source: str = "uri"  # where ``addresses`` came from: uri | connect
    valid_until: float | None = None  # unix time after which the offer cannot be valid
    mdns: bool = True  # whether to listen for the station on mDNS
    listen_for: float = 3.0  # how long a code waits for a first mDNS answer

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(_url(h, p) for h, p in self.addresses)


def _url(host: str, port: int) -> str:
    return f"ws://[{host}]:{port}/" if ":" in host else f"ws://{host}:{port}/"


def parse_connect(connect: str) -> tuple[str, int]:
    host, sep, port = connect.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PhoneError(f"--connect wants HOST:PORT, not {connect!r}")
    return host.strip("[]"), int(port)


def parse_address(text: str) -> tuple[str, int] | None:
    """A saved ``host:port`` (or ``[v6]:port``), or None when it does not parse."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def wants_mdns(addresses: tuple[tuple[str, int], ...], *, allowed: bool) -> bool:
    """Listen on mDNS unless told not to, or unless every known address is this
    machine's own (a station on loopback is never on the LAN; nor is its traffic)."""
    if not allowed:
        return False
    return not addresses or not all(is_loopback(h) for h, _ in addresses)


async def resolve_target(
    text: str,
    store: PhoneStore,
    *,
    station: str | None,
    connect: str | None,
    listen_for: float,
    mdns: bool = True,
) -> Target:
    text = text.strip()
    fixed = (parse_connect(connect),) if connect else ()
    if text.lower().startswith("fieldstation:"):
        offer = PairingOffer.from_uri(text)
        key = "offer:" + offer.offer_id.hex()
        expired = time.time() >= offer.expires_at + OFFER_GRACE
        if expired and await store.find_link(key) is None:  # a saved link still resumes
            raise PhoneError("this pairing URI has expired: scan the current code")
        addresses = fixed or offer.addresses
        return Target(
            key,
            addresses,
            offer.station,
            uri_offer=(offer.offer_id, offer.public_key, offer.psk()),
            source="connect" if fixed else "uri",
            valid_until=offer.expires_at + OFFER_GRACE,
            mdns=wants_mdns(addresses, allowed=mdns and not fixed),
            listen_for=listen_for,
        )
    code = normalize_code(text)
    return Target(
        "code:" + code,
        fixed,
        station or "",
        code=code,
        source="connect",
        valid_until=time.time() + CODE_WINDOW,
        mdns=mdns and not fixed,
        listen_for=listen_for,
    )
