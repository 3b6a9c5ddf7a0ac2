"""One WebSocket connection in memory: exact, deterministic, driven by ``now``.

A ``MemoryLink`` carries opaque messages (one ``bytes`` = one WebSocket binary
message) between endpoint ``"a"`` and endpoint ``"b"``. Each direction has a fixed
latency and is first-in first-out, as one TCP stream is: a message never overtakes the
one sent before it, whatever extra delay it is given.

Closing follows WebSocket over TCP:

* ``cut(at)`` is an abrupt loss (reset, interface gone): both sides learn of it at
  ``at``; what had arrived by then still arrives, what was still in flight is lost.
* ``close(side, now)`` is a clean close by one side: that side stops reading (what was
  heading to it is lost); its messages already sent still reach the peer, followed by
  the close notice.

``blackhole(direction, start, end)`` stalls a direction without closing anything. TCP
retransmits what a stalled path loses, so a message caught in the hole is held and
arrives when the hole ends; a hole that never ends holds it until the connection
closes, and then it is lost. The endpoints notice only through their own liveness
timeouts -- which is the point.

Nothing here reads a clock or sleeps. A sender that already knows the connection is
closed gets ``LinkError`` from ``send``, as it would from a real WebSocket; a sender
that does not know yet (the peer's close is still on its way) is accepted and its
message is counted as lost.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from tunnel.errors import LinkError, UsageError

Side = Literal["a", "b"]
"""One end of a link."""

Direction = Literal["a_to_b", "b_to_a", "both"]
"""Which way messages flow: the sender first."""

SIDES: tuple[Side, Side] = ("a", "b")


def peer(side: Side) -> Side:
    """The other end."""
    return "b" if side == "a" else "a"


def receivers(direction: Direction) -> tuple[Side, ...]:
    """The receiving sides of ``direction``."""
    if direction == "a_to_b":
        return ("b",)
    if direction == "b_to_a":
        return ("a",)
    if direction == "both":
        return SIDES
    raise UsageError(f"unknown direction {direction!r}")


def direction_of(sender: Side) -> Direction:
    """The direction a message from ``sender`` travels."""
    return "a_to_b" if sender == "a" else "b_to_a"


def check_side(side: str) -> Side:
    """``side`` as a ``Side``, or ``UsageError``."""
    if side == "a":
        return "a"
    if side == "b":
        return "b"
    raise UsageError(f"side must be 'a' or 'b', not {side!r}")


@dataclass(frozen=True)
class Delivery:
    """A message that reached ``side`` on connection ``conn`` at time ``at``."""

    conn: int
    side: Side
    data: bytes = field(repr=False)  # reprs end up in logs; message content must not
    at: float


@dataclass(frozen=True)
class Closed:
    """``side`` learned at time ``at`` that connection ``conn`` is closed."""

    conn: int
    side: Side
    at: float


LinkEvent = Delivery | Closed


@dataclass
class LinkCounters:
    """What a link carried. ``sent == delivered + lost + messages still in flight``."""

    sent: int = 0  # messages accepted by ``send``
    delivered: int = 0  # messages handed to a receiver
    lost: int = 0  # accepted but never to be delivered (cut, close, endless hole)
    cuts: int = 0  # connections ended abruptly
    closes: int = 0  # connections closed cleanly by one side


@dataclass(slots=True)
class _Message:
    arrival: float  # math.inf: held by a hole that never ends
    data: bytes


class MemoryLink:
    """One bidirectional connection between endpoint ``"a"`` and endpoint ``"b"``.

    ``conn_id`` names the connection to the endpoints. ``counters`` may be shared
    between links so that a network can total what all its connections carried.
    """

    def __init__(
        self,
        conn_id: int = 1,
        *,
        latency_a_to_b: float = 0.0,
        latency_b_to_a: float | None = None,
        counters: LinkCounters | None = None,
    ) -> None:
        ab = _seconds(latency_a_to_b, "latency_a_to_b")
        ba = ab if latency_b_to_a is None else _seconds(latency_b_to_a, "latency_b_to_a")
        self.conn_id = conn_id
        self.counters = counters if counters is not None else LinkCounters()
        self._latency: dict[Side, float] = {"a": ab, "b": ba}  # keyed by sender
        # Everything below is keyed by the receiving side.
        self._queue: dict[Side, deque[_Message]] = {"a": deque(), "b": deque()}
        self._holes: dict[Side, list[tuple[float, float]]] = {"a": [], "b": []}
        self._close_at: dict[Side, float | None] = {"a": None, "b": None}
        # A clean close notice travels behind data, so holes delay it; a cut does not.
        self._close_held: dict[Side, bool] = {"a": False, "b": False}
        self._close_taken: dict[Side, bool] = {"a": False, "b": False}
        self._now = -math.inf

    # -- state ---------------------------------------------------------------------

    def latency(self, sender: Side) -> float:
        """The fixed latency of messages sent by ``sender``."""
        return self._latency[check_side(sender)]

    @property
    def closed(self) -> bool:
        """True once a cut or close has been decided (the notices may still travel)."""
        return any(t is not None for t in self._close_at.values())

    @property
    def is_up(self) -> bool:
        """True until a cut or close has been decided."""
        return not self.closed

    @property
    def finished(self) -> bool:
        """True once both sides have taken their close notice: nothing more will happen."""
        return all(self._close_taken.values())

    def is_closed(self, side: Side, now: float) -> bool:
        """Whether ``side`` knows, at ``now``, that the connection is closed."""
        at = self._close_at[check_side(side)]
        return at is not None and at <= now

    def close_time(self, side: Side) -> float | None:
        """When ``side`` learns of the close (``math.inf``: never), or None if open."""
        return self._close_at[check_side(side)]

    def in_flight(self, towards: Side) -> int:
        """Messages heading to ``towards`` and not yet taken by it."""
        return len(self._queue[check_side(towards)])

    def next_arrival(self) -> float | None:
        """The earliest time a message or a close notice reaches a side, or None.

        Messages held by an endless hole are not counted: they will never arrive.
        """
        times: list[float] = []
        for side in SIDES:
            queue = self._queue[side]
            if queue:
                times.append(queue[0].arrival)
            close = self._close_at[side]
            if close is not None and not self._close_taken[side]:
                times.append(close)
        finite = [t for t in times if math.isfinite(t)]
        return min(finite, default=None)

    # -- moving messages -------------------------------------------------------------

    def send(
        self, side: Side, data: bytes, now: float, *, extra_delay: float = 0.0
    ) -> float | None:
        """Send ``data`` from ``side`` at ``now``; return its arrival time.

        ``extra_delay`` (>= 0) adds to the latency; order is kept regardless. Returns
        ``math.inf`` if a hole holds the message for good, or None if the peer has
        already closed (the message is lost). ``LinkError`` if ``side`` knows the
        connection is closed.
        """
        side = check_side(side)
        self._tick(now)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise UsageError("a message is bytes")
        extra = _seconds(extra_delay, "extra_delay")
        if self.is_closed(side, now):
            raise LinkError("connection closed")
        towards = peer(side)
        queue = self._queue[towards]
        self.counters.sent += 1
        arrival = now + self._latency[side] + extra
        if queue:
            arrival = max(arrival, queue[-1].arrival)
        arrival = self._through_holes(towards, arrival)
        close = self._close_at[towards]
        if close is not None and arrival >= close:
            self.counters.lost += 1
            return None
        queue.append(_Message(arrival, bytes(data)))
        return arrival

    def deliverable(self, side: Side, now: float) -> list[bytes]:
        """Take the messages that reached ``side`` by ``now``, oldest first."""
        events = self._take(check_side(side), now, include_close=False)
        return [event.data for event in events if isinstance(event, Delivery)]

    def take_closed(self, side: Side, now: float) -> bool:
        """True exactly once: when ``side`` has taken every message and learned of the close."""
        side = check_side(side)
        self._tick(now)
        at = self._close_at[side]
        if self._close_taken[side] or at is None or at > now or self._queue[side]:
            return False
        self._close_taken[side] = True
        return True

    def poll(self, now: float) -> list[LinkEvent]:
        """Everything that reached either side by ``now``, in arrival order.

        Within one side the order is exact (messages, then the close notice); between
        the sides, equal times list ``"a"`` first.
        """
        events = self._take("a", now, include_close=True) + self._take("b", now, include_close=True)
        events.sort(key=lambda event: event.at)  # stable: each side stays in order
        return events

    def overtake(self, towards: Side, now: float) -> bool:
        """Swap the last two messages in flight to ``towards`` (adversarial only).

        One TCP stream never reorders; this models an attacker who can. Both messages
        then arrive at the later of their two times. False if fewer than two are in
        flight after ``now``.
        """
        queue = self._queue[check_side(towards)]
        self._tick(now)
        if len(queue) < 2 or queue[-2].arrival <= now:
            return False
        last, before = queue[-1], queue[-2]
        queue[-2], queue[-1] = last, before
        before.arrival = last.arrival
        return True

    # -- faults and endings -----------------------------------------------------------

    def blackhole(self, direction: Direction, start: float, end: float | None = None) -> None:
        """Stall ``direction`` from ``start`` until ``end`` (None: until the connection ends).

        Messages that would arrive inside the hole are held and arrive at ``end``;
        nobody is told anything.
        """
        begin = _finite(start, "start")
        until = math.inf if end is None else _finite(end, "end")
        if until <= begin:
            raise UsageError("a blackhole must end after it starts")
        for side in receivers(direction):
            self._holes[side].append((begin, until))
            self._reschedule(side)

    def cut(self, at: float) -> int:
        """End the connection abruptly at ``at``; both sides learn of it then.

        ``at`` may lie ahead of the latest ``now``: messages arriving by then still
        arrive. A cut earlier than a close already under way brings it forward.
        Returns how many messages were lost.
        """
        at = _finite(at, "at")
        if at < self._now:
            raise UsageError("cannot cut in the past")
        if not self.closed:
            self.counters.cuts += 1
        lost = 0
        for side in SIDES:
            current = self._close_at[side]
            if self._close_taken[side] or (current is not None and current <= at):
                continue
            self._close_at[side] = at
            self._close_held[side] = False
            lost += self._drop_after(side, at)
        return lost

    def close(self, side: Side, now: float) -> int:
        """``side`` closes cleanly at ``now``; returns how many messages were lost.

        Messages heading to ``side`` are lost (it stopped reading); its own messages
        in flight still arrive, then the peer learns of the close. Closing twice is
        harmless.
        """
        side = check_side(side)
        self._tick(now)
        if self.is_closed(side, now):
            return 0
        if not self.closed:
            self.counters.closes += 1
        queue = self._queue[side]
        lost = len(queue)
        queue.clear()
        self.counters.lost += lost
        self._close_at[side] = now
        self._close_held[side] = False
        other = peer(side)
        notice = self._notice_time(other, now + self._latency[side])
        current = self._close_at[other]
        if current is None or notice < current:
            self._close_at[other] = notice
            self._close_held[other] = True
        return lost

    # -- plumbing ---------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        now = _finite(now, "now")
        if now < self._now:
            raise UsageError("time went backwards")
        self._now = now

    def _take(self, side: Side, now: float, *, include_close: bool) -> list[LinkEvent]:
        self._tick(now)
        queue = self._queue[side]
        events: list[LinkEvent] = []
        while queue and queue[0].arrival <= now:
            message = queue.popleft()
            self.counters.delivered += 1
            events.append(Delivery(self.conn_id, side, message.data, message.arrival))
        at = self._close_at[side]
        if include_close and at is not None and self.take_closed(side, now):
            events.append(Closed(self.conn_id, side, at))
        return events

    def _through_holes(self, towards: Side, t: float) -> float:
        moved = True
        while moved and math.isfinite(t):
            moved = False
            for begin, until in self._holes[towards]:
                if begin <= t < until:
                    t, moved = until, True
        return t

    def _notice_time(self, towards: Side, earliest: float) -> float:
        queue = self._queue[towards]
        if queue:
            earliest = max(earliest, queue[-1].arrival)
        return self._through_holes(towards, earliest)

    def _reschedule(self, towards: Side) -> None:
        # A new hole can only push arrivals later; re-run FIFO so order still holds.
        previous = -math.inf
        for message in self._queue[towards]:
            message.arrival = max(self._through_holes(towards, message.arrival), previous)
            previous = message.arrival
        at = self._close_at[towards]
        if at is None or self._close_taken[towards]:
            return
        if self._close_held[towards]:
            self._close_at[towards] = self._notice_time(towards, at)
        else:
            self._drop_after(towards, at)

    def _drop_after(self, towards: Side, at: float) -> int:
        queue = self._queue[towards]
        kept = [m for m in queue if m.arrival <= at]
        lost = len(queue) - len(kept)
        if lost:
            queue.clear()
            queue.extend(kept)
            self.counters.lost += lost
        return lost


def _finite(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise UsageError(f"{what} must be a finite number of seconds")
    return value


def _seconds(value: float, what: str) -> float:
    value = _finite(value, what)
    if value < 0:
        raise UsageError(f"{what} must not be negative")
    return value
