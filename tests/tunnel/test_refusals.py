"""Refusals a phone may believe (MACs under the resumption secret) and ones it must not;
resume gaps named, never relabelled; resumes keyed by any pending secret."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tunnel.helpers import paired, received
from tunnel.errors import MalformedRecord, UsageError
from tunnel.events import LinkDown, ResumeGap, SessionEnded
from tunnel.frames import Ack, encode_frame
from tunnel.handshake import PhoneResume, Refused, ResumeResult, parse_refusal
from tunnel.records import RecordSender
from tunnel.refusal import (
    RefusalBody,
    RefuseCode,
    authenticated_refusal,
    encode_refusal,
    seq_ranges,
)
from tunnel.session import PhoneEndpoint
from tunnel.settings import Settings
from tunnel.testing.pair import PHONE, STATION, ConnectionPair

SID = bytes(range(16))
SECRET = b"\x11" * 32
EPHEMERAL = b"\x22" * 32


def _ended(events: list[object]) -> list[SessionEnded]:
    return [e for e in events if isinstance(e, SessionEnded)]


# -- the MAC ---------------------------------------------------------------------------


def test_an_authenticated_refusal_verifies_only_under_its_secret_and_binding() -> None:
    body = RefusalBody(reason="inactivity", undelivered=((41, 57),))
    data = authenticated_refusal(
        RefuseCode.SESSION_ENDED, "session ended", session_id=SID, secrets=[SECRET], body=body
    )
    refusal = parse_refusal(data)
    assert refusal.verify(SID, SECRET, EPHEMERAL) and refusal.details == body
    assert not parse_refusal(data).verify(SID, b"\x12" * 32, EPHEMERAL)
    assert not parse_refusal(data).verify(bytes(16), SECRET, EPHEMERAL)
    bound = authenticated_refusal(
        RefuseCode.RESUME_GAP,
        "seqs 41-57 gone",
        session_id=SID,
        secrets=[SECRET],
        body=RefusalBody(gap=(41, 57)),
        binding=EPHEMERAL,
    )
    assert parse_refusal(bound).verify(SID, SECRET, EPHEMERAL)
    assert not parse_refusal(bound).verify(SID, SECRET, b"\x23" * 32)  # another hello


def test_one_mac_per_secret_the_station_would_accept() -> None:
    other = b"\x33" * 32
    data = authenticated_refusal(
        RefuseCode.SESSION_ENDED, "session ended", session_id=SID, secrets=[SECRET, other]
    )
    assert parse_refusal(data).verify(SID, SECRET, b"")
    assert parse_refusal(data).verify(SID, other, b"")


def test_a_clear_refusal_never_verifies() -> None:
    refusal = parse_refusal(encode_refusal(RefuseCode.SESSION_ENDED, "session ended"))
    assert not refusal.verify(SID, SECRET, EPHEMERAL) and not refusal.authenticated


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_tampered_byte_breaks_the_refusal(data: st.DataObject) -> None:
    raw = bytearray(
        authenticated_refusal(
            RefuseCode.SESSION_ENDED,
            "session ended",
            session_id=SID,
            secrets=[SECRET],
            body=RefusalBody(reason="explicit", undelivered=((3, 9),)),
        )
    )
    at = data.draw(st.integers(min_value=1, max_value=len(raw) - 1))
    raw[at] ^= data.draw(st.integers(min_value=1, max_value=255))
    try:
        refusal = parse_refusal(bytes(raw))
    except MalformedRecord:
        return
    assert not refusal.verify(SID, SECRET, EPHEMERAL)


def test_body_items_round_trip_and_unknown_items_are_skipped() -> None:
    body = RefusalBody(reason="remote", undelivered=((1, 1), (4, 9)), gap=(2, 3), receipt=b"r")
    assert RefusalBody.decode(body.encode()) == body
    assert RefusalBody.decode(b"\x09\x00\x03abc" + body.encode()) == body  # a future item
    with pytest.raises(MalformedRecord):
        RefusalBody.decode(b"\x02\x00\x05abcde")
    assert seq_ranges([9, 3, 4, 5, 5]) == ((3, 5), (9, 9))


# -- what the phone believes -------------------------------------------------------------


def test_a_logout_while_the_phone_was_away_ends_it_authenticated() -> None:
    pair = paired().pair
    pair.cut()
    pair.station.send(b"never delivered", pair.now)
    pair.station.close("inactivity", pair.now)
    refusal = parse_refusal(pair.station.ended_refusal or b"")
    assert refusal.code is RefuseCode.SESSION_ENDED and len(refusal.macs) == 1
    pair.connect()
    pair.transfer()
    ended = _ended(pair.phone_events)
    assert ended and ended[0].by_peer
    assert pair.phone.ended == "session ended at the station (inactivity)"
    assert pair.phone.ended_details is not None
    assert pair.phone.ended_details.undelivered == ((1, 1),)
    again = parse_refusal(pair.station.ended_refusal or b"")
    assert again.verify(pair.station.session_id or b"", pair.phone.export_state().secret, b"")
    assert again.details.undelivered == ((1, 1),)


@pytest.mark.parametrize("code", [RefuseCode.SESSION_ENDED, RefuseCode.RESUME_GAP])
def test_a_clear_final_refusal_is_only_advisory(code: RefuseCode) -> None:
    """A rogue's clear-text SESSION_ENDED (or a forged gap) does not end the session."""
    pair = paired().pair
    pair.cut()
    conn = pair.connect()
    pair.transports[conn].to_station.clear()  # the rogue answers instead of the station
    pair.station.connection_lost(conn, pair.now)
    pair.inject(PHONE, encode_refusal(code, "session ended"), conn)
    pair.transfer()
    assert pair.phone.ended is None
    assert any(isinstance(e, LinkDown) and "refused" in e.reason for e in pair.phone_events)
    assert pair.phone.wants_transport  # it keeps trying
    pair.connect()
    pair.transfer()
    assert pair.phone.linked and pair.station.linked


def test_a_refusal_with_a_wrong_mac_is_only_advisory() -> None:
    pair = paired().pair
    pair.cut()
    conn = pair.connect()
    pair.transports[conn].to_station.clear()
    pair.station.connection_lost(conn, pair.now)
    forged = authenticated_refusal(
        RefuseCode.SESSION_ENDED,
        "session ended",
        session_id=pair.phone.session_id or b"",
        secrets=[b"\x44" * 32],
    )
    pair.inject(PHONE, forged, conn)
    pair.transfer()
    assert pair.phone.ended is None and pair.phone.wants_transport


# -- gaps, never relabelled ----------------------------------------------------------------


def _restored_phone_gets_a_gap(total: int, restore_at: int) -> ConnectionPair:
    """The phone's store is copied after ``restore_at`` commands, more arrive, and the
    copy is restored: its resumption secret is still the current one."""
    pair = paired().pair
    for i in range(1, total + 1):
        pair.station.send(b"cmd-%d" % i, pair.now)
        if i == restore_at:
            pair.transfer()
            pair.advance(0.01)
            old = pair.phone.export_state()
    pair.transfer()
    pair.advance(0.01)
    assert pair.station.channel.acked == total
    pair.cut()
    pair.phone = PhoneEndpoint(Settings(), state=old)
    pair.phone_events.clear()  # from here on: what the restored phone saw
    pair.connect()
    pair.transfer()
    return pair


def test_a_phone_restored_from_an_older_copy_is_told_the_gap() -> None:
    pair = _restored_phone_gets_a_gap(57, 40)
    assert [e for e in pair.station_events if isinstance(e, ResumeGap)] == [ResumeGap(41, 57)]
    assert [e for e in pair.phone_events if isinstance(e, ResumeGap)] == [ResumeGap(41, 57)]
    assert pair.phone.ended == (
        "resume refused: seqs 41-57 were acknowledged by this phone before but are not in its store"
    )
    assert received(pair.phone_events) == []  # nothing relabelled reached it
    # The station's numbering is untouched: the next command is 58, not 41.
    assert pair.station.send(b"next", pair.now) == 58
    assert [s for s, _ in pair.station.queue.items()] == [58]


def test_a_gap_refusal_is_bound_to_its_hello() -> None:
    pair = paired().pair
    old = pair.phone.export_state()
    for i in range(3):
        pair.station.send(b"cmd-%d" % i, pair.now)
    pair.transfer()
    pair.advance(0.01)
    driver = PhoneResume(old.session_id, old.secret, old.delivered)
    conn = pair.connect(phone=False)
    carried = pair.transports[conn].carried
    pair.inject(STATION, driver.first_message(), conn)
    pair.transfer()
    answer = next(d for dest, d in carried if dest == PHONE)
    with pytest.raises(Refused) as refused:
        driver.receive(answer)
    assert refused.value.authenticated and refused.value.details.gap == (1, 3)
    # Replayed to another hello (another ephemeral), it is only advisory.
    other = PhoneResume(old.session_id, old.secret, old.delivered)
    other.first_message()
    with pytest.raises(Refused) as replayed:
        other.receive(answer)
    assert not replayed.value.authenticated


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=40), st.data())
def test_station_seqs_are_fixed_when_queued(total: int, data: st.DataObject) -> None:
    restore_at = data.draw(st.integers(min_value=0, max_value=total))
    pair = paired().pair
    old = pair.phone.export_state()
    for i in range(1, total + 1):
        pair.station.send(b"cmd-%d" % i, pair.now)
        if i == restore_at:
            pair.transfer()
            pair.advance(0.01)
            old = pair.phone.export_state()
    pair.transfer()
    pair.advance(0.01)
    extra = data.draw(st.integers(min_value=0, max_value=5))
    pair.cut()
    for j in range(extra):  # queued while the phone is away
        assert pair.station.send(b"cmd-%d" % (total + 1 + j), pair.now) == total + 1 + j
    pair.phone = PhoneEndpoint(Settings(), state=old)
    pair.phone_events.clear()
    pair.connect()
    pair.transfer()
    gaps = [e for e in pair.station_events if isinstance(e, ResumeGap)]
    if restore_at < total:
        assert gaps == [ResumeGap(restore_at + 1, total)] and pair.phone.ended is not None
    else:
        assert gaps == [] and pair.phone.linked
        assert received(pair.phone_events) == [
            b"cmd-%d" % s for s in range(total + 1, total + 1 + extra)
        ]
    for seq, payload in pair.station.queue.items():
        assert payload == b"cmd-%d" % seq  # every queued command keeps its number


def test_a_station_channel_refuses_to_renumber() -> None:
    pair = paired().pair
    with pytest.raises(UsageError, match="never renumbers"):
        pair.station.channel.rewind(5)


# -- concurrent resumes ----------------------------------------------------------------


def _resume_by_hand(pair: ConnectionPair, secret: bytes) -> tuple[int, ResumeResult]:
    """A resume handshake the test drives itself (as a phone's parallel candidate)."""
    state = pair.phone.export_state()
    driver = PhoneResume(state.session_id, secret, state.delivered)
    conn = pair.connect(phone=False)
    carried = pair.transports[conn].carried
    pair.inject(STATION, driver.first_message(), conn)
    pair.transfer()
    answer = [d for dest, d in carried if dest == PHONE][-1]
    _, result = driver.receive(answer)
    assert result is not None
    return conn, result


def test_a_resume_keyed_by_any_pending_secret_is_accepted() -> None:
    """Two handshakes at once on the confirmed secret; the phone kept the first's new
    secret but its confirmation was lost: it resumes with it, though a later one was
    accepted after."""
    pair = paired().pair
    confirmed = pair.phone.export_state().secret
    pair.cut()
    _, first = _resume_by_hand(pair, confirmed)
    _, second = _resume_by_hand(pair, confirmed)
    conn, third = _resume_by_hand(pair, first.keys.next_secret)
    sender = RecordSender(third.keys.send)
    pair.inject(STATION, sender.seal(encode_frame(Ack(0))), conn)
    pair.transfer()
    assert pair.station.linked
    assert second.keys.next_secret != third.keys.next_secret


def test_confirming_one_resume_forgets_the_others() -> None:
    pair = paired().pair
    confirmed = pair.phone.export_state().secret
    pair.cut()
    conn_a, a = _resume_by_hand(pair, confirmed)
    conn_b, b = _resume_by_hand(pair, confirmed)
    sender = RecordSender(b.keys.send)
    pair.inject(STATION, sender.seal(encode_frame(Ack(0))), conn_b)
    pair.transfer()
    assert pair.station.linked
    assert conn_a not in pair.transports  # closed by the station: superseded
    # The loser's new secret is dead: a resume keyed by it is refused.
    conn = pair.connect(phone=False)
    state = pair.phone.export_state()
    driver = PhoneResume(state.session_id, a.keys.next_secret, 0)
    pair.inject(STATION, driver.first_message(), conn)
    pair.transfer()
    assert conn not in pair.transports


def test_the_ended_refusal_carries_the_wipe_receipt_within_its_limits() -> None:
    pair = paired().pair
    pair.cut()
    for i in range(40):
        pair.station.send(b"%d" % i, pair.now)
    pair.station.ended_receipt = b"s" * 64 + b"{" + b"x" * 430 + b"}"
    pair.station.close("inactivity", pair.now)
    raw = pair.station.ended_refusal or b""
    assert len(raw) <= 1024
    pair.connect()
    pair.transfer()
    details = pair.phone.ended_details
    assert details is not None and details.receipt == pair.station.ended_receipt
