"""Hypothesis strategies for the fault model and the pair's actions (needs ``hypothesis``).

Faults are drawn as values, not from a seeded generator, so a failing case shrinks to
the fewest and simplest faults: fewer events, shorter windows, plain deliveries.
"""

from __future__ import annotations

from hypothesis import strategies as st

from drill.faults import DIRECTIONS, FaultEvent, FaultSchedule
from tunnel.testing.pair import PHONE, STATION
from tunnel.testing.pair_faults import Action, Attack, Deliver, Reorder, Replay, Tamper, Wait


def outages(*, max_duration: float = 8.0) -> st.SearchStrategy[FaultEvent]:
    """One outage of the model, starting at 0: a cut, a down window or a blackhole (both
    ways or one way) lasting up to ``max_duration`` seconds."""
    window = st.builds(
        lambda kind, seconds, direction: FaultEvent(
            kind, 0.0, seconds, direction if kind == "blackhole" else "both"
        ),
        st.sampled_from(["blackhole", "down"]),
        st.floats(0.05, max_duration),
        st.sampled_from(DIRECTIONS),
    )
    return st.one_of(st.just(FaultEvent("cut", 0.0)), window)


def schedules(
    *, duration: float, max_events: int = 8, max_duration: float = 8.0
) -> st.SearchStrategy[FaultSchedule]:
    """A timeline of up to ``max_events`` outages starting within ``[0, duration)``."""
    placed = st.tuples(st.floats(0, duration, exclude_max=True), outages(max_duration=max_duration))
    return st.lists(placed, max_size=max_events).map(
        lambda items: FaultSchedule(tuple(event.shifted(at) for at, event in items))
    )


def attacks() -> st.SearchStrategy[Attack]:
    """What an attacker on the path does to the current transport."""
    destinations = st.sampled_from([STATION, PHONE])
    return st.one_of(
        st.builds(Replay, st.integers(0, 1 << 16)),
        st.builds(Reorder, destinations),
        st.builds(Tamper, destinations, st.integers(0, 1 << 16), st.integers(0, 7)),
    )


def actions(*, with_attacks: bool = True, max_wait: float = 0.5) -> st.SearchStrategy[Action]:
    """One action of ``PairFaults``: deliveries and waits, outages, and attacks."""
    choices: list[st.SearchStrategy[Action]] = [
        st.builds(Deliver, st.integers(1, 16)),
        st.builds(Wait, st.floats(0, max_wait)),
        outages(),
    ]
    if with_attacks:
        choices.append(attacks())
    return st.one_of(choices)
