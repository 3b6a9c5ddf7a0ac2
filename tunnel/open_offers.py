"""The pairing offers a station worker holds open, as deadlines driven by ``now``.

* The current offer rotates every ``ttl`` seconds. The offer it replaces stays valid
  for ``grace`` seconds (10), by URI and by code, so a medic who scanned or typed just
  before a rotation still pairs.
* An offer's URI is spent only by a pairing that authenticates under its psk. Then
  every offer closes (this worker is pairing); if that pairing never completes, a fresh
  offer opens.
* A code is separate from its offer's URI: each open code has a serial, and a wrong
  guess burns the codes it was checked against (the current offer gets a new code, its
  URI unchanged; a previous offer keeps only its URI). It also pauses code pairing with
  a growing back-off (``CodeBackoff``). A code attempt never touches a URI.

Pure bookkeeping: the endpoint asks it what is open and reports what happened; the
worker reads ``next_deadline`` (through the endpoint) to arm its one timer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tunnel.errors import UsageError
from tunnel.pake import generate_code
from tunnel.station_handshake import StationOffer

OFFER_GRACE = 10.0  # seconds the previous offer stays valid after a rotation


class CodeBackoff:
    """How long code pairing pauses after wrong codes.

    The n-th failed guess of a streak pauses code pairing for ``base * 2**(n-1)``
    seconds, at most ``cap``: 4, 8, 16, 32, 60, 60, ... s. A streak is forgotten after
    ``forget_after`` seconds without a failure. So an attacker's guesses are at most 5
    in the first minute and one per minute after (two when a rotation's grace window
    holds a second code): about 2,900 a day, a 3e-5 chance a day of finding an 8-digit
    code (docs/THREAT-MODEL.md).
    """

    def __init__(self, *, base: float = 4.0, cap: float = 60.0, forget_after: float = 600.0):
        self.base = base
        self.cap = cap
        self.forget_after = forget_after
        self.streak = 0
        self.paused_until = 0.0
        self._last_failure: float | None = None

    @classmethod
    def carried_over(
        cls, streak: int, quiet_for: float, paused_for: float, now: float
    ) -> CodeBackoff:
        """A streak that began in another worker: the supervisor carries it to the next
        standby, so a medic pairing (a new worker) does not hand the attacker a new one."""
        backoff = cls()
        backoff.streak = max(0, streak)
        if streak > 0:
            backoff._last_failure = now - max(0.0, quiet_for)
        backoff.paused_until = now + max(0.0, paused_for)
        return backoff

    def failed(self, now: float, guesses: int = 1) -> float:
        """Record failed guesses; returns the pause from now, in seconds."""
        if self._last_failure is not None and now - self._last_failure > self.forget_after:
            self.streak = 0
        self._last_failure = now
        self.streak += max(1, guesses)
        pause = min(self.base * 2 ** min(self.streak - 1, 32), self.cap)
        self.paused_until = max(self.paused_until, now + pause)
        return self.paused_until - now

    def paused_for(self, now: float) -> float:
        return max(0.0, self.paused_until - now)


@dataclass(slots=True)
class OpenOffer:
    offer: StationOffer
    code: str | None  # None once burned (a previous offer keeps its URI)
    code_serial: int
    closes_at: float  # rotation (current) or end of grace (previous)


OfferMaker = Callable[[], StationOffer]


class OpenOffers:
    def __init__(
        self,
        first: StationOffer,
        now: float,
        *,
        make_offer: OfferMaker | None = None,
        ttl: float | None = None,
        grace: float = OFFER_GRACE,
        backoff: CodeBackoff | None = None,
    ) -> None:
        if ttl is not None and (make_offer is None or ttl <= 0):
            raise UsageError("rotating offers needs a positive ttl and a maker of offers")
        self._make = make_offer
        self.ttl = ttl
        self.grace = grace
        self.backoff = backoff or CodeBackoff()
        self._serial = 0
        self.current: OpenOffer | None = self._open(first, now)
        self.previous: OpenOffer | None = None

    def _open(self, offer: StationOffer, now: float) -> OpenOffer:
        self._serial += 1
        closes = now + self.ttl if self.ttl is not None else float("inf")
        return OpenOffer(offer, offer.code, self._serial, closes)

    def _live(self, now: float) -> list[OpenOffer]:
        return [o for o in (self.current, self.previous) if o is not None and now < o.closes_at]

    # -- what is open ------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.current is not None

    def uri_offer(self, offer_id: bytes, now: float) -> StationOffer | None:
        for entry in self._live(now):
            if entry.offer.offer_id == offer_id:
                return entry.offer
        return None

    def open_codes(self, now: float) -> list[tuple[int, str]]:
        """``(serial, code)`` of every code a guess may be checked against, current first;
        none while code pairing is paused."""
        if self.backoff.paused_for(now) > 0:
            return []
        return [(o.code_serial, o.code) for o in self._live(now) if o.code is not None]

    def code_is_open(self, serial: int, now: float) -> bool:
        return any(serial == s for s, _ in self.open_codes(now))

    def paused_for(self, now: float) -> float:
        return self.backoff.paused_for(now)

    # -- what happened -----------------------------------------------------------------

    def code_failed(self, serials: tuple[int, ...], now: float) -> float:
        """A wrong guess: burn the codes it touched, pause; returns the pause (s)."""
        for entry in (self.current, self.previous):
            if entry is None or entry.code_serial not in serials:
                continue
            if entry is self.current:
                self._serial += 1
                entry.code, entry.code_serial = generate_code(), self._serial
            else:
                entry.code = None
        return self.backoff.failed(now, len(serials))

    def commit(self) -> None:
        """A pairing authenticated: every offer closes (this worker now pairs)."""
        self.current = self.previous = None

    def reopen(self, now: float) -> StationOffer | None:
        """The committed pairing never completed: open a fresh offer, if we can make one."""
        if self.current is not None or self._make is None:
            return None
        self.current = self._open(self._make(), now)
        return self.current.offer

    # -- time --------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = [o.closes_at for o in (self.current, self.previous) if o is not None]
        finite = [d for d in deadlines if d != float("inf")]
        return min(finite, default=None)

    def handle_timer(self, now: float) -> StationOffer | None:
        """Drop a previous offer whose grace is over; rotate a current one that is due.
        Returns the new current offer when it rotated."""
        if self.previous is not None and now >= self.previous.closes_at:
            self.previous = None
        current = self.current
        if current is None or now < current.closes_at or self._make is None:
            return None
        current.closes_at = now + self.grace
        self.previous = current
        self.current = self._open(self._make(), now)
        return self.current.offer
