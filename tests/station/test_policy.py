"""The logout policy with injected time: inactivity, maximum age, the scheduled wipe."""

from __future__ import annotations

from station.policy import LogoutPolicy, PolicyConfig, SessionTimes

CFG = PolicyConfig(inactivity=120, max_session=3600, wipe_every=1000)


def test_inactivity_counts_from_the_last_input() -> None:
    policy = LogoutPolicy(CFG, start=0)
    sessions = {"a": SessionTimes(paired_at=10, last_input=100)}
    assert policy.due(219.9, sessions) == []
    assert policy.due(220, sessions) == [("a", "inactivity")]
    assert policy.next_deadline(sessions) == 220


def test_maximum_age_counts_from_pairing_whatever_the_input() -> None:
    policy = LogoutPolicy(
        PolicyConfig(inactivity=10**9, max_session=3600, wipe_every=10**9), start=0
    )
    busy = {"a": SessionTimes(paired_at=50, last_input=3640)}
    assert policy.due(3649, busy) == []
    assert policy.due(3650, busy) == [("a", "max-age")]


def test_scheduled_wipe_ends_every_session_on_its_period() -> None:
    policy = LogoutPolicy(CFG, start=0)
    sessions = {
        "a": SessionTimes(paired_at=900, last_input=990),
        "b": SessionTimes(paired_at=950, last_input=999),
    }
    assert policy.due(999, sessions) == []
    assert sorted(policy.due(1000, sessions)) == [("a", "scheduled"), ("b", "scheduled")]
    assert policy.due(1001, {"c": SessionTimes(1001, 1001)}) == []
    assert policy.next_wipe == 2000
    # A late tick keeps the period's phase.
    assert policy.due(3500, {}) == [] and policy.next_wipe == 4000


def test_no_sessions_no_logouts() -> None:
    assert LogoutPolicy(CFG, start=0).due(10**6, {}) == []


def test_the_page_is_told_the_nearest_logout_and_its_reason() -> None:
    policy = LogoutPolicy(PolicyConfig(inactivity=120, max_session=600, wipe_every=3600), start=0)
    assert policy.logout_of(SessionTimes(paired_at=0, last_input=10)) == (130, "inactivity")
    assert policy.logout_of(SessionTimes(paired_at=0, last_input=590)) == (600, "max-age")
    late = LogoutPolicy(PolicyConfig(inactivity=120, max_session=9999, wipe_every=100), start=0)
    assert late.logout_of(SessionTimes(paired_at=0, last_input=50)) == (100, "scheduled")
