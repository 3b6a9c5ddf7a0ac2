"""The station's account of every command's fate (pure, no processes)."""

from __future__ import annotations

from station.fates import Fate, FateBook


def test_queued_sent_applied_in_order() -> None:
    book = FateBook()
    for seq in (1, 2, 3):
        book.queued(seq, now=10.0 + seq)
    assert [f.seq for f in book.sent_through(2, now=20.0)] == [1, 2]
    assert book.oldest_open() == 11.0
    assert [f.seq for f in book.acked_through(1, now=21.0)] == [1]
    assert book.counts() == {
        "queued": 1,
        "sent": 1,
        "applied": 1,
        "expired": 0,
        "discarded": 0,
        "undelivered": 0,
    }
    assert [(f.seq, f.state) for f in book.logout(now=30.0)] == [
        (2, Fate.UNDELIVERED),
        (3, Fate.UNDELIVERED),
    ]
    assert book.oldest_open() is None


def test_a_resume_cursor_applies_what_was_never_marked_sent() -> None:
    book = FateBook()
    book.queued(1, now=1.0)
    book.queued(2, now=1.0)
    assert [f.seq for f in book.acked_through(2, now=5.0)] == [1, 2]
    assert book.get(2) is not None and book.get(2).state is Fate.APPLIED  # type: ignore[union-attr]


def test_expired_then_confirmed_or_discarded() -> None:
    book = FateBook()
    for seq in (1, 2):
        book.queued(seq, now=1.0, ttl=2.0)
    book.acked_through(2, now=9.0)
    assert book.phone_says(1, Fate.EXPIRED, now=9.0) is not None
    assert book.phone_says(2, Fate.EXPIRED, now=9.0) is not None
    assert book.phone_says(2, Fate.EXPIRED, now=9.5) is None  # idempotent
    confirmed = book.phone_says(1, Fate.APPLIED, now=12.0)
    assert confirmed is not None and confirmed.confirmed and confirmed.state is Fate.APPLIED
    assert book.phone_says(1, Fate.EXPIRED, now=13.0) is None  # a confirmed one stays applied
    discarded = book.phone_says(2, Fate.DISCARDED, now=14.0)
    assert discarded is not None and discarded.state is Fate.DISCARDED
    assert book.phone_says(2, Fate.APPLIED, now=15.0) is None
    assert book.phone_says(99, Fate.EXPIRED, now=15.0) is None


def test_settled_commands_are_bounded_but_counted() -> None:
    book = FateBook()
    for seq in range(1, 5001):
        book.queued(seq, now=0.0)
    book.sent_through(5000, now=1.0)
    book.acked_through(5000, now=2.0)
    assert book.counts()["applied"] == 5000
    assert len(book.all()) == 1000
    assert book.get(1) is None and book.get(5000) is not None


def test_the_phone_says_expired_before_it_acknowledges() -> None:
    book = FateBook()
    for seq in (1, 2, 3):
        book.queued(seq, now=0.0, ttl=1.0)
    book.sent_through(3, now=1.0)
    assert book.phone_says(2, Fate.EXPIRED, now=5.0) is not None
    applied = book.acked_through(3, now=5.1)
    assert [f.seq for f in applied] == [1, 3]
    assert book.get(2).state is Fate.EXPIRED  # type: ignore[union-attr]
    assert book.logout(now=9.0) == []
