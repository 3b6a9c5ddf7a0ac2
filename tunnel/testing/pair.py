"""Two endpoints joined by in-memory transports, driven by hand on a fake clock.

``ConnectionPair`` is the deterministic harness for the tunnel core: open a transport,
move bytes one message at a time or until quiet, cut it, silence it, put an attacker's
bytes on it, and advance time so that liveness deadlines fire. Every message a transport
delivered is kept (``Transport.carried``), so tests can replay or tamper with them.

The network's faults are those of the one fault model, ``drill.faults``: ``apply`` an
event now, or ``follow`` a whole timeline (a profile's, a scenario's) and each event
takes effect when the clock reaches it -- the same events the fault proxy plays on real
TCP in ``station proxy`` and ``station simulate``. Time is ``clock`` (a ``FakeClock``),
read as ``now``; nothing moves until the test calls ``step``, ``transfer`` or ``advance``.

One simplification: a clean close requested by one end reaches the other at once, even
through a blackhole (what was held is lost with the connection).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from drill.faults import FaultEvent, FaultSchedule
from tunnel.errors import LinkError
from tunnel.events import Event
from tunnel.session import PhoneEndpoint, StationEndpoint
from tunnel.testing.clock import FakeClock

PHONE = "phone"
STATION = "station"
_TOWARDS: dict[str, Literal["to_station", "to_phone"]] = {
    PHONE: "to_phone",
    STATION: "to_station",
}


@dataclass
class Transport:
    """One in-memory connection: what is in flight each way, and what it delivered."""

    conn: int
    to_station: deque[bytes] = field(default_factory=deque)
    to_phone: deque[bytes] = field(default_factory=deque)
    held_until: dict[str, float] = field(default_factory=dict)  # destination -> hold ends
    phone_attached: bool = True  # False: an attacker's transport, unknown to the phone
    closed_by: str | None = None
    carried: list[tuple[str, bytes]] = field(default_factory=list)  # (destination, bytes)

    def queue(self, destination: str) -> deque[bytes]:
        return self.to_phone if destination == PHONE else self.to_station

    def held(self, destination: str, now: float) -> bool:
        """Whether bytes towards ``destination`` are held (a blackhole) at ``now``."""
        return self.held_until.get(destination, -math.inf) > now

    def hold(self, destination: str, until: float) -> None:
        self.held_until[destination] = max(self.held_until.get(destination, -math.inf), until)


class ConnectionPair:
    """A phone and a station endpoint, the transports between them, and the network."""

    def __init__(
        self,
        phone: PhoneEndpoint,
        station: StationEndpoint,
        *,
        start: float = 0.0,
        clock: FakeClock | None = None,
    ) -> None:
        self.phone = phone
        self.station = station
        self.clock = clock if clock is not None else FakeClock(start)
        self.phone_events: list[Event] = []
        self.station_events: list[Event] = []
        self.transports: dict[int, Transport] = {}
        self.current: Transport | None = None
        self.outages: list[FaultEvent] = []  # every model event applied, in order
        self._next_conn = 0
        self._timeline: list[FaultEvent] = []  # events still to come, by start
        self._down_until = -math.inf
        self._holds: list[FaultEvent] = []  # blackhole windows applied, for new transports

    @property
    def now(self) -> float:
        return self.clock.now

    # -- the network (drill.faults) --------------------------------------------------

    @property
    def down(self) -> bool:
        """Whether a ``down`` window is in force: connection attempts fail."""
        return self.now < self._down_until

    def can_connect(self) -> bool:
        return not self.down

    def follow(self, schedule: FaultSchedule) -> None:
        """Apply each of ``schedule``'s events when the clock reaches its start."""
        for event in schedule:
            bisect.insort(self._timeline, event, key=lambda e: e.start)
        self._apply_due()

    def apply(self, event: FaultEvent) -> None:
        """Apply an outage of the model now (or when the clock reaches a later start)."""
        self.follow(FaultSchedule((event,)))

    def _apply_due(self) -> None:
        while self._timeline and self._timeline[0].start <= self.now:
            event = self._timeline.pop(0)
            self.outages.append(event)
            if event.kind == "blackhole":
                self._holds.append(event)
                for t in self.transports.values():
                    self._hold(t, event)
                continue
            if event.kind == "down":
                self._down_until = max(self._down_until, event.stop)
            for t in list(self.transports.values()):
                self._drop(t)

    def _hold(self, t: Transport, event: FaultEvent) -> None:
        for destination, towards in _TOWARDS.items():
            if event.holds(towards):
                t.hold(destination, event.stop)

    def _next_change(self) -> float | None:
        """The next instant the network changes on its own: an event, a hold's end."""
        times = [self._timeline[0].start] if self._timeline else []
        for t in self.transports.values():
            times += [u for u in t.held_until.values() if self.now < u < math.inf]
        return min(times, default=None)

    # -- transports ------------------------------------------------------------------

    def connect(self, *, phone: bool = True) -> int:
        """Open a new transport (the phone dials; the station accepts).

        With ``phone=False`` the transport is an attacker's: only the station sees it,
        and what the station writes to it goes nowhere. ``LinkError`` while the network
        is down; a blackhole in force holds the new transport too.
        """
        self._apply_due()
        if self.down:
            raise LinkError("network down")
        self._next_conn += 1
        t = Transport(self._next_conn, phone_attached=phone)
        for event in self._holds:
            if event.stop > self.now:
                self._hold(t, event)
        self.transports[t.conn] = t
        self.station.connection_made(t.conn, self.now)
        if phone:
            self.current = t
            self.phone.connection_made(t.conn, self.now)
        self.collect()
        return t.conn

    def cut(self, conn: int | None = None) -> None:
        """Both ends learn at once that the transport (default: the phone's current one)
        is gone; what was in flight is lost."""
        t = self._transport(conn)
        if t is not None:
            self._drop(t)

    def blackhole(
        self, conn: int | None = None, *, until: float | None = None, direction: str = "both"
    ) -> None:
        """Silence one transport (default: the current one) until ``until`` (None: for
        good) without telling anyone: a dead NAT mapping. ``direction`` is ``"both"``,
        ``"to_phone"`` or ``"to_station"``. For the whole link, ``apply`` a blackhole."""
        t = self._transport(conn)
        if t is None:
            return
        for destination, towards in _TOWARDS.items():
            if direction in ("both", towards):
                t.hold(destination, math.inf if until is None else until)

    def inject(self, destination: str, data: bytes, conn: int | None = None) -> None:
        """Put bytes on a transport as if the network delivered them (replays, forgeries)."""
        t = self._transport(conn)
        if t is None:
            raise ValueError("no open transport")
        t.queue(destination).append(data)

    # -- moving bytes and time ---------------------------------------------------------

    def step(self) -> bool:
        """Deliver one pending message (station-bound first). False when nothing moved."""
        self.collect()  # what the endpoints produced on direct calls (send, close)
        for t in list(self.transports.values()):
            for destination in (STATION, PHONE):
                queue = t.queue(destination)
                if queue and not t.held(destination, self.now):
                    self._deliver(t, destination, queue.popleft())
                    self.collect()
                    return True
        return False

    def transfer(self, limit: int = 1_000_000) -> int:
        """Deliver until nothing deliverable is pending; returns how many messages moved."""
        moved = 0
        while moved < limit and self.step():
            moved += 1
        return moved

    def advance(self, dt: float) -> None:
        """Move time forward, firing each end's timer at its deadline and applying the
        network's changes at theirs on the way."""
        self.collect()
        self.transfer()  # what the ends already produced goes first, as on a real link
        target = self.now + dt
        while True:
            candidates = [self.phone.next_deadline(), self.station.next_deadline()]
            candidates.append(self._next_change())
            due = min((d for d in candidates if d is not None and d <= target), default=None)
            if due is None:
                break
            self.clock.advance_to(due)
            self._apply_due()
            for endpoint in (self.phone, self.station):
                deadline = endpoint.next_deadline()
                if deadline is not None and deadline <= self.now:
                    endpoint.handle_timer(self.now)
            self.collect()
            self.transfer()
        self.clock.advance_to(target)
        self._apply_due()

    def run_until(self, done: Callable[[], bool], *, timeout: float, tick: float = 0.01) -> bool:
        """Transfer and advance in small ticks until ``done()`` or ``timeout`` elapses."""
        end = self.now + timeout
        while self.now < end:
            self.transfer()
            if done():
                return True
            self.advance(tick)
        self.transfer()
        return done()

    # -- plumbing --------------------------------------------------------------------

    def _transport(self, conn: int | None) -> Transport | None:
        if conn is None:
            t = self.current
            return t if t is not None and t.conn in self.transports else None
        return self.transports.get(conn)

    def _deliver(self, t: Transport, destination: str, data: bytes) -> None:
        t.carried.append((destination, data))
        if destination == STATION:
            self.station.receive(t.conn, data, self.now)
        elif t.phone_attached:
            self.phone.receive(t.conn, data, self.now)

    def _drop(self, t: Transport) -> None:
        self.transports.pop(t.conn, None)
        if self.current is t:
            self.current = None
        self.station.connection_lost(t.conn, self.now)
        if t.phone_attached:
            self.phone.connection_lost(t.conn, self.now)
        self.collect()

    def collect(self) -> None:
        """Put what the ends wrote on their transports (in flight, not yet delivered), and
        take their events and close requests."""
        # Draining one end may make the other produce more: loop until both are quiet.
        while True:
            moved = False
            for endpoint, events, name in (
                (self.phone, self.phone_events, PHONE),
                (self.station, self.station_events, STATION),
            ):
                events.extend(endpoint.events())
                for conn, data in endpoint.data_to_send():
                    t = self.transports.get(conn)
                    if t is not None:
                        t.queue(STATION if name == PHONE else PHONE).append(data)
                        moved = True
                for conn, _reason in endpoint.close_requests():
                    t = self.transports.get(conn)
                    if t is not None:
                        # Bytes written before the close still arrive, as on a WebSocket.
                        self._deliver_then_close(t, closed_by=name)
                        moved = True
            if not moved:
                return

    def _deliver_then_close(self, t: Transport, *, closed_by: str) -> None:
        t.closed_by = closed_by
        while True:
            moved = False
            for destination in (STATION, PHONE):
                queue = t.queue(destination)
                if queue and not t.held(destination, self.now):
                    self._deliver(t, destination, queue.popleft())
                    moved = True
            for endpoint, events, towards in (
                (self.phone, self.phone_events, STATION),
                (self.station, self.station_events, PHONE),
            ):
                events.extend(endpoint.events())
                for conn, data in endpoint.data_to_send():
                    if conn == t.conn:
                        t.queue(towards).append(data)
                endpoint.close_requests()
            if not moved:
                break
        self._drop(t)
