"""The dial plan (happy eyeballs over every candidate) and the diagnosis, with no
sockets and no clock: time is an argument."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from medic_phone.diagnose import diagnose
from medic_phone.dialplan import CAP, HANG, MAX_INFLIGHT, STAGGER, Candidate, DialPlan, Failure


def _plan(pairing: bool = False) -> DialPlan:
    return DialPlan(pairing=pairing, rng=random.Random(7))


def _start_all_due(plan: DialPlan, now: float) -> list[Candidate]:
    started = []
    while (c := plan.due(now)) is not None:
        plan.started(c, now)
        started.append(c)
    return started


def test_attempts_are_staggered_and_a_failure_starts_the_next_at_once() -> None:
    plan = _plan()
    for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        plan.add(host, 8765, "uri", 0.0)
    first = _start_all_due(plan, 0.0)
    assert [c.host for c in first] == ["10.0.0.1"]  # one at a time
    assert plan.next_deadline() == STAGGER
    assert _start_all_due(plan, 0.1) == []
    second = _start_all_due(plan, STAGGER)
    assert [c.host for c in second] == ["10.0.0.2"]
    plan.failed(second[0], Failure.UNREACHABLE, "ehostunreach", 0.3)
    third = _start_all_due(plan, 0.3)  # no waiting for the stagger after a failure
    assert [c.host for c in third] == ["10.0.0.3"]


def test_order_last_winner_then_known_then_mdns_near_first_hosts_interleaved() -> None:
    plan = _plan()
    for port in range(9000, 9030):  # thirty answers pointing at one host
        plan.add("10.9.9.9", port, "mdns", 0.0)
    plan.add("10.0.0.5", 8765, "mdns", 0.0, near=True)
    plan.add("10.0.0.7", 8765, "mdns", 0.0)
    plan.add("192.0.2.1", 8765, "uri", 0.0)
    plan.add("10.0.0.1", 8765, "uri", 0.0, near=True)
    order = [c.address for c in plan.candidates]
    assert order[:2] == ["10.0.0.1:8765", "192.0.2.1:8765"]  # the URI's, near first
    assert order[2] == "10.0.0.5:8765"  # mDNS, near
    assert order[3:5] == ["10.9.9.9:9000", "10.0.0.7:8765"]  # the host is not buried
    assert len(order) == 4 + 4  # at most four answers of one host are kept
    won = plan.candidates[3]
    plan.started(won, 1.0)
    plan.won(won, 1.1)
    assert plan.candidates[0] is won  # the last address that worked leads next time


def test_a_flood_of_answers_cannot_keep_a_real_one_out() -> None:
    plan = _plan()
    for i in range(100):  # fake adverts, each a host of its own, that never answer
        plan.add(f"10.66.{i // 250}.{i % 250}", 8765, "mdns", 0.0)
    assert not plan.add("10.0.0.9", 8765, "mdns", 0.0)  # full, nothing has failed yet
    now = 0.0
    for _ in range(40):
        for c in _start_all_due(plan, now):
            plan.failed(c, Failure.UNREACHABLE, "no answer", now + 0.01)
        now += STAGGER
    assert plan.add("10.0.0.9", 8765, "mdns", now)  # a loser made way
    assert "10.0.0.9:8765" in [c.address for c in plan.candidates]


def test_first_attempt_after_a_loss_is_immediate_then_jittered_backoff() -> None:
    plan = _plan()
    plan.add("10.0.0.1", 8765, "saved", 0.0)
    (c,) = _start_all_due(plan, 0.0)
    plan.won(c, 0.05)
    assert plan.due(100.0) is None  # linked: nothing to do
    plan.lost(100.0)
    assert plan.due(100.0) is c  # at once
    plan.started(c, 100.0)
    delays = []
    now = 100.01
    for _ in range(8):
        plan.failed(c, Failure.UNREACHABLE, "x", now)
        deadline = plan.next_deadline()
        assert deadline is not None
        delays.append(deadline - now)
        now = deadline
        assert plan.due(now) is c
        plan.started(c, now)
    assert all(0 < d <= CAP for d in delays)
    assert delays[-1] > delays[0]  # grows, capped


def test_a_hanging_attempt_gets_a_second_beside_it_and_a_kick_makes_everything_due() -> None:
    plan = _plan()
    plan.add("10.0.0.1", 8765, "uri", 0.0)
    (c,) = _start_all_due(plan, 0.0)
    assert plan.due(HANG - 0.01) is None
    assert plan.due(HANG) is c
    plan.started(c, HANG)
    assert plan.due(5.0) is None  # two in flight at most per address
    plan.abandoned(c)
    plan.abandoned(c)
    plan.failed(c, Failure.UNREACHABLE, "x", 5.0)
    plan.kick(5.2)
    assert plan.due(5.2) is c


def test_pairing_is_over_when_every_station_refused() -> None:
    plan = _plan(pairing=True)
    plan.add("10.0.0.1", 8765, "mdns", 0.0)
    plan.add("10.0.0.2", 8765, "mdns", 0.0)
    a, b = _start_all_due(plan, 0.0) + _start_all_due(plan, STAGGER)
    plan.failed(a, Failure.REFUSAL, "wrong or expired code", 0.3, final=True)
    assert not plan.exhausted
    plan.failed(b, Failure.RESET, "busy", 0.4)  # busy is not an answer: tried again
    assert not plan.exhausted
    (again,) = _start_all_due(plan, 2.0)
    assert again is b
    plan.failed(b, Failure.REFUSAL, "offer already used", 2.1, final=True)
    assert plan.exhausted


def test_linked_refusals_never_retire_an_address() -> None:
    plan = _plan(pairing=False)
    plan.add("10.0.0.1", 8765, "mdns", 0.0)
    (c,) = _start_all_due(plan, 0.0)
    plan.failed(c, Failure.REFUSAL, "session ended", 0.1, final=True)
    assert not c.retired and not plan.exhausted


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "fail", "win", "lose", "kick", "abandon"]),
            st.integers(0, 5),
            st.floats(0.0, 3.0),
        ),
        max_size=60,
    )
)
def test_the_plan_stays_bounded_and_consistent(
    steps: list[tuple[str, int, float]],
) -> None:
    plan = _plan()
    now = 0.0
    live: list[Candidate] = []
    for op, index, dt in steps:
        now += dt
        if op == "add":
            plan.add(f"10.0.0.{index}", 8765, "mdns", now)
        elif op == "fail" and live:
            plan.failed(live.pop(index % len(live)), Failure.UNREACHABLE, "x", now)
        elif op == "abandon" and live:
            plan.abandoned(live.pop(index % len(live)))
        elif op == "win" and live:
            plan.won(live.pop(index % len(live)), now)
        elif op == "lose":
            plan.lost(now)
        elif op == "kick":
            plan.kick(now)
        live.extend(_start_all_due(plan, now))
        assert plan.inflight == len(live) <= MAX_INFLIGHT
        assert all(c.inflight >= 0 for c in plan.candidates)
        deadline = plan.next_deadline()
        assert plan.linked or deadline is None or deadline >= now or plan.due(now) is None


def test_diagnosis_names_isolation_refusal_and_waits_for_every_address() -> None:
    plan = _plan(pairing=True)
    plan.add("10.0.0.1", 8765, "mdns", 0.0)
    plan.add("10.0.1.1", 8765, "mdns", 0.0)
    a = _start_all_due(plan, 0.0)[0]
    plan.failed(a, Failure.UNREACHABLE, "no answer", 2.5)
    assert diagnose(plan) is None  # the other address has not answered yet
    b = _start_all_due(plan, 2.5)[0]
    plan.failed(b, Failure.UNREACHABLE, "ehostunreach", 3.0)
    found = diagnose(plan)
    assert found is not None and found.cause == "isolation"
    assert "isolate devices from each other, or a firewall blocks the port" in found.message

    uri = _plan(pairing=True)
    uri.add("10.0.0.1", 8765, "uri", 0.0)
    c = _start_all_due(uri, 0.0)[0]
    uri.failed(c, Failure.REFUSED, "connection refused", 0.01)
    refused = diagnose(uri)
    assert refused is not None and refused.cause == "refused"
    assert "10.0.0.1:8765" in refused.message
