"""Faults played on a ``ConnectionPair``, one action at a time: the property tests' driver.

An action is one of:

* ``Deliver(count)`` -- the network carries up to ``count`` pending messages;
* ``Wait(seconds)`` -- time passes: timers fire (acks, pings, liveness), windows end;
* a ``drill.faults.FaultEvent`` -- the network fails, as the one fault model says (a
  cut, a down window, a blackhole both ways or one way); its times count from now;
* an attacker's move on the current transport, which no network does on its own:
  ``Replay`` a record it already carried, ``Reorder`` the next two messages one way,
  ``Tamper`` with a pending message (one bit).

Tests draw actions with the Hypothesis strategies of ``tunnel.testing.strategies``, so
a failing case shrinks to the few actions that matter. Between actions, the phone
reconnects whenever it wants a transport and the network lets it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from drill.faults import FaultEvent
from tunnel.testing.pair import ConnectionPair, Transport


@dataclass(frozen=True)
class Deliver:
    count: int = 1


@dataclass(frozen=True)
class Wait:
    seconds: float


@dataclass(frozen=True)
class Replay:
    """Replay the ``pick``-th (modulo) message the current transport carried."""

    pick: int


@dataclass(frozen=True)
class Reorder:
    """Swap the next two messages in flight towards ``destination`` (PHONE or STATION)."""

    destination: str


@dataclass(frozen=True)
class Tamper:
    """Flip bit ``bit`` of byte ``pick`` (modulo) of the next message in flight."""

    destination: str
    pick: int
    bit: int


Attack = Replay | Reorder | Tamper
Action = Deliver | Wait | FaultEvent | Attack


class PairFaults:
    """Plays actions on ``pair`` and counts what each one did (``counts``)."""

    def __init__(self, pair: ConnectionPair) -> None:
        self.pair = pair
        self.counts: Counter[str] = Counter()

    def reconnect(self) -> bool:
        """Open a transport if the phone wants one and the network allows it."""
        pair = self.pair
        if pair.phone.wants_transport and pair.phone.ended is None and pair.can_connect():
            pair.connect()
            self.counts["connect"] += 1
            return True
        return False

    def act(self, action: Action) -> bool:
        """Play one action; False when it had nothing to act on (no transport, no bytes)."""
        self.reconnect()
        done = self._play(action)
        if done:
            self.counts[
                action.kind if isinstance(action, FaultEvent) else type(action).__name__
            ] += 1
        return done

    def run(self, actions: Iterable[Action]) -> None:
        for action in actions:
            self.act(action)

    def heal(self, *, timeout: float = 30.0) -> bool:
        """No more faults from us: let the link recover and both queues drain. True once
        both ends are linked with nothing unacknowledged (or the session has ended)."""
        pair = self.pair

        def settled() -> bool:
            self.reconnect()
            return pair.phone.ended is not None or (
                pair.phone.linked
                and pair.station.linked
                and not pair.phone.undelivered
                and not pair.station.undelivered
            )

        return pair.run_until(settled, timeout=timeout, tick=0.05)

    # -- actions -------------------------------------------------------------------

    def _play(self, action: Action) -> bool:
        pair = self.pair
        if isinstance(action, Deliver):
            return sum(pair.step() for _ in range(action.count)) > 0
        if isinstance(action, Wait):
            pair.advance(action.seconds)
            return True
        if isinstance(action, FaultEvent):
            pair.apply(action.shifted(pair.now))
            return True
        pair.collect()  # what the ends wrote is in flight, where an attacker can reach it
        t = pair.current
        if t is None:
            return False
        if isinstance(action, Replay):
            return self._replay(t, action)
        pending = t.queue(action.destination)
        if isinstance(action, Reorder):
            if len(pending) < 2:
                return False
            pending[0], pending[1] = pending[1], pending[0]
            return True
        if not pending or not pending[0]:
            return False
        data = bytearray(pending[0])
        data[action.pick % len(data)] ^= 1 << (action.bit % 8)
        pending[0] = bytes(data)
        return True

    def _replay(self, t: Transport, action: Replay) -> bool:
        if not t.carried:
            return False
        destination, data = t.carried[action.pick % len(t.carried)]
        self.pair.inject(destination, data, t.conn)
        return True
