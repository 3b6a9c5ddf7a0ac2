"""A fault-injecting TCP proxy, in the spirit of Toxiproxy, for drills on real links.

It sits between a phone (``medic-phone link --connect``) and a station and applies the
fault model of ``drill.faults``: the ``LinkConditions`` to every chunk (latency with
jitter, order kept; bandwidth; slicer; data limit), and outages from a timeline or by
hand (``down``, ``cut``, ``blackhole`` both ways or one way).

A blackhole stops *reading* the held direction, so bytes wait in the kernel's buffers and
arrive when it ends, as TCP retransmission would deliver them; nobody is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from drill.errors import ListenError
from drill.faults import Direction, FaultEvent, FaultKind, FaultSchedule, LinkState
from drill.profiles import LinkConditions

CHUNK = 65536


@dataclass
class ProxyStats:
    connections: int = 0
    refused: int = 0
    resets: int = 0
    bytes_up: int = 0  # towards the station
    bytes_down: int = 0  # towards the phone
    outages: list[FaultEvent] = field(default_factory=list)  # seconds since start/begin


class _Conn:
    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.writers = (client, server)
        self.forwarded = 0
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        # An abort, not a close: the peer sees a reset, as when the WiFi goes. The
        # pipes then end on their own (read returns nothing, drain raises).
        for writer in self.writers:
            transport = writer.transport
            if not transport.is_closing():
                transport.abort()
            writer.close()


class FaultProxy:
    """Forwards ``listen`` to ``target`` through the faults. ``state`` is ``"up"``,
    ``"down"`` or ``"blackhole"`` (``held`` says which way)."""

    def __init__(
        self,
        listen: tuple[str, int],
        target: tuple[str, int],
        *,
        conditions: LinkConditions | None = None,
        schedule: FaultSchedule | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.listen = listen
        self.target = target
        self.conditions = conditions or LinkConditions()
        self.schedule = schedule
        self.rng = random.Random(seed)
        self.clock = clock
        self.stats = ProxyStats()
        self.state = "up"
        self.held: Direction | None = None
        self._conns: set[_Conn] = set()
        self._changed = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._timeline: asyncio.Task[None] | None = None
        self.started_at = 0.0
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> int:
        try:
            self._server = await asyncio.start_server(self._accept, *self.listen)
        except OSError as exc:
            raise ListenError(
                f"cannot listen on {self.listen[0]}:{self.listen[1]}: {exc.strerror}"
            ) from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.started_at = self.clock()
        if self.schedule is not None:
            self._timeline = asyncio.create_task(self._run_timeline(self.schedule))
        return self.port

    def begin(self, schedule: FaultSchedule) -> None:
        """Follow ``schedule`` from now (its times count from this call)."""
        if self._timeline is not None:
            self._timeline.cancel()
        self.started_at = self.clock()
        self._timeline = asyncio.create_task(self._run_timeline(schedule))

    def end(self) -> None:
        """Stop the timeline and bring the link up for good."""
        if self._timeline is not None:
            self._timeline.cancel()
        if self.state != "up":
            self.up()

    async def stop(self) -> None:
        if self._timeline is not None:
            self._timeline.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timeline
        if self._server is not None:
            self._server.close()
        tasks = [task for conn in self._conns for task in conn.tasks]
        for conn in list(self._conns):
            conn.reset()
        for task in tasks:
            task.cancel()  # a pipe may be waiting out a blackhole
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def wait_until(self, check: Callable[[], bool]) -> None:
        """Wait until ``check()`` holds, re-checked whenever the proxy's state or its
        connections change (bound it with ``asyncio.timeout``)."""
        while not check():
            await self._changed.wait()

    # -- outages ---------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _set(self, state: str, kind: FaultKind | None, held: Direction | None = None) -> None:
        now = self.clock() - self.started_at
        outages = self.stats.outages
        if outages and outages[-1].kind != "cut" and outages[-1].end is None:
            outages[-1] = replace(outages[-1], end=max(now, outages[-1].start + 1e-6))
        if kind is not None:
            outages.append(FaultEvent(kind, now, None, held or "both"))
        self.state = state
        self.held = held
        self._notify()

    def down(self) -> None:
        """The link is gone: reset every connection and refuse new ones until ``up``."""
        self._set("down", "down")
        self._reset_all()

    def blackhole(self, direction: Direction = "both") -> None:
        """Forward nothing (towards ``direction``) and close nothing until ``up``."""
        self._set("blackhole", "blackhole", direction)

    def up(self) -> None:
        self._set("up", None)

    def cut(self) -> None:
        """Reset every connection now (the link itself stays as it is)."""
        self.stats.outages.append(FaultEvent("cut", self.clock() - self.started_at))
        self._reset_all()
        self._notify()

    def _reset_all(self) -> None:
        for conn in list(self._conns):
            self.stats.resets += 1
            conn.reset()

    def _follow(self, state: LinkState) -> None:
        if state.down:
            if self.state != "down":
                self.down()
            return
        if state.hold_to_station or state.hold_to_phone:
            both = state.hold_to_station and state.hold_to_phone
            held: Direction = (
                "both" if both else "to_station" if state.hold_to_station else "to_phone"
            )
            if (self.state, self.held) != ("blackhole", held):
                self.blackhole(held)
            return
        if self.state != "up":
            self.up()

    async def _run_timeline(self, schedule: FaultSchedule) -> None:
        for t in schedule.boundaries():
            await self._sleep_until(t)
            for _ in range(schedule.cuts_between(t - 1e-9, t)):
                self.cut()
            self._follow(schedule.state_at(t))

    async def _sleep_until(self, offset: float) -> None:
        delay = self.started_at + offset - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)

    def _holds(self, up: bool) -> bool:
        if self.state != "blackhole":
            return False
        return self.held in ("both", "to_station" if up else "to_phone")

    async def _wait_open(self, up: bool) -> None:
        while self._holds(up):
            await self._changed.wait()

    # -- forwarding ------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.state == "down":
            self._refuse(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._refuse(writer)
            return
        conn = _Conn(writer, up_writer)
        if self.state == "down":  # it went down while we were dialling the target
            self.stats.refused += 1
            conn.reset()
            self._notify()
            return
        self.stats.connections += 1
        self._conns.add(conn)
        conn.tasks = [
            asyncio.create_task(self._pipe(conn, reader, up_writer, up=True)),
            asyncio.create_task(self._pipe(conn, up_reader, writer, up=False)),
        ]
        self._notify()
        try:
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        finally:
            self._conns.discard(conn)
            conn.reset()
            self._notify()

    def _refuse(self, writer: asyncio.StreamWriter) -> None:
        self.stats.refused += 1
        writer.transport.abort()
        writer.close()
        self._notify()

    async def _pipe(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        conditions = self.conditions
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.create_task(self._send(conn, queue, writer, up=up))
        release = 0.0
        try:
            while True:
                await self._wait_open(up)
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self._wait_open(up)
                jitter = self.rng.uniform(0, conditions.jitter) if conditions.jitter else 0.0
                release = max(release, self.clock() + conditions.latency + jitter)  # in order
                await queue.put((release, data))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait(None)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                sender.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await sender

    async def _send(
        self,
        conn: _Conn,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        writer: asyncio.StreamWriter,
        *,
        up: bool,
    ) -> None:
        c = self.conditions
        while (item := await queue.get()) is not None:
            release, data = item
            wait = release - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._wait_open(up)
            pieces = (
                [data[i : i + c.slicer] for i in range(0, len(data), c.slicer)]
                if c.slicer
                else [data]
            )
            for index, piece in enumerate(pieces):
                if c.bandwidth:
                    # Pay for the piece before it arrives, as a slow link delivers it.
                    await asyncio.sleep(len(piece) / c.bandwidth)
                if index and c.slicer_delay:
                    await asyncio.sleep(c.slicer_delay)
                if c.limit is not None and conn.forwarded + len(piece) > c.limit:
                    self.stats.resets += 1
                    conn.reset()
                    return
                writer.write(piece)
                conn.forwarded += len(piece)
                if up:
                    self.stats.bytes_up += len(piece)
                else:
                    self.stats.bytes_down += len(piece)
                try:
                    await writer.drain()
                except (ConnectionError, OSError):
                    return
        with contextlib.suppress(ConnectionError, OSError):
            writer.write_eof()
