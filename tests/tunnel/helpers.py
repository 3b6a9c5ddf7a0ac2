"""Building endpoints and pairs for tunnel tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tunnel.events import MessageReceived
from tunnel.handshake import StationOffer
from tunnel.identity import PhoneIdentity
from tunnel.offer import PairingOffer, new_offer
from tunnel.pake import generate_code
from tunnel.session import PhoneEndpoint, StationEndpoint
from tunnel.settings import Settings
from tunnel.testing.pair import ConnectionPair


@dataclass
class Setup:
    pair: ConnectionPair
    offer: PairingOffer
    station_offer: StationOffer
    identity: PhoneIdentity


def station_offer(name: str = "Clinic") -> tuple[PairingOffer, StationOffer]:
    offer, keypair = new_offer(name, [("127.0.0.1", 8765)], now=0, ttl=30)
    return offer, StationOffer(offer.offer_id, keypair, offer.psk(), generate_code())


def make_pair(
    *,
    code: str | None = None,
    settings: Settings | None = None,
    phone_settings: Settings | None = None,
) -> Setup:
    offer, so = station_offer()
    settings = settings or Settings()
    station = StationEndpoint(settings, station="Clinic", offer=so)
    identity = PhoneIdentity.generate()
    if code is not None:
        phone = PhoneEndpoint(phone_settings or settings, identity=identity, code=code)
    else:
        phone = PhoneEndpoint(
            phone_settings or settings,
            identity=identity,
            uri_offer=(offer.offer_id, offer.public_key, offer.psk()),
        )
    return Setup(ConnectionPair(phone, station), offer, so, identity)


def paired(**kwargs: object) -> Setup:
    setup = make_pair(**kwargs)  # type: ignore[arg-type]
    setup.pair.connect()
    setup.pair.transfer()
    assert setup.pair.phone.linked and setup.pair.station.linked
    return setup


def received(events: Sequence[object]) -> list[bytes]:
    return [e.payload for e in events if isinstance(e, MessageReceived)]
