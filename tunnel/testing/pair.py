"""Two endpoints joined by in-memory transports, driven by hand and by a fake clock.

``ConnectionPair`` is the deterministic harness for the tunnel core: open a transport,
move bytes one message at a time or until quiet, cut it, blackhole it, replay old
records into it, and advance time so that liveness deadlines fire. Every message a
transport carries is kept, so tests can replay or tamper with them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tunnel.events import Event
from tunnel.session import Endpoint, PhoneEndpoint, StationEndpoint

PHONE = "phone"
STATION = "station"


@dataclass
class _Transport:
    conn: int
    to_station: deque[bytes] = field(default_factory=deque)
    to_phone: deque[bytes] = field(default_factory=deque)
    blackholed: bool = False
    phone_attached: bool = True  # False: an attacker's transport, unknown to the phone
    closed_by: str | None = None
    carried: list[tuple[str, bytes]] = field(default_factory=list)  # (destination, bytes)


class ConnectionPair:
    """A phone and a station endpoint, and the transports between them."""

    def __init__(
        self, phone: PhoneEndpoint, station: StationEndpoint, *, start: float = 0.0
    ) -> None:
        self.phone = phone
        self.station = station
        self.now = start
        self.phone_events: list[Event] = []
        self.station_events: list[Event] = []
        self.transports: dict[int, _Transport] = {}
        self._next_conn = 0
        self.current: _Transport | None = None

    # -- transports ------------------------------------------------------------------

    def connect(self, *, phone: bool = True) -> int:
        """Open a new transport (the phone dials; the station accepts).

        With ``phone=False`` the transport is an attacker's: only the station sees it,
        and what the station writes to it goes nowhere.
        """
        self._next_conn += 1
        t = _Transport(self._next_conn, phone_attached=phone)
        self.transports[t.conn] = t
        self.station.connection_made(t.conn, self.now)
        if phone:
            self.current = t
            self.phone.connection_made(t.conn, self.now)
        self._collect()
        return t.conn

    def cut(self, conn: int | None = None) -> None:
        """Both ends learn at once that the transport is gone; in-flight bytes are lost."""
        t = self._transport(conn)
        if t is None:
            return
        self._drop(t)

    def blackhole(self, conn: int | None = None) -> None:
        """Stop delivering in both directions without telling anyone."""
        t = self._transport(conn)
        if t is not None:
            t.blackholed = True
            t.to_phone.clear()
            t.to_station.clear()

    def inject(self, destination: str, data: bytes, conn: int | None = None) -> None:
        """Put bytes on a transport as if the network delivered them (replays, forgeries)."""
        t = self._transport(conn)
        if t is None:
            raise ValueError("no open transport")
        (t.to_phone if destination == PHONE else t.to_station).append(data)

    # -- moving bytes and time ---------------------------------------------------------

    def step(self) -> bool:
        """Deliver one pending message (station-bound first). False when nothing moved."""
        self._collect()  # what the endpoints produced on direct calls (send, close)
        for t in list(self.transports.values()):
            if t.blackholed:
                continue
            for queue, endpoint, name in (
                (t.to_station, self.station, STATION),
                (t.to_phone, self.phone, PHONE),
            ):
                if queue:
                    data = queue.popleft()
                    t.carried.append((name, data))
                    if name == PHONE and not t.phone_attached:
                        return True
                    endpoint.receive(t.conn, data, self.now)
                    self._collect()
                    return True
        return False

    def transfer(self, limit: int = 1_000_000) -> int:
        """Deliver until nothing is pending; returns how many messages moved."""
        moved = 0
        while moved < limit and self.step():
            moved += 1
        return moved

    def advance(self, dt: float) -> None:
        """Move time forward, firing each end's timer at its deadline on the way."""
        self._collect()
        self.transfer()  # what the ends already produced goes first, as on a real link
        target = self.now + dt
        while True:
            deadlines = [
                d
                for d in (self.phone.next_deadline(), self.station.next_deadline())
                if d is not None
            ]
            due = min((d for d in deadlines if d <= target), default=None)
            if due is None:
                break
            self.now = max(self.now, due)
            for endpoint in (self.phone, self.station):
                deadline = endpoint.next_deadline()
                if deadline is not None and deadline <= self.now:
                    endpoint.handle_timer(self.now)
            self._collect()
            self.transfer()
        self.now = target

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

    def _transport(self, conn: int | None) -> _Transport | None:
        if conn is None:
            t = self.current
            return t if t is not None and t.conn in self.transports else None
        return self.transports.get(conn)

    def _drop(self, t: _Transport) -> None:
        self.transports.pop(t.conn, None)
        if self.current is t:
            self.current = None
        self.station.connection_lost(t.conn, self.now)
        if t.phone_attached:
            self.phone.connection_lost(t.conn, self.now)
        self._collect()

    def _collect(self) -> None:
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
                    if t is None or t.blackholed:
                        continue
                    (t.to_station if name == PHONE else t.to_phone).append(data)
                    moved = True
                for conn, _reason in endpoint.close_requests():
                    t = self.transports.get(conn)
                    if t is not None:
                        # Bytes written before the close still arrive, as on a WebSocket.
                        self._deliver_then_close(t, closed_by=name)
                        moved = True
            if not moved:
                return

    def _deliver_then_close(self, t: _Transport, *, closed_by: str) -> None:
        t.closed_by = closed_by
        if not t.blackholed:
            while t.to_station or t.to_phone:
                if t.to_station:
                    data = t.to_station.popleft()
                    t.carried.append((STATION, data))
                    self.station.receive(t.conn, data, self.now)
                if t.to_phone:
                    data = t.to_phone.popleft()
                    t.carried.append((PHONE, data))
                    if t.phone_attached:
                        self.phone.receive(t.conn, data, self.now)
                for endpoint in (self.phone, self.station):
                    self._absorb(endpoint, t)
        self._drop(t)

    def _absorb(self, endpoint: Endpoint, t: _Transport) -> None:
        events = self.phone_events if endpoint is self.phone else self.station_events
        events.extend(endpoint.events())
        for conn, data in endpoint.data_to_send():
            if conn == t.conn:
                (t.to_station if endpoint is self.phone else t.to_phone).append(data)
        endpoint.close_requests()
