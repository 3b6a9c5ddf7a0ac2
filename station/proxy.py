"""A fault-injecting TCP proxy, in the spirit of Toxiproxy, for drills on real links.

It sits between a phone (``medic-phone link --connect``) and a station, and applies:

* toxics on every chunk: latency with jitter (pipelined, order kept), bandwidth, a
  slicer (small writes), a data limit (reset after N bytes per connection);
* outages, from a seeded timeline (``tunnel.testing.faults.FaultSchedule``) or by hand:
  ``down`` (existing connections reset, new ones refused), ``cut`` (reset once),
  ``blackhole`` (nothing forwarded, nothing closed: only liveness can tell).

A blackhole stops *reading*, so bytes wait in the kernel's buffers and arrive when it
ends, as TCP retransmission would deliver them; nobody is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from station.errors import ConfigError
from tunnel.testing.faults import FaultSchedule

CHUNK = 65536


@dataclass(frozen=True)
class Toxics:
    latency: float = 0.0  # seconds added to every chunk
    jitter: float = 0.0  # uniform extra, 0..jitter seconds (order is kept)
    bandwidth: int | None = None  # bytes per second per direction
    slicer: int | None = None  # forward in pieces of at most this many bytes
    slicer_delay: float = 0.0  # seconds between pieces (else the kernel merges them)
    limit: int | None = None  # reset a connection after this many bytes


@dataclass
class Outage:
    kind: str
    start: float
    end: float | None = None


@dataclass
class ProxyStats:
    connections: int = 0
    refused: int = 0
    resets: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    outages: list[Outage] = field(default_factory=list)


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
    def __init__(
        self,
        listen: tuple[str, int],
        target: tuple[str, int],
        *,
        toxics: Toxics | None = None,
        schedule: FaultSchedule | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.listen = listen
        self.target = target
        self.toxics = toxics or Toxics()
        self.schedule = schedule
        self.rng = random.Random(seed)
        self.clock = clock
        self.stats = ProxyStats()
        self.state = "up"  # up | down | blackhole
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
            raise ConfigError(
                f"cannot listen on {self.listen[0]}:{self.listen[1]}: {exc.strerror}"
            ) from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.started_at = self.clock()
        if self.schedule is not None:
            self._timeline = asyncio.create_task(self._run_timeline(self.schedule))
        return self.port

    def begin(self, schedule: FaultSchedule) -> None:
        """Start following ``schedule`` now (its times count from this call)."""
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

    # -- outages ---------------------------------------------------------------------

    def _set(self, state: str) -> None:
        now = self.clock() - self.started_at
        if self.stats.outages and self.stats.outages[-1].end is None:
            self.stats.outages[-1].end = now
        if state != "up":
            self.stats.outages.append(Outage(state, now))
        self.state = state
        self._changed.set()
        self._changed = asyncio.Event()

    def down(self) -> None:
        """The link is gone: reset every connection and refuse new ones until ``up``."""
        self._set("down")
        self.cut(record=False)

    def blackhole(self) -> None:
        """Forward nothing and close nothing until ``up``."""
        self._set("blackhole")

    def up(self) -> None:
        self._set("up")

    def cut(self, *, record: bool = True) -> None:
        """Reset every connection now (the link itself stays up)."""
        if record:
            now = self.clock() - self.started_at
            self.stats.outages.append(Outage("cut", now, now))
        for conn in list(self._conns):
            self.stats.resets += 1
            conn.reset()

    async def _run_timeline(self, schedule: FaultSchedule) -> None:
        for event in sorted(schedule.events, key=lambda e: e.start):
            await self._sleep_until(event.start)
            if event.kind == "cut":
                self.cut()
                continue
            (self.down if event.kind == "down" else self.blackhole)()
            if event.end is not None:
                await self._sleep_until(event.end)
                self.up()

    async def _sleep_until(self, offset: float) -> None:
        delay = self.started_at + offset - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _wait_open(self) -> None:
        while self.state == "blackhole":
            await self._changed.wait()

    # -- forwarding ------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.state == "down":
            self.stats.refused += 1
            writer.transport.abort()
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self.stats.refused += 1
            writer.transport.abort()
            writer.close()
            return
        self.stats.connections += 1
        conn = _Conn(writer, up_writer)
        self._conns.add(conn)
        if self.state == "down":  # it went down while we were dialling the target
            self.stats.refused += 1
            conn.reset()
            self._conns.discard(conn)
            return
        conn.tasks = [
            asyncio.create_task(self._pipe(conn, reader, up_writer, up=True)),
            asyncio.create_task(self._pipe(conn, up_reader, writer, up=False)),
        ]
        try:
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        finally:
            self._conns.discard(conn)
            conn.reset()

    async def _pipe(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        toxics = self.toxics
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.create_task(self._send(conn, queue, writer, up=up))
        release = 0.0
        try:
            while True:
                await self._wait_open()
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self._wait_open()
                delay = toxics.latency + (
                    self.rng.uniform(0, toxics.jitter) if toxics.jitter else 0
                )
                release = max(release, self.clock() + delay)  # jitter never reorders
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
        toxics = self.toxics
        while (item := await queue.get()) is not None:
            release, data = item
            wait = release - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._wait_open()
            pieces = (
                [data[i : i + toxics.slicer] for i in range(0, len(data), toxics.slicer)]
                if toxics.slicer
                else [data]
            )
            for index, piece in enumerate(pieces):
                if toxics.bandwidth:
                    # Pay for the piece before it arrives, as a slow link delivers it.
                    await asyncio.sleep(len(piece) / toxics.bandwidth)
                if index and toxics.slicer_delay:
                    await asyncio.sleep(toxics.slicer_delay)
                if toxics.limit is not None and conn.forwarded + len(piece) > toxics.limit:
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
