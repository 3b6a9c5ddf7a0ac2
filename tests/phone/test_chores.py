"""The running link's background work on deadlines (``medic_phone.chores``), on a fake
clock: nothing here sleeps."""

from __future__ import annotations

import pytest

from medic_phone.chores import Chores, Due


def _chores(recheck: float = 1.0) -> Chores:
    return Chores(gap=0.05, retry=1.0, recheck=recheck, contact_delay=1.0)


def test_nothing_is_due_before_the_link_is_up_and_nothing_changed() -> None:
    chores = _chores()
    assert chores.next_deadline() is None
    chores.changed(5.0)  # a change before the first link-up waits for it
    assert chores.next_deadline() is None and chores.due(100.0) == Due()
    chores.linked(200.0)
    assert chores.next_deadline() == 5.0  # overdue: the change goes at once
    assert chores.due(200.0) == Due(push=True)


def test_a_change_is_pushed_at_once_then_at_most_once_a_gap() -> None:
    chores = _chores(recheck=100.0)
    chores.linked(0.0)
    assert chores.next_deadline() == 100.0  # only the recheck: no tick while quiet
    chores.changed(10.0)
    assert chores.next_deadline() == 10.0
    assert chores.due(10.0) == Due(push=True)
    # A stream of changes: the next push waits for the gap, and carries them all.
    chores.changed(10.01)
    chores.changed(10.02)
    assert chores.next_deadline() == pytest.approx(10.05)
    assert chores.due(10.04) == Due()
    assert chores.due(10.05) == Due(push=True)
    assert chores.due(10.2).push is False  # nothing changed since: nothing to push
    # After a quiet spell, the first change goes at once again.
    chores.changed(20.0)
    assert chores.due(20.0).push


def test_a_change_during_a_push_gets_a_push_of_its_own() -> None:
    chores = _chores()
    chores.linked(0.0)
    chores.changed(1.0)
    assert chores.due(1.0).push  # taken: the push reads the store from here on
    chores.changed(1.001)  # committed while that push was reading
    assert chores.due(1.06).push


def test_a_refused_push_goes_again_after_the_retry_or_at_the_next_change() -> None:
    chores = _chores()
    chores.linked(0.0)
    chores.changed(1.0)
    assert chores.due(1.0).push
    chores.push_failed(1.0)  # the tunnel's queue was full
    assert chores.due(1.5).push is False
    assert chores.due(2.0).push
    chores.push_failed(2.0)
    chores.changed(2.2)  # a new change does not wait for the retry
    assert chores.due(2.2).push


def test_a_link_coming_back_pushes_what_a_full_queue_held_back() -> None:
    chores = _chores()
    chores.linked(0.0)
    chores.changed(1.0)
    assert chores.due(1.0).push
    chores.push_failed(1.0)
    chores.linked(1.2)  # back up before the retry was due
    assert chores.due(1.2).push
    chores.linked(5.0)  # nothing held back: a link coming back pushes nothing
    assert chores.due(5.0).push is False


def test_other_writers_are_rechecked_on_a_deadline_while_the_session_lives() -> None:
    chores = _chores()
    assert chores.due(50.0) == Due()  # no session yet: no recheck
    chores.linked(0.0)
    assert chores.next_deadline() == 1.0
    assert chores.due(0.9) == Due()
    assert chores.due(1.0) == Due(recheck=True)
    assert chores.next_deadline() == 2.0
    chores.ended()
    assert chores.next_deadline() is None
    chores.changed(3.0)
    assert chores.due(3.0) == Due()  # an ended session is never pushed to


def test_the_last_contact_is_written_once_a_burst_later() -> None:
    chores = _chores()
    chores.heard(0.0)
    chores.heard(0.3)  # the same burst of link changes
    assert chores.next_deadline() == 1.0  # from the first of the burst
    assert chores.due(0.99) == Due()
    assert chores.due(1.0) == Due(contact=True)
    assert chores.next_deadline() is None
    chores.heard(2.0)
    assert chores.next_deadline() == 3.0
