"""The one fault model: outage timelines, profiles and scenario files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drill.errors import ScenarioError
from drill.faults import FaultEvent, FaultSchedule, LinkState
from drill.profiles import PROFILES, LinkConditions, get_profile
from drill.scenario import generated_links, scenario_links
from tunnel.testing.strategies import schedules


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
            assert event.duration <= profile.max_duration + 1e-9
        previous_end = event.stop
    assert one.state_at(3_600.0).up  # whole again at the end


def test_flaky_wifi_is_the_issue_s_flaky_wifi() -> None:
    """Drops every 5-20 s lasting 1-10 s, some of them blackholes without a close."""
    schedule = FaultSchedule.generate("flaky-wifi", seed=1, duration=36_000.0)
    assert {e.kind for e in schedule} == {"cut", "blackhole", "down"}
    windows = [e for e in schedule if e.kind != "cut" and e.stop < 36_000.0]
    assert all(1.0 <= e.duration <= 10.0 for e in windows)
    gaps = [b.start - a.stop for a, b in zip(schedule.events, schedule.events[1:], strict=False)]
    mean_gap = sum(gaps) / len(gaps)
    assert 9.0 < mean_gap < 15.0  # exponential, mean 12 s (wide bounds: not flaky)
    assert {e.direction for e in schedule} == {"both"}
    hotspot = FaultSchedule.generate("hotspot", seed=1, duration=36_000.0)
    assert {e.direction for e in hotspot if e.kind == "blackhole"} == set(
        ("both", "to_station", "to_phone")
    )
    assert PROFILES["hotspot"].conditions.bandwidth == 48_000
    blackout = FaultSchedule.generate("blackout", seed=1, duration=36_000.0)
    assert not any(e.kind == "cut" for e in blackout)  # weight 0


def test_explicit_events_round_trip_and_answer_queries() -> None:
    schedule = FaultSchedule.from_events(
        [
            {"kind": "down", "start": 10, "end": 20},
            {"kind": "cut", "at": 5},
            {"kind": "blackhole", "start": 15, "end": 30, "direction": "to_phone"},
            FaultEvent("down", 40.0),
        ]
    )
    assert [e.kind for e in schedule] == ["cut", "down", "blackhole", "down"]
    assert FaultSchedule.from_events(schedule.to_dicts()) == schedule
    assert schedule.state_at(5.0) == LinkState()  # a cut is an instant
    assert schedule.state_at(16.0) == LinkState(down=True, hold_to_phone=True)
    assert schedule.state_at(20.0) == LinkState(hold_to_phone=True)  # half-open windows
    assert schedule.state_at(30.0).up and schedule.state_at(40.0).down
    assert schedule.boundaries() == (5.0, 10.0, 15.0, 20.0, 30.0, 40.0)
    assert schedule.cuts_between(0, 5) == 1 and schedule.cuts_between(5, 50) == 0
    assert math.isinf(schedule.end)
    assert FaultEvent("blackhole", 1.0, 2.0).shifted(10) == FaultEvent("blackhole", 11.0, 12.0)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"kind": "cut", "at": 1, "typo": 2}, "unknown fault event keys"),
        ({"kind": "storm", "start": 1}, "unknown fault kind"),
        ({"kind": "down", "start": 5, "end": 5}, "must end after it starts"),
        ({"kind": "down", "start": 5, "direction": "to_phone"}, "has no direction"),
        ({"kind": "cut", "at": 1, "start": 1}, "exactly one of"),
        ({"kind": "blackhole", "start": "soon"}, "must be a finite number"),
        ({"kind": "blackhole", "start": 1, "direction": "up"}, "unknown direction"),
        ({"kind": "down", "start": math.nan}, "must be a finite number"),
    ],
)
def test_bad_events_are_named(event: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as caught:
        FaultSchedule.from_events([{"kind": "cut", "at": 0}, event])
    assert "fault event #1" in str(caught.value)


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ScenarioError, match="flaky-wifi"):
        get_profile("tornado")


def test_every_phone_of_a_drill_gets_its_own_timeline_with_an_outage() -> None:
    links = generated_links("flaky-wifi", seed=5, phones=4, duration=30)
    assert links == generated_links("flaky-wifi", seed=5, phones=4, duration=30)
    assert links != generated_links("flaky-wifi", seed=6, phones=4, duration=30)
    assert len({link.schedule for link in links}) == 4
    assert all(link.schedule.events for link in links)
    assert all(link.conditions == PROFILES["flaky-wifi"].conditions for link in links)


def test_scenario_file_gives_timelines_and_conditions(tmp_path: Path) -> None:
    path = tmp_path / "drill.toml"
    path.write_text(
        "[[phone]]\n"
        'events = [{kind = "down", start = 2.0, end = 4.0}, {kind = "cut", at = 5}]\n'
        "[[phone]]\n"
        "latency = 0.2\nbandwidth = 1000\n"
        'events = [{kind = "blackhole", start = 1, end = 3, direction = "to_station"}]\n'
    )
    first, second, third = scenario_links(path, 3)
    assert [e.kind for e in first.schedule] == ["down", "cut"]
    assert first.conditions == PROFILES["flaky-wifi"].conditions  # the default network
    assert second.conditions == LinkConditions(latency=0.2, jitter=0.02, bandwidth=1000)
    assert second.schedule.state_at(2) == LinkState(hold_to_station=True)
    assert third == first  # tables repeat for more phones


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not toml [", "scenario"),
        ("[other]\nx = 1\n", "no \\[\\[phone\\]\\] tables"),
        ('[[phone]]\nevents = [{kind = "meteor", start = 1}]\n', "unknown fault kind"),
        ("[[phone]]\nlatency = -1\n", "latency must not be negative"),
        ("[[phone]]\nbandwidth = 0.5\n", "bandwidth must be a whole number"),
        ("[[phone]]\nlatncy = 1\n", "unknown keys: latncy"),
        ("[[phone]]\nevents = 3\n", "events is a list"),
    ],
)
def test_bad_scenario_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message) as caught:
        scenario_links(path, 1)
    assert str(path) in str(caught.value)


@settings(max_examples=50, deadline=None)
@given(schedule=schedules(duration=60), t=st.floats(0, 80))
def test_the_state_at_any_instant_is_what_the_events_say(schedule: FaultSchedule, t: float) -> None:
    state = schedule.state_at(t)
    live = [e for e in schedule if e.start <= t < e.stop]
    assert state.down == any(e.kind == "down" for e in live)
    assert state.hold_to_phone == any(
        e.kind == "blackhole" and e.direction != "to_station" for e in live
    )
    assert state.hold_to_station == any(
        e.kind == "blackhole" and e.direction != "to_phone" for e in live
    )
    assert set(schedule.boundaries()) >= {e.start for e in schedule}
