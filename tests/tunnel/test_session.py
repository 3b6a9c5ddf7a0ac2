"""The endpoint state machines, driven deterministically through a ConnectionPair."""

from __future__ import annotations

import pytest

from tests.tunnel.helpers import make_pair, paired, received
from tunnel.errors import QueueFull, SessionClosed, UsageError
from tunnel.events import (
    CodePaused,
    LinkDown,
    LinkUp,
    Paired,
    PairingFailed,
    SessionEnded,
    StateChanged,
)
from tunnel.handshake import MessageType
from tunnel.identity import PhoneIdentity
from tunnel.session import PhoneEndpoint
from tunnel.settings import Settings
from tunnel.testing.pair import PHONE, STATION, ConnectionPair


def _ended(events: list[object]) -> list[SessionEnded]:
    return [e for e in events if isinstance(e, SessionEnded)]


def _first_to_station(pair: ConnectionPair, conn: int) -> bytes:
    return next(d for dest, d in pair.transports[conn].carried if dest == STATION)


def test_pair_by_uri_binds_the_phone_identity() -> None:
    setup = paired()
    pair = setup.pair
    station_paired = [e for e in pair.station_events if isinstance(e, Paired)]
    phone_paired = [e for e in pair.phone_events if isinstance(e, Paired)]
    assert station_paired[0].fingerprint == setup.identity.fingerprint
    assert phone_paired[0].session_id == station_paired[0].session_id
    assert phone_paired[0].station == "Clinic"
    assert any(isinstance(e, StateChanged) for e in pair.phone_events)


def test_pair_by_code() -> None:
    setup = make_pair(code="0000-0000")  # replaced below by the station's real code
    pair = setup.pair
    code = setup.station_offer.code
    phone = PhoneEndpoint(Settings(), identity=PhoneIdentity.generate(), code=code)
    pair.phone = phone
    pair.connect()
    pair.transfer()
    assert phone.linked and pair.station.linked
    assert pair.station.fingerprint is not None


def test_a_wrong_code_burns_the_code_pauses_codes_and_leaves_the_uri() -> None:
    setup = make_pair(code="0000-0001")
    pair = setup.pair
    old_code = setup.station_offer.code
    if old_code == "0000-0001":
        pytest.skip("the random code happened to match")
    pair.connect()
    pair.transfer()
    assert [e.reason for e in pair.station_events if isinstance(e, PairingFailed)] == [
        "wrong or expired code"
    ]
    assert [e.reason for e in pair.phone_events if isinstance(e, PairingFailed)] == [
        "wrong or expired code"
    ]
    paused = [e for e in pair.station_events if isinstance(e, CodePaused)]
    assert len(paused) == 1 and paused[0].seconds == 4.0 and paused[0].code != old_code
    assert pair.phone.ended is not None and pair.station.offer_open
    # The burnt code is gone for good, even once the pause is over.
    pair.advance(5)
    right_too_late = PhoneEndpoint(Settings(), identity=PhoneIdentity.generate(), code=old_code)
    pair.phone = right_too_late
    pair.connect()
    pair.transfer()
    assert right_too_late.ended is not None and not pair.station.linked
    # The URI was never touched: it pairs at once, pause or not.
    by_uri = PhoneEndpoint(
        Settings(),
        identity=PhoneIdentity.generate(),
        uri_offer=(setup.offer.offer_id, setup.offer.public_key, setup.offer.psk()),
    )
    pair.phone = by_uri
    pair.connect()
    pair.transfer()
    assert by_uri.linked and pair.station.linked


def test_offer_is_single_use_and_a_replayed_hello_is_refused() -> None:
    setup = paired()
    pair = setup.pair
    hello = _first_to_station(pair, 1)
    assert hello[0] == MessageType.PAIR_URI
    second = PhoneEndpoint(
        Settings(),
        identity=PhoneIdentity.generate(),
        uri_offer=(setup.offer.offer_id, setup.offer.public_key, setup.offer.psk()),
    )
    pair.phone, first = second, pair.phone
    pair.connect()
    pair.transfer()
    assert second.ended is not None and "offer" in second.ended
    pair.phone = first
    attacker = pair.connect(phone=False)  # an attacker replays the pairing hello
    pair.inject(STATION, hello, attacker)
    pair.transfer()
    assert attacker not in pair.transports
    pair.connect()  # the real phone resumes, undisturbed
    pair.transfer()
    assert first.linked and pair.station.linked


def test_messages_survive_cuts_exactly_once_in_order() -> None:
    pair = paired().pair
    sent = []
    for i in range(300):
        payload = b"cmd-%d" % i
        pair.station.send(payload, pair.now)
        pair.phone.send(b"msg-%d" % i, pair.now)
        sent.append(payload)
        if i % 37 == 0:
            pair.step()
            pair.cut()
            pair.connect()
    pair.transfer()
    assert received(pair.phone_events) == sent
    assert received(pair.station_events) == [b"msg-%d" % i for i in range(300)]
    pair.advance(0.1)  # the delayed acks
    assert pair.station.undelivered == 0 and pair.phone.undelivered == 0


def test_each_resume_ratchets_and_a_used_secret_is_refused() -> None:
    pair = paired().pair
    secrets = [pair.phone.export_state().secret]
    hellos = []
    for _ in range(3):
        pair.cut()
        conn = pair.connect()
        pair.transfer()
        hellos.append(_first_to_station(pair, conn))
        secrets.append(pair.phone.export_state().secret)
    assert len(set(secrets)) == 4
    # A stale resume hello (its secret is two ratchets old) on a fresh transport.
    attacker = pair.connect(phone=False)
    pair.inject(STATION, hellos[0], attacker)
    pair.transfer()
    assert attacker not in pair.transports  # refused and closed
    assert pair.station.linked and pair.phone.linked


def test_exact_replay_of_a_resume_hello_is_refused() -> None:
    pair = paired().pair
    pair.cut()
    conn = pair.connect()
    pair.transfer()
    hello = _first_to_station(pair, conn)
    attacker = pair.connect(phone=False)
    pair.inject(STATION, hello, attacker)
    pair.transfer()
    assert attacker not in pair.transports
    assert pair.station.linked and pair.phone.linked


def test_lost_accept_and_lost_confirmation_both_resume() -> None:
    pair = paired().pair
    pair.station.send(b"one", pair.now)
    pair.transfer()
    # 1. The station accepts a resume but the ACCEPT never reaches the phone.
    pair.cut()
    pair.connect()
    pair.step()  # hello -> station; ACCEPT now waits for the phone
    pair.cut()
    # 2. The phone completes the next resume but its confirmation is lost.
    pair.connect()
    pair.step()
    pair.step()  # ACCEPT -> phone; its confirming Ack waits for the station
    pair.cut()
    pair.station.send(b"two", pair.now)
    pair.connect()
    pair.transfer()
    assert pair.phone.linked and pair.station.linked
    assert received(pair.phone_events) == [b"one", b"two"]


def test_logout_ends_the_session_for_good() -> None:
    pair = paired().pair
    pair.station.send(b"queued", pair.now)
    pair.station.close("explicit", pair.now)
    pair.transfer()
    assert _ended(pair.phone_events)[0].reason == "explicit"
    assert _ended(pair.phone_events)[0].by_peer
    with pytest.raises(SessionClosed):
        pair.station.send(b"late", pair.now)
    # A phone that missed the Close and tries to resume is told the session ended.
    setup = paired()
    p2 = setup.pair
    p2.cut()
    p2.station.close("explicit", p2.now)
    p2.connect()
    p2.transfer()
    assert p2.phone.ended is not None and "ended" in p2.phone.ended


def test_remote_logout_from_the_phone() -> None:
    pair = paired().pair
    pair.phone.close("remote", pair.now)
    pair.transfer()
    ended = _ended(pair.station_events)
    assert ended and ended[0].reason == "remote" and ended[0].by_peer


def test_oversized_and_forged_records_drop_the_transport_not_the_session() -> None:
    pair = paired().pair
    pair.inject(PHONE, b"\x00" * (Settings().max_record + 1))
    pair.transfer()
    assert any(isinstance(e, LinkDown) for e in pair.phone_events)
    pair.connect()
    pair.transfer()
    pair.inject(STATION, b"\x00" * 8 + b"\xff" * 40)  # right counter, forged tag
    pair.transfer()
    assert not pair.station.linked
    pair.connect()
    pair.station.send(b"still here", pair.now)
    pair.transfer()
    assert received(pair.phone_events) == [b"still here"]


def test_a_full_queue_refuses_while_offline() -> None:
    pair = paired(settings=Settings(queue_max_count=5)).pair
    pair.cut()
    for i in range(5):
        pair.station.send(b"%d" % i, pair.now)
    with pytest.raises(QueueFull):
        pair.station.send(b"overflow", pair.now)
    pair.connect()
    pair.transfer()
    assert received(pair.phone_events) == [b"0", b"1", b"2", b"3", b"4"]


def test_blackhole_is_noticed_by_liveness_and_resumed() -> None:
    pair = paired().pair
    pair.blackhole()
    pair.station.send(b"during", pair.now)
    start = pair.now
    pair.run_until(lambda: not pair.phone.linked and not pair.station.linked, timeout=10)
    assert pair.now - start <= Settings().link_timeout + 0.05
    pair.connect()
    pair.transfer()
    assert received(pair.phone_events) == [b"during"]
    assert any(isinstance(e, LinkUp) and e.resumed for e in pair.phone_events)


def test_manual_ack_and_restart_from_saved_state() -> None:
    manual = Settings(auto_ack=False)
    setup = paired(phone_settings=manual)
    pair = setup.pair
    for i in range(4):
        pair.station.send(b"%d" % i, pair.now)
    pair.transfer()
    assert pair.station.undelivered == 4  # delivered, not yet durably applied
    pair.phone.acknowledge(2, pair.now)
    pair.advance(0.1)
    assert pair.station.undelivered == 2
    # The phone dies; it had applied 1..2. A new process resumes from saved state.
    state = pair.phone.export_state()
    pair.cut()
    pair.phone = PhoneEndpoint(manual, state=state)
    pair.phone_events.clear()
    pair.connect()
    pair.transfer()
    assert received(pair.phone_events) == [b"2", b"3"]  # 3 and 4 again, never 1 or 2


def test_acks_go_when_input_is_idle_or_after_a_durable_apply_not_after_a_timer() -> None:
    pair = paired().pair
    for i in range(5):
        pair.station.send(b"%d" % i, pair.now)
    pair.transfer()
    assert pair.station.undelivered == 5  # auto-ack waits for the end of the burst
    link = pair.current
    assert link is not None
    before = len(link.carried)
    pair.phone.input_idle(pair.now)  # the adapter read everything that was buffered
    pair.transfer()
    assert pair.station.undelivered == 0  # no time passed
    assert len(link.carried) == before + 1  # one ack for the whole burst
    pair.phone.input_idle(pair.now)  # nothing left to acknowledge: nothing sent
    pair.transfer()
    assert len(link.carried) == before + 1
    # Manual mode: the application's acknowledge goes at once (it batched already).
    manual = paired(phone_settings=Settings(auto_ack=False)).pair
    manual.station.send(b"x", manual.now)
    manual.transfer()
    manual.phone.input_idle(manual.now)  # nothing durable yet: no ack
    manual.transfer()
    assert manual.station.undelivered == 1
    manual.phone.acknowledge(1, manual.now)
    manual.transfer()
    assert manual.station.undelivered == 0


def test_a_backlog_goes_in_runs_filling_records_and_arrives_once_in_order() -> None:
    pair = paired().pair
    pair.cut()
    sent = [b"m%04d" % i + b"x" * 300 for i in range(600)]
    for payload in sent:
        pair.station.send(payload, pair.now)
    pair.connect()
    pair.transfer()
    assert received(pair.phone_events) == sent
    link = pair.current
    assert link is not None
    to_phone = [data for name, data in link.carried if name == PHONE]
    # 600 messages of ~300 bytes in a few 64 KiB records (plus the handshake), not 600.
    assert len(to_phone) < 20
    assert max(len(d) for d in to_phone) <= pair.station.settings.max_record
    assert pair.station.undelivered == 0 or pair.run_until(
        lambda: pair.station.undelivered == 0, timeout=1
    )


def test_a_message_too_large_for_a_record_is_refused_before_it_is_queued() -> None:
    pair = paired().pair
    limit = pair.station.max_payload
    with pytest.raises(UsageError, match="does not fit in one record"):
        pair.station.send(b"x" * (limit + 1), pair.now)
    assert pair.station.undelivered == 0  # nothing half-queued to wedge the channel
    pair.station.send(b"x" * limit, pair.now)
    pair.transfer()
    assert received(pair.phone_events) == [b"x" * limit]
