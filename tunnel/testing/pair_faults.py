"""Seeded faults injected into a ``ConnectionPair`` (the property tests' driver).

Each ``tick`` draws one action from a seeded ``random.Random``: deliver a message, or
inject a fault. Faults follow what a WebSocket over flaky WiFi can really do, plus what
an active attacker can do:

* ``drop``: a message is lost -- on TCP that means the connection broke, so the link is
  cut right after;
* ``cut``: the connection closes and both ends are told;
* ``blackhole``: nothing more is delivered and nobody is told (only liveness notices);
* ``delay``: time passes (timers fire: acks, pings, timeouts);
* ``duplicate``: an attacker replays a record this transport already carried;
* ``reorder``: an attacker swaps two pending messages;
* ``tamper``: an attacker flips a bit in a pending message.

The same seed gives the same run, so a failure found by a property test replays.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field

from tunnel.testing.pair import PHONE, STATION, ConnectionPair

ACTIONS = ("deliver", "drop", "cut", "blackhole", "delay", "duplicate", "reorder", "tamper")


@dataclass(frozen=True)
class FaultRates:
    """Relative weights of each action per tick (deliver dominates a healthy link)."""

    deliver: float = 20.0
    drop: float = 0.3
    cut: float = 0.3
    blackhole: float = 0.1
    delay: float = 1.0
    duplicate: float = 0.3
    reorder: float = 0.2
    tamper: float = 0.2
    max_delay: float = 0.5

    def weights(self) -> list[float]:
        return [getattr(self, name) for name in ACTIONS]


@dataclass
class PairFaults:
    pair: ConnectionPair
    seed: int
    rates: FaultRates = field(default_factory=FaultRates)
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def tick(self) -> str:
        """One step of the link; reconnects when the phone wants a transport."""
        pair = self.pair
        if pair.phone.wants_transport and pair.phone.ended is None:
            pair.connect()
            self.counts["connect"] += 1
            return "connect"
        action = self.rng.choices(ACTIONS, weights=self.rates.weights())[0]
        done = getattr(self, f"_{action}")()
        if done:
            self.counts[action] += 1
        return action if done else "idle"

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.tick()

    def heal(self, *, timeout: float = 30.0) -> bool:
        """Stop the faults and let everything settle; True when both ends are idle."""
        pair = self.pair

        def settled() -> bool:
            if pair.phone.wants_transport and pair.phone.ended is None:
                pair.connect()
            return pair.phone.ended is not None or (
                pair.phone.linked
                and pair.station.linked
                and not pair.phone.undelivered
                and not pair.station.undelivered
            )

        return pair.run_until(settled, timeout=timeout, tick=0.05)

    # -- actions -------------------------------------------------------------------

    def _pending(self) -> list[tuple[str, deque[bytes]]]:
        t = self.pair.current
        if t is None or t.blackholed:
            return []
        return [(d, q) for d, q in ((STATION, t.to_station), (PHONE, t.to_phone)) if q]

    def _deliver(self) -> bool:
        return self.pair.step()

    def _drop(self) -> bool:
        pending = self._pending()
        if not pending:
            return False
        _, queue = self.rng.choice(pending)
        queue.popleft()
        self.pair.cut()
        return True

    def _cut(self) -> bool:
        if self.pair.current is None:
            return False
        self.pair.cut()
        return True

    def _blackhole(self) -> bool:
        t = self.pair.current
        if t is None or t.blackholed:
            return False
        self.pair.blackhole()
        return True

    def _delay(self) -> bool:
        self.pair.advance(self.rng.uniform(0, self.rates.max_delay))
        return True

    def _duplicate(self) -> bool:
        t = self.pair.current
        if t is None or t.blackholed or not t.carried:
            return False
        destination, data = self.rng.choice(t.carried)
        self.pair.inject(destination, data)
        return True

    def _reorder(self) -> bool:
        for _, queue in self._pending():
            if len(queue) >= 2:
                queue[0], queue[1] = queue[1], queue[0]
                return True
        return False

    def _tamper(self) -> bool:
        pending = self._pending()
        if not pending:
            return False
        _, queue = self.rng.choice(pending)
        data = bytearray(queue[0])
        data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        queue[0] = bytes(data)
        return True
