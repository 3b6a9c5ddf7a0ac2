"""The transport test kit: fake clock, memory links, seeded faults and outage timelines."""

from __future__ import annotations

import contextlib
import math

import pytest

from tunnel.errors import LinkError, UsageError
from tunnel.testing import (
    PROFILES,
    Closed,
    Delivery,
    FakeClock,
    FaultEvent,
    FaultSchedule,
    FaultyLink,
    LinkConditions,
    LinkEvent,
    MemoryLink,
    Outage,
    get_profile,
)
from tunnel.testing.links import SIDES, Side

# -- helpers --------------------------------------------------------------------------------


def run_until_quiet(net: FaultyLink, clock: FakeClock, limit: float = 1e6) -> list[LinkEvent]:
    """Advance the clock from event to event, collecting everything delivered."""
    events = net.poll(clock.now)
    while (due := net.next_event()) is not None and due <= limit:
        clock.advance_to(due)
        events.extend(net.poll(clock.now))
    return events


def payloads(events: list[LinkEvent], side: str, conn: int | None = None) -> list[bytes]:
    return [
        e.data
        for e in events
        if isinstance(e, Delivery) and e.side == side and (conn is None or e.conn == conn)
    ]


def closes(events: list[LinkEvent]) -> list[tuple[int, str]]:
    return [(e.conn, e.side) for e in events if isinstance(e, Closed)]


def check_accounting(net: FaultyLink) -> None:
    s = net.stats
    in_flight = sum(net.link(c).in_flight(side) for c in net.connections for side in SIDES)
    assert s.sent == s.delivered + s.lost + in_flight


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


# -- MemoryLink -----------------------------------------------------------------------------


def test_per_direction_latency_is_exact() -> None:
    link = MemoryLink(latency_a_to_b=0.1, latency_b_to_a=0.3)
    assert link.send("a", b"ping", 0.0) == pytest.approx(0.1)
    assert link.send("b", b"pong", 0.0) == pytest.approx(0.3)
    assert link.next_arrival() == pytest.approx(0.1)
    assert link.deliverable("b", 0.09) == []
    assert link.deliverable("b", 0.1) == [b"ping"]
    assert link.deliverable("b", 0.2) == []  # taken once
    assert link.deliverable("a", 0.29) == []
    assert link.next_arrival() == pytest.approx(0.3)
    assert link.deliverable("a", 0.3) == [b"pong"]
    assert link.next_arrival() is None
    assert (link.counters.sent, link.counters.delivered) == (2, 2)


def test_extra_delay_never_reorders_a_connection() -> None:
    link = MemoryLink(latency_a_to_b=0.01)
    first = link.send("a", b"1", 0.0, extra_delay=1.0)
    second = link.send("a", b"2", 0.1)
    assert first is not None and second is not None and second >= first
    assert link.deliverable("b", 0.5) == []  # "2" waits behind "1"
    assert link.deliverable("b", 1.01) == [b"1", b"2"]


def test_cut_loses_in_flight_keeps_arrived_and_tells_both_once() -> None:
    link = MemoryLink(latency_a_to_b=1.0)
    link.send("a", b"arrived", 0.0)
    link.send("a", b"in flight", 0.5)
    assert link.is_up
    assert link.cut(1.2) == 1
    assert (link.closed, link.is_up) == (True, False)
    assert link.poll(1.2) == [
        Delivery(1, "b", b"arrived", 1.0),
        Closed(1, "a", 1.2),
        Closed(1, "b", 1.2),
    ]
    assert not link.take_closed("a", 5.0) and not link.take_closed("b", 5.0)
    assert link.finished
    with pytest.raises(LinkError):
        link.send("b", b"too late", 5.0)
    c = link.counters
    assert (c.sent, c.delivered, c.lost, c.cuts) == (2, 1, 1, 1)


def test_clean_close_delivers_the_closers_messages_then_the_notice() -> None:
    link = MemoryLink(latency_a_to_b=0.5)
    link.send("a", b"last words", 0.0)
    link.send("b", b"unread", 0.0)
    assert link.close("a", 0.1) == 1  # what was heading to the closer is lost
    assert link.is_closed("a", 0.1) and not link.is_closed("b", 0.55)
    # b does not know yet: its send is accepted, then lost.
    assert link.send("b", b"into the void", 0.2) is None
    assert link.take_closed("a", 0.2)
    assert link.poll(0.6) == [Delivery(1, "b", b"last words", 0.5), Closed(1, "b", 0.6)]
    assert link.counters.lost == 2 and link.counters.closes == 1
    with pytest.raises(LinkError):
        link.send("b", b"x", 0.7)


def test_blackhole_window_holds_then_releases_without_close() -> None:
    link = MemoryLink(latency_a_to_b=0.1)
    link.blackhole("a_to_b", 1.0, 3.0)
    link.send("a", b"before", 0.5)
    link.send("a", b"caught", 1.5)
    link.send("b", b"other way", 1.5)  # b->a is not stalled
    assert link.deliverable("a", 1.6) == [b"other way"]
    assert link.deliverable("b", 2.9) == [b"before"]
    assert not link.closed and not link.take_closed("b", 2.9)
    assert link.next_arrival() == pytest.approx(3.0)
    assert link.deliverable("b", 3.0) == [b"caught"]


def test_endless_blackhole_never_delivers_and_loses_on_cut() -> None:
    link = MemoryLink(latency_a_to_b=0.1)
    link.send("a", b"in flight", 0.0)
    link.blackhole("both", 0.05)
    assert link.send("a", b"held", 1.0) == math.inf
    assert link.next_arrival() is None
    assert link.poll(1_000.0) == []
    assert not link.closed
    # The peer's clean close is held as well: b never learns of it.
    link.close("a", 1_000.0)
    assert link.close_time("b") == math.inf
    assert closes(link.poll(10_000.0)) == [(1, "a")]
    assert link.cut(10_000.0) == 2
    assert closes(link.poll(10_000.0)) == [(1, "b")]


def test_overtake_swaps_the_last_two_in_flight() -> None:
    link = MemoryLink(latency_a_to_b=1.0)
    link.send("a", b"1", 0.0)
    assert not link.overtake("b", 0.0)
    link.send("a", b"2", 0.1)
    assert link.overtake("b", 0.1)
    assert link.deliverable("b", 1.1) == [b"2", b"1"]


def test_link_misuse_is_a_usage_error() -> None:
    link = MemoryLink()
    link.send("a", b"x", 1.0)
    with pytest.raises(UsageError):
        link.send("a", b"x", 0.5)  # time went backwards
    with pytest.raises(UsageError):
        link.send("c", b"x", 2.0)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        MemoryLink(latency_a_to_b=-1.0)
    with pytest.raises(UsageError):
        link.blackhole("both", 5.0, 5.0)


# -- FaultSchedule --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_a_seed_gives_one_timeline(name: str) -> None:
    one = FaultSchedule.generate(name, seed=7, duration=3_600.0)
    assert one == FaultSchedule.generate(name, seed=7, duration=3_600.0)
    assert one != FaultSchedule.generate(name, seed=8, duration=3_600.0)
    profile = get_profile(name)
    previous_end = 0.0
    for event in one:
        assert previous_end <= event.start < 3_600.0  # ordered, no overlap
        if event.kind != "cut":
            assert event.end is not None and event.end <= 3_600.0
            assert event.end - event.start <= profile.max_duration + 1e-9
        previous_end = event.stop
    assert one.can_connect(3_600.0)  # whole again at the end


def test_generated_timeline_has_every_kind_and_follows_the_profile() -> None:
    schedule = FaultSchedule.generate("flaky-wifi", seed=1, duration=36_000.0)
    kinds = {e.kind for e in schedule}
    assert kinds == {"cut", "blackhole", "down"}
    assert {e.direction for e in schedule if e.kind == "blackhole"} >= {"both", "a_to_b"}
    windows = [e for e in schedule if e.kind != "cut" and e.stop < 36_000.0]
    assert all(0.5 <= e.stop - e.start <= 6.0 for e in windows)
    # Roughly one outage per mean interval plus its duration (wide bounds: not flaky).
    assert 36_000 / 30 < len(schedule) < 36_000 / 10
    blackout = FaultSchedule.generate("blackout", seed=1, duration=36_000.0)
    assert not any(e.kind == "cut" for e in blackout)  # weight 0


def test_explicit_events_round_trip_and_answer_queries() -> None:
    schedule = FaultSchedule.from_events(
        [
            {"kind": "down", "start": 10, "end": 20},
            {"kind": "cut", "at": 5},
            {"kind": "blackhole", "start": 15, "end": 30, "direction": "b_to_a"},
            FaultEvent("down", 40.0),
        ]
    )
    assert [e.kind for e in schedule] == ["cut", "down", "blackhole", "down"]
    assert FaultSchedule.from_events(schedule.to_dicts()) == schedule
    assert schedule.can_connect(5.0)  # a cut does not stop a reconnect
    assert schedule.is_down(10.0) and not schedule.is_down(20.0)
    assert schedule.is_blackholed(20.0, "b_to_a") and not schedule.is_blackholed(20.0, "a_to_b")
    assert schedule.next_connect_time(12.0) == 30.0  # down until 20, then the hole until 30
    assert schedule.next_connect_time(35.0) == 35.0
    assert schedule.next_connect_time(40.0) is None
    assert schedule.boundaries() == (5.0, 10.0, 15.0, 20.0, 30.0, 40.0)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"kind": "cut", "at": 1, "typo": 2}, "unknown fault event keys"),
        ({"kind": "storm", "start": 1}, "unknown fault kind"),
        ({"kind": "down", "start": 5, "end": 5}, "must end after it starts"),
        ({"kind": "down", "start": 5, "direction": "a_to_b"}, "has no direction"),
        ({"kind": "cut", "at": 1, "start": 1}, "exactly one of"),
        ({"kind": "blackhole", "start": "soon"}, "must be a number"),
        ({"kind": "blackhole", "start": 1, "direction": "up"}, "unknown direction"),
    ],
)
def test_bad_scenario_events_are_named(event: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        FaultSchedule.from_events([{"kind": "cut", "at": 0}, event])
    assert "fault event #1" in str(caught.value)


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(UsageError, match="flaky-wifi"):
        get_profile("tornado")


# -- FaultyLink: per-message faults --------------------------------------------------------


def chatter(seed: int, conditions: LinkConditions, *, messages: int = 200) -> FaultyLink:
    """A fixed script: reconnect when needed, alternate senders, drain at the end."""
    net = FaultyLink(seed, conditions)
    clock = FakeClock()
    conn = net.connect(clock.now)
    for i in range(messages):
        if net.current is None:
            conn = net.connect(clock.now)
        side: Side = "a" if i % 3 else "b"
        with contextlib.suppress(LinkError):
            net.send(conn, side, b"m%d" % i, clock.now)
        clock.advance(0.01)
        net.poll(clock.now)
    run_until_quiet(net, clock)
    return net


def test_same_seed_same_fault_decisions() -> None:
    conditions = LinkConditions(
        latency_a_to_b=0.02, jitter=0.05, delay=0.1, max_delay=0.3, drop=0.02, duplicate=0.02,
        cut=0.02, blackhole=0.01, tamper=0.05, reorder=0.05,
    )  # fmt: skip
    one, two = chatter(3, conditions), chatter(3, conditions)
    assert one.faults == two.faults and one.stats == two.stats
    assert {r.kind for r in one.faults} >= {"drop", "duplicate", "delay", "tamper", "cut"}
    assert chatter(4, conditions).faults != one.faults
    check_accounting(one)


def test_drop_loses_the_message_and_breaks_the_connection() -> None:
    net = FaultyLink(0, LinkConditions(latency_a_to_b=0.1, drop=1.0))
    conn = net.connect(0.0)
    net.send(conn, "a", b"lost", 0.0)
    events = net.poll(0.0)
    assert payloads(events, "b") == []
    assert sorted(closes(events)) == [(conn, "a"), (conn, "b")]
    assert net.stats.dropped == 1 and net.stats.delivered == 0
    assert net.stats.outages == [Outage("cut", 0.0, 0.0, conn)]
    with pytest.raises(LinkError):
        net.send(conn, "b", b"after", 0.0)


def test_duplicate_is_replayed_on_the_next_connection() -> None:
    net = FaultyLink(0, LinkConditions(latency_a_to_b=0.1, duplicate=1.0))
    clock = FakeClock()
    first = net.connect(clock.now)
    net.send(first, "a", b"record-7", clock.now)
    events = run_until_quiet(net, clock)
    assert payloads(events, "b", first) == [b"record-7"]  # delivered once...
    assert sorted(closes(events)) == [(first, "a"), (first, "b")]  # ...then the link broke
    assert events[-1].at == pytest.approx(0.1)
    second = net.connect(clock.now)
    events = run_until_quiet(net, clock)
    assert payloads(events, "b", second) == [b"record-7"]  # the replay comes first
    assert (net.stats.duplicated, net.stats.replayed) == (1, 1)
    assert [r.kind for r in net.faults] == ["duplicate", "replay"]


def test_same_connection_duplicate_option() -> None:
    conditions = LinkConditions(duplicate=1.0, duplicate_mode="same_connection")
    assert conditions.adversarial
    net = FaultyLink(0, conditions)
    conn = net.connect(0.0)
    net.send(conn, "b", b"twice", 0.0)
    events = net.poll(0.0)
    assert payloads(events, "a") == [b"twice", b"twice"] and closes(events) == []


def test_latency_jitter_and_delay_keep_order_within_a_connection() -> None:
    conditions = LinkConditions(latency_a_to_b=0.05, jitter=0.2, delay=0.3, max_delay=2.0)
    net = FaultyLink(11, conditions)
    clock = FakeClock()
    conn = net.connect(clock.now)
    sent_at = {}
    for i in range(300):
        data = b"%d" % i
        sent_at[data] = clock.now
        net.send(conn, "a", data, clock.now)
        clock.advance(0.01)
    events = [e for e in run_until_quiet(net, clock) if isinstance(e, Delivery)]
    assert [e.data for e in events] == [b"%d" % i for i in range(300)]
    lags = [e.at - sent_at[e.data] for e in events]
    assert min(lags) >= 0.05 - 1e-9
    assert max(lags) > 0.05 + 0.2  # some spikes beyond latency + jitter
    assert 0 < net.stats.delayed < 300


def test_reorder_swaps_adjacent_messages() -> None:
    net = FaultyLink(0, LinkConditions(latency_a_to_b=1.0, reorder=1.0))
    clock = FakeClock()
    conn = net.connect(clock.now)
    for data in (b"1", b"2", b"3"):
        net.send(conn, "a", data, clock.now)
    assert payloads(run_until_quiet(net, clock), "b") == [b"2", b"3", b"1"]
    assert net.stats.reordered == 2


def test_tamper_flips_exactly_one_bit() -> None:
    net = FaultyLink(5, LinkConditions(tamper=1.0))
    conn = net.connect(0.0)
    original = bytes(range(64))
    net.send(conn, "a", original, 0.0)
    (got,) = payloads(net.poll(0.0), "b")
    diff = [x ^ y for x, y in zip(original, got, strict=True) if x != y]
    assert len(diff) == 1 and bin(diff[0]).count("1") == 1


def test_cut_fault_delivers_then_closes_both() -> None:
    net = FaultyLink(0, LinkConditions(latency_a_to_b=0.2, cut=1.0))
    clock = FakeClock()
    conn = net.connect(clock.now)
    net.send(conn, "a", b"last", clock.now)
    assert net.current is None  # decided, although still carrying
    events = run_until_quiet(net, clock)
    assert payloads(events, "b") == [b"last"]
    assert closes(events) == [(conn, "a"), (conn, "b")] or closes(events) == [
        (conn, "b"),
        (conn, "a"),
    ]
    assert all(e.at == pytest.approx(0.2) for e in events)
    assert net.connections == ()


def test_blackhole_fault_is_silent_and_only_this_connection() -> None:
    net = FaultyLink(0, LinkConditions(latency_a_to_b=0.01, blackhole=1.0))
    clock = FakeClock()
    conn = net.connect(clock.now)
    net.send(conn, "a", b"into the hole", clock.now)
    assert run_until_quiet(net, clock) == []
    assert net.next_event() is None and net.current == conn  # nobody was told
    assert net.poll(clock.advance(3_600.0)) == []
    # An endpoint times out and closes: its peer never hears of it.
    net.close(conn, "a", clock.now)
    assert closes(net.poll(clock.now)) == [(conn, "a")]
    assert net.stats.blackholed == 1
    assert net.stats.outages == [Outage("blackhole", 0.0, None, conn)]
    # A fresh connection works (the per-message hole was that connection's).
    quiet = FaultyLink(0, LinkConditions())
    fresh = quiet.connect(clock.now)
    quiet.send(fresh, "a", b"hello", clock.now)
    assert payloads(quiet.poll(clock.now), "b") == [b"hello"]


def test_inject_and_unknown_connections() -> None:
    net = FaultyLink(0)
    conn = net.connect(0.0)
    net.inject(conn, "a", b"forged", 0.0)
    assert payloads(net.poll(0.0), "a") == [b"forged"]
    assert net.stats.replayed == 1
    net.cut(1.0)
    net.poll(1.0)
    with pytest.raises(LinkError):
        net.send(conn, "a", b"x", 1.0)
    with pytest.raises(UsageError):
        net.send(99, "a", b"x", 1.0)
    with pytest.raises(UsageError):
        net.poll(0.5)  # time went backwards


# -- FaultyLink: the timeline -------------------------------------------------------------


def test_scheduled_cut_tells_both_ends_at_its_time() -> None:
    schedule = FaultSchedule.from_events([{"kind": "cut", "at": 2.0}])
    net = FaultyLink(0, LinkConditions(latency_a_to_b=1.0), schedule)
    clock = FakeClock()
    conn = net.connect(clock.now)
    net.send(conn, "a", b"arrives", 0.5)
    net.send(conn, "a", b"in flight", 1.5)
    assert net.next_event() == 1.5  # the first arrival
    clock.advance_to(1.5)
    events = run_until_quiet(net, clock)
    assert payloads(events, "b") == [b"arrives"]
    assert sorted(closes(events)) == [(conn, "a"), (conn, "b")]
    assert {e.at for e in events if isinstance(e, Closed)} == {2.0}
    assert net.stats.lost == 1
    assert [r.kind for r in net.faults] == ["cut"]


def test_down_window_refuses_connections_until_it_ends() -> None:
    schedule = FaultSchedule.from_events([{"kind": "down", "start": 1.0, "end": 4.0}])
    net = FaultyLink(0, schedule=schedule)
    clock = FakeClock()
    conn = net.connect(clock.now)
    clock.advance_to(net.next_event() or 0.0)
    assert clock.now == 1.0
    assert sorted(closes(net.poll(clock.now))) == [(conn, "a"), (conn, "b")]
    assert not net.can_connect(clock.now)
    with pytest.raises(LinkError):
        net.connect(clock.now)
    assert net.next_connect_time(clock.now) == 4.0
    clock.advance_to(net.next_event() or 0.0)
    assert clock.now == 4.0 and net.can_connect(clock.now)
    second = net.connect(clock.now)
    assert second == conn + 1
    assert (net.stats.connects, net.stats.refused) == (2, 1)
    assert net.stats.outages == [Outage("down", 1.0, 4.0)]


def test_scheduled_blackhole_holds_without_close_and_blocks_connects() -> None:
    schedule = FaultSchedule.from_events([{"kind": "blackhole", "start": 1.0, "end": 5.0}])
    net = FaultyLink(0, LinkConditions(latency_a_to_b=0.1), schedule)
    clock = FakeClock()
    conn = net.connect(clock.now)
    clock.advance(2.0)
    net.send(conn, "a", b"held", clock.now)
    assert net.poll(clock.now) == []
    assert not net.can_connect(clock.now)
    events = run_until_quiet(net, clock)
    assert events == [Delivery(conn, "b", b"held", 5.0)]  # TCP got it through, late
    assert net.current == conn and net.can_connect(clock.now)


def test_profile_network_is_deterministic_and_survivable() -> None:
    def run(seed: int) -> FaultyLink:
        net = FaultyLink.from_profile("flaky-wifi", seed=seed, duration=600.0)
        clock = FakeClock()
        conn: int | None = None
        for i in range(6_000):
            if (conn is None or net.current != conn) and net.can_connect(clock.now):
                conn = net.connect(clock.now)
            if conn is not None:
                try:
                    net.send(conn, SIDES[i % 2], b"%d" % i, clock.now)
                except LinkError:
                    conn = None
            clock.advance(0.1)
            net.poll(clock.now)
        run_until_quiet(net, clock)
        return net

    one = run(21)
    assert one.faults == run(21).faults and one.stats == run(21).stats
    assert one.stats.connects > 10 and one.stats.delivered > 4_000
    assert one.conditions == PROFILES["flaky-wifi"].conditions
    check_accounting(one)


def test_closing_an_ended_connection_is_harmless_and_content_stays_out_of_reprs() -> None:
    net = FaultyLink(0)
    conn = net.connect(0.0)
    net.send(conn, "a", b"secret patient note", 0.0)
    (delivery,) = net.poll(0.0)
    assert "secret" not in repr(delivery)
    net.cut(0.0)
    net.poll(0.0)
    net.close(conn, "a", 0.0)  # already ended: nothing happens
    net.cut(0.0, conn)
    assert net.stats.cuts == 1 and net.stats.closes == 0
    with pytest.raises(UsageError):
        net.send(net.connect(0.0), "a", "text", 0.0)  # type: ignore[arg-type]
