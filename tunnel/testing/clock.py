"""A clock that moves only when told to."""

from __future__ import annotations


class FakeClock:
    """Monotonic time under the test's control; call it like ``time.monotonic``."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self.now += seconds
        return self.now

    def advance_to(self, when: float) -> float:
        self.now = max(self.now, when)
        return self.now
