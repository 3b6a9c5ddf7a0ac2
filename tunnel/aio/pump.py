"""Drive a Sans-I/O endpoint from asyncio: feed it, send what it says, arm one timer.

The pump holds no protocol logic. It owns the order of side effects, which matters
twice: events are handed to the application *before* the bytes that follow them are
written (the phone must persist a new resumption secret before confirming it), and
bytes for one transport leave in the order the core produced them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tunnel.endpoint import Endpoint
from tunnel.errors import UsageError
from tunnel.events import Event

log = logging.getLogger(__name__)


class Transport(Protocol):
    """One message transport (a WebSocket, or a relayed pipe in the station)."""

    async def send(self, data: bytes) -> None: ...

    async def close(self, reason: str) -> None: ...


EventHandler = Callable[[Event], Awaitable[None]]


class EndpointPump:
    """Owns an endpoint on the event loop. Every method is safe to call from tasks."""

    def __init__(
        self,
        endpoint: Endpoint[Any],  # either side: the pump never looks at handshakes
        on_event: EventHandler,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._on_event = on_event
        loop = asyncio.get_running_loop()
        self._clock = clock or loop.time
        self._loop = loop
        self._transports: dict[int, Transport] = {}
        self._next_id = 0
        self._draining = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # the deadline the armed timer is for
        self._timer_task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._not_draining = asyncio.Event()
        self._not_draining.set()
        self._idle_pending = False
        self._tasks: set[asyncio.Task[None]] = set()  # drains after input went idle

    def now(self) -> float:
        return self._clock()

    async def attach(self, transport: Transport) -> int:
        self._next_id += 1
        conn = self._next_id
        self._transports[conn] = transport
        self.endpoint.connection_made(conn, self.now())
        await self.drain()
        return conn

    async def feed(self, conn: int, data: bytes) -> None:
        self.endpoint.receive(conn, data, self.now())
        if not self._idle_pending:
            # Runs once the reading task waits for more: after the whole burst that
            # was already buffered has been fed, so one ack covers it.
            self._idle_pending = True
            self._loop.call_soon(self._input_idle)
        await self.drain()

    def _input_idle(self) -> None:
        self._idle_pending = False
        self.endpoint.input_idle(self.now())
        if self.endpoint.has_output:
            task = self._loop.create_task(self.drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def lost(self, conn: int) -> None:
        if self._transports.pop(conn, None) is None:
            return
        self.endpoint.connection_lost(conn, self.now())
        await self.drain()

    async def send(self, payload: bytes) -> int:
        seq = self.endpoint.send(payload, self.now())
        await self.drain()
        return seq

    async def acknowledge(self, seq: int) -> None:
        self.endpoint.acknowledge(seq, self.now())
        await self.drain()

    async def close(self, reason: str, *, confirm: bool = False) -> None:
        self.endpoint.close(reason, self.now(), confirm=confirm)
        await self.drain()

    async def notify(self, payload: bytes) -> bool:
        sent = self.endpoint.notify(payload, self.now())
        await self.drain()
        return sent

    async def settle(self, *, limit: float = 1.0) -> None:
        """Wait (up to ``limit`` s) for a drain another task is running, then drain what
        is left. For shutdown: the task running that drain is about to be cancelled, and
        the events it has not handed over yet (``SessionEnded``) must not be lost."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                await self._not_draining.wait()
        await self.drain()

    async def wait_changed(self) -> None:
        """Wait until the next drain (events or bytes moved)."""
        self._changed.clear()
        await self._changed.wait()

    async def drain(self) -> None:
        # One drain at a time. A drain that finds another running returns at once: the
        # running one loops until the core has nothing left, so it also carries what
        # this caller (often an event handler inside it) just queued. No await
        # separates its last look at the core from clearing the flag.
        if self._draining:
            return
        self._draining = True
        self._not_draining.clear()
        try:
            await self._drain()
        finally:
            self._draining = False
            self._not_draining.set()

    async def _drain(self) -> None:
        # Until one whole pass finds nothing: handlers may queue bytes (the phone's
        # pushes), and closing a transport may produce events (LinkDown).
        while True:
            events = self.endpoint.events()
            for event in events:
                await self._on_event(event)
            data = self.endpoint.data_to_send()
            closes = self.endpoint.close_requests()
            if not events and not data and not closes:
                break
            for conn, chunk in data:
                transport = self._transports.get(conn)
                if transport is None:
                    continue
                try:
                    await transport.send(chunk)
                except (ConnectionError, OSError) as exc:
                    log.debug("transport %d send failed: %s", conn, type(exc).__name__)
            for conn, reason in closes:
                transport = self._transports.pop(conn, None)
                if transport is not None:
                    with contextlib.suppress(ConnectionError, OSError):
                        await transport.close(reason)
                    self.endpoint.connection_lost(conn, self.now())
        self._arm_timer()
        self._changed.set()

    def _arm_timer(self) -> None:
        deadline = self.endpoint.next_deadline()
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        # Most drains push the deadline later (a ping is due a second after the last
        # send). A timer that fires early is harmless: the core finds nothing due and
        # the timer is armed again. So re-arm only for an earlier deadline.
        if self._timer is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_later(max(0.0, deadline - self.now()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._timer_task is not None and not self._timer_task.done():
            return
        self._timer_task = self._loop.create_task(self._on_timer())

    async def _on_timer(self) -> None:
        self.endpoint.handle_timer(self.now())
        await self.drain()

    async def aclose(self) -> None:
        """Stop the timer and close every transport (does not log the session out)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._timer_task is not None:
            self._timer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer_task
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for conn in list(self._transports):
            transport = self._transports.pop(conn)
            with contextlib.suppress(ConnectionError, OSError):
                await transport.close("closing")
            self.endpoint.connection_lost(conn, self.now())
        if self._transports:
            raise UsageError("transports attached while closing")
