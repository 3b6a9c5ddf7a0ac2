"""The phone runs several handshakes at once (every address of the station): the first
completed handshake wins, a TCP peer that merely accepts or refuses in clear text wins
nothing, and the losers are closed. Driven by hand, byte by byte, with no sockets."""

from __future__ import annotations

from tests.tunnel.helpers import station_offer
from tunnel.events import AttemptFailed, LinkUp, Paired, PairingFailed, SessionEnded
from tunnel.handshake import RefuseCode, encode_refusal
from tunnel.identity import PhoneIdentity
from tunnel.session import PhoneEndpoint, PhoneState, StationEndpoint
from tunnel.settings import Settings

NOW = 100.0


def _phone_for(offer: object) -> PhoneEndpoint:
    return PhoneEndpoint(
        Settings(),
        identity=PhoneIdentity.generate(),
        uri_offer=(offer.offer_id, offer.public_key, offer.psk()),  # type: ignore[attr-defined]
        parallel=True,
    )


def _out(phone: PhoneEndpoint, conn: int) -> list[bytes]:
    return [d for c, d in phone.data_to_send() if c == conn]


def _relay(src: PhoneEndpoint | StationEndpoint, dst: PhoneEndpoint | StationEndpoint) -> None:
    """Carry everything ``src`` wrote, on the same transport numbers, to ``dst``."""
    for conn, data in src.data_to_send():
        dst.receive(conn, data, NOW)


def test_a_silent_rogue_loses_to_the_station_that_completes_the_handshake() -> None:
    offer, station_offer_ = station_offer()
    station = StationEndpoint(Settings(), station="Clinic", offer=station_offer_)
    phone = _phone_for(offer)
    phone.connection_made(1, NOW)  # a rogue that accepted TCP and says nothing
    phone.connection_made(2, NOW)  # the real station
    hellos = phone.data_to_send()
    assert sorted(c for c, _ in hellos) == [1, 2]
    station.connection_made(2, NOW)
    station.receive(2, next(d for c, d in hellos if c == 2), NOW)
    _relay(station, phone)
    events = phone.events()
    assert any(isinstance(e, Paired) for e in events)
    assert [e.conn for e in events if isinstance(e, LinkUp)] == [2]
    assert not any(isinstance(e, AttemptFailed) for e in events)  # the loser just closes
    assert (1, "another address answered first") in phone.close_requests()
    _relay(phone, station)  # the phone's confirmation
    assert station.linked and phone.linked


def test_a_clear_text_refusal_is_advisory_while_another_attempt_can_complete() -> None:
    offer, station_offer_ = station_offer()
    station = StationEndpoint(Settings(), station="Clinic", offer=station_offer_)
    phone = _phone_for(offer)
    phone.connection_made(1, NOW)
    phone.connection_made(2, NOW)
    hellos = dict(phone.data_to_send())
    phone.receive(1, encode_refusal(RefuseCode.OFFER_USED, "offer already used"), NOW)
    events = phone.events()
    failed = [e for e in events if isinstance(e, AttemptFailed)]
    assert [(e.conn, e.refusal) for e in failed] == [(1, int(RefuseCode.OFFER_USED))]
    assert phone.ended is None and not any(isinstance(e, PairingFailed) for e in events)
    station.connection_made(2, NOW)
    station.receive(2, hellos[2], NOW)
    _relay(station, phone)
    assert phone.linked and phone.session_id is not None


def test_the_caller_ends_pairing_and_a_cut_attempt_is_reported_not_final() -> None:
    offer, _ = station_offer()
    phone = _phone_for(offer)
    phone.connection_made(1, NOW)
    phone.connection_lost(1, NOW)
    assert [type(e) for e in phone.events()] == [AttemptFailed]
    assert phone.ended is None
    phone.give_up("the offer expired", NOW)
    events = phone.events()
    assert [e.reason for e in events if isinstance(e, PairingFailed)] == ["the offer expired"]
    assert any(isinstance(e, SessionEnded) for e in events) and phone.ended is not None


def test_parallel_resumes_one_wins_and_the_session_goes_on() -> None:
    offer, station_offer_ = station_offer()
    station = StationEndpoint(Settings(), station="Clinic", offer=station_offer_)
    phone = _phone_for(offer)
    phone.connection_made(1, NOW)
    station.connection_made(1, NOW)
    _relay(phone, station)
    _relay(station, phone)
    _relay(phone, station)
    assert phone.linked and station.linked
    phone.connection_lost(1, NOW)
    station.connection_lost(1, NOW)
    phone.events()
    station.events()
    # The phone resumes on two transports at once, both reaching the station.
    phone.connection_made(2, NOW)
    phone.connection_made(3, NOW)
    hellos = dict(phone.data_to_send())
    for conn in (2, 3):
        station.connection_made(conn, NOW)
        station.receive(conn, hellos[conn], NOW)
    accepts = dict(station.data_to_send())
    phone.receive(3, accepts[3], NOW)  # the second transport answers first
    phone.receive(2, accepts[2], NOW)  # too late: closed already
    events = phone.events()
    assert [e.conn for e in events if isinstance(e, LinkUp)] == [3]
    _relay(phone, station)
    assert station.linked
    seq = station.send(b"after the race", NOW)
    _relay(station, phone)
    assert seq == 1 and phone.channel.delivered == 1
    # The secret ratcheted along the winner: the next resume works.
    state = phone.export_state()
    again = PhoneEndpoint(Settings(), state=PhoneState.from_bytes(state.to_bytes()), parallel=True)
    station.connection_lost(3, NOW)
    again.connection_made(4, NOW)
    station.connection_made(4, NOW)
    _relay(again, station)
    _relay(station, again)
    _relay(again, station)
    assert again.linked and station.linked


def test_saved_state_keeps_where_the_station_was_reached() -> None:
    state = PhoneState(b"s" * 16, b"k" * 32, 3, 2, "clinic-a", ("10.0.0.1:8765", "10.0.1.1:8765"))
    again = PhoneState.from_bytes(state.to_bytes())
    assert again == state
    old = PhoneState(b"s" * 16, b"k" * 32, 3, 2, "clinic-a")
    assert PhoneState.from_bytes(old.to_bytes()) == old  # version 1 still reads
