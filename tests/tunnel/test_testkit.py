"""The public test kit: the fake clock, the pair following the fault model, PairFaults."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings

from drill.faults import FaultEvent, FaultSchedule
from tests.tunnel.helpers import make_pair, paired, received
from tunnel.errors import LinkError, UsageError
from tunnel.events import LinkDown, LinkUp
from tunnel.settings import Settings
from tunnel.testing import (
    PHONE,
    STATION,
    ConnectionPair,
    Deliver,
    FakeClock,
    PairFaults,
    Reorder,
    Replay,
    Tamper,
    Wait,
)
from tunnel.testing.strategies import schedules

# -- FakeClock ------------------------------------------------------------------------------


def test_clock_moves_only_when_told() -> None:
    clock = FakeClock(5.0)
    assert clock() == clock.monotonic() == clock.now == 5.0
    assert clock.advance(1.5) == 6.5
    assert clock.advance_to(10.0) == 10.0
    assert clock.advance_to(3.0) == 10.0  # already passed: stays
    clock.set(2.0)  # the one deliberate jump backwards
    assert clock.now == 2.0
    clock.now = 4.0
    assert clock.monotonic() == 4.0


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_clock_refuses_backwards_and_non_finite(bad: float) -> None:
    clock = FakeClock()
    with pytest.raises(UsageError):
        clock.advance(bad)
    assert clock.now == 0.0


def test_the_pair_runs_on_its_clock() -> None:
    clock = FakeClock(100.0)
    setup = make_pair()
    pair = ConnectionPair(setup.pair.phone, setup.pair.station, clock=clock)
    pair.connect()
    pair.transfer()
    pair.advance(2.5)
    assert pair.now == clock.now == 102.5
    assert pair.phone.linked  # pings kept the link alive over the 2.5 s


# -- the pair under the fault model -----------------------------------------------------------


def _linkdowns(pair: ConnectionPair) -> int:
    return sum(isinstance(e, LinkDown) for e in pair.phone_events)


def test_a_cut_tells_both_ends_and_loses_what_was_in_flight() -> None:
    pair = paired().pair
    pair.station.send(b"in flight", pair.now)
    pair.collect()
    assert pair.current is not None and pair.current.to_phone  # written, not yet delivered
    pair.apply(FaultEvent("cut", pair.now))
    assert pair.current is None and not pair.phone.linked and not pair.station.linked
    assert [e.kind for e in pair.outages] == ["cut"]
    pair.connect()
    pair.transfer()
    assert received(pair.phone_events) == [b"in flight"]  # resent on resume, once


def test_down_refuses_connections_until_it_ends() -> None:
    pair = paired().pair
    pair.apply(FaultEvent("down", pair.now, pair.now + 4.0))
    assert pair.down and pair.current is None and _linkdowns(pair) == 1
    with pytest.raises(LinkError):
        pair.connect()
    pair.station.send(b"queued", pair.now)
    pair.advance(3.9)
    assert not pair.can_connect()
    pair.advance(0.1)
    assert pair.can_connect()
    pair.connect()
    pair.transfer()
    assert received(pair.phone_events) == [b"queued"]


def test_a_short_blackhole_holds_bytes_and_delivers_them_late_without_a_close() -> None:
    pair = paired().pair
    start = pair.now
    pair.apply(FaultEvent("blackhole", start, start + 1.5))
    pair.station.send(b"held", pair.now)
    pair.transfer()
    assert received(pair.phone_events) == []
    pair.advance(1.4)
    assert received(pair.phone_events) == []
    pair.advance(0.2)
    assert received(pair.phone_events) == [b"held"]
    assert _linkdowns(pair) == 0 and pair.phone.link_count == 1  # nobody noticed


def test_a_long_blackhole_is_noticed_by_liveness_and_holds_new_transports_too() -> None:
    pair = paired().pair
    pair.apply(FaultEvent("blackhole", pair.now, pair.now + 8.0))
    pair.station.send(b"after the hole", pair.now)
    pair.advance(Settings().link_timeout + 0.1)
    assert _linkdowns(pair) == 1 and pair.phone.wants_transport
    pair.connect()  # connecting is allowed, but the hole holds the handshake
    pair.advance(1.0)
    assert not pair.phone.linked
    faults = PairFaults(pair)
    assert faults.heal(timeout=30)
    assert received(pair.phone_events) == [b"after the hole"]
    assert pair.now >= 8.0


@pytest.mark.parametrize("direction", ["to_phone", "to_station"])
def test_a_one_way_blackhole_holds_one_direction_only(direction: str) -> None:
    pair = paired().pair
    pair.apply(FaultEvent("blackhole", pair.now, pair.now + 1.0, direction))  # type: ignore[arg-type]
    pair.station.send(b"to the phone", pair.now)
    pair.phone.send(b"to the station", pair.now)
    pair.transfer()
    got_phone, got_station = received(pair.phone_events), received(pair.station_events)
    assert (got_phone == []) == (direction == "to_phone")
    assert (got_station == []) == (direction == "to_station")
    pair.advance(1.0)
    assert received(pair.phone_events) == [b"to the phone"]
    assert received(pair.station_events) == [b"to the station"]


def test_the_pair_follows_a_timeline_on_its_clock() -> None:
    pair = paired().pair
    schedule = FaultSchedule.from_events(
        [{"kind": "cut", "at": 2.0}, {"kind": "down", "start": 5.0, "end": 7.0}]
    )
    pair.follow(schedule)
    faults = PairFaults(pair)
    ups = []
    for _ in range(20):  # 10 s in steps of 0.5
        if faults.reconnect():
            ups.append(pair.now)
        pair.advance(0.5)
    assert pair.outages == list(schedule.events)
    assert ups == [2.0, 7.0]
    assert faults.counts["connect"] == 2


# -- PairFaults: an attacker's moves ------------------------------------------------------------


def test_replay_reorder_and_tamper_never_reach_the_application() -> None:
    pair = paired().pair
    faults = PairFaults(pair)
    for i in range(4):
        pair.station.send(b"m%d" % i, pair.now)
    assert faults.act(Deliver(2))
    assert faults.act(Replay(pick=-1))  # the last record the transport carried
    assert faults.act(Reorder(PHONE))
    assert faults.act(Tamper(PHONE, pick=40, bit=3))
    assert faults.act(Deliver(10))
    assert faults.heal()
    assert received(pair.phone_events) == [b"m0", b"m1", b"m2", b"m3"]
    assert faults.counts["Replay"] == faults.counts["Reorder"] == faults.counts["Tamper"] == 1
    assert faults.counts["connect"] >= 1  # the attack cost a transport, not a message


def test_an_attack_without_a_transport_does_nothing() -> None:
    pair = paired().pair
    faults = PairFaults(pair)
    assert faults.act(FaultEvent("down", 0.0, 2.0))
    assert pair.current is None
    assert not faults.act(Replay(0)) and not faults.act(Reorder(STATION))
    assert not faults.act(Tamper(STATION, 0, 0)) and not faults.act(Deliver(3))
    assert faults.act(Wait(0.5)) and pair.now == 0.5
    assert faults.counts == {"down": 1, "Wait": 1}


@settings(max_examples=30, deadline=None)
@given(schedule=schedules(duration=60.0))
def test_any_timeline_loses_nothing(schedule: FaultSchedule) -> None:
    pair = paired().pair
    pair.follow(schedule)
    faults = PairFaults(pair)
    for i in range(60):
        pair.station.send(b"s%d" % i, pair.now)
        pair.phone.send(b"p%d" % i, pair.now)
        faults.reconnect()
        pair.advance(1.0)
    assert faults.heal(timeout=60)
    assert received(pair.phone_events) == [b"s%d" % i for i in range(60)]
    assert received(pair.station_events) == [b"p%d" % i for i in range(60)]
    assert pair.outages == list(schedule.events)


def test_ten_minutes_of_flaky_wifi_in_memory() -> None:
    """The profile ``station simulate`` drills, on the fake clock: 600 s in well under one."""
    schedule = FaultSchedule.generate("flaky-wifi", seed=3, duration=600.0)
    pair = paired().pair
    pair.follow(schedule)
    faults = PairFaults(pair)
    ups = 0
    for i in range(3_000):  # 5 each way per second
        pair.station.send(b"s%d" % i, pair.now)
        pair.phone.send(b"p%d" % i, pair.now)
        ups += faults.reconnect()
        pair.advance(0.2)
    assert faults.heal(timeout=60)
    assert received(pair.phone_events) == [b"s%d" % i for i in range(3_000)]
    assert received(pair.station_events) == [b"p%d" % i for i in range(3_000)]
    assert pair.outages == list(schedule.events) and len(schedule) > 20
    assert ups >= len([e for e in schedule if e.kind != "blackhole"])
    assert sum(isinstance(e, LinkUp) for e in pair.phone_events) == pair.phone.link_count
