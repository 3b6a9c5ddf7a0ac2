"""A clock that moves only when told to.

The tunnel core never reads the time: every call takes ``now``. Tests, ``station
simulate`` and the memory links pass this clock's reading instead of
``time.monotonic()``, so a run is a pure function of its inputs and a one-hour outage
takes no wall time at all.
"""

from __future__ import annotations

import math

from tunnel.errors import UsageError


def _finite(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise UsageError(f"{what} must be a finite number of seconds")
    return value


class FakeClock:
    """Monotonic seconds under the test's control.

    Call the clock itself, or pass ``clock.monotonic``, wherever code expects
    ``time.monotonic``. Only ``advance``, ``advance_to`` and ``set`` move it.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = _finite(start, "start")

    @property
    def now(self) -> float:
        """The current reading, in seconds."""
        return self._now

    @now.setter
    def now(self, value: float) -> None:
        self.set(value)

    def __call__(self) -> float:
        return self._now

    def monotonic(self) -> float:
        """The current reading: a drop-in for ``time.monotonic``."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (>= 0) and return the new reading."""
        seconds = _finite(seconds, "seconds")
        if seconds < 0:
            raise UsageError("a monotonic clock does not go backwards")
        self._now += seconds
        return self._now

    def advance_to(self, when: float) -> float:
        """Move forward to ``when``; a time already passed leaves the clock unchanged.

        Drivers call this with the earliest pending deadline, which may already be
        overdue; clamping keeps the clock monotonic without making them check first.
        """
        self._now = max(self._now, _finite(when, "when"))
        return self._now

    def set(self, when: float) -> None:
        """Jump to ``when``, backwards included.

        The one way to break monotonicity, for tests of code that must survive a
        clock that was reset; ``advance`` and ``advance_to`` never go back.
        """
        self._now = _finite(when, "when")

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
