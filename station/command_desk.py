"""Where a session's typed commands come in (``station send`` on the worker's own 0600
socket, or the kiosk page) and where their fates are followed: queued, sent, applied.

The text goes straight into the tunnel's sealed queue; only seqs, counts and states
leave this module (to the supervisor over the pipe, to the page as ticks).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from station.fates import CommandFate
from station.session_record import SessionRecord
from tunnel.aio.pump import EndpointPump
from tunnel.errors import QueueFull, SessionClosed
from tunnel.station_endpoint import StationEndpoint
from wire import jsonlines, pipe
from wire.app import Command, encode
from wire.control import (
    WORKER_REQUESTS,
    Failure,
    Send,
    SendReply,
    Wait,
    WaitReply,
    WorkerStatus,
    WorkerStatusReply,
)

MAX_SEND_IDS = 10_000  # `station send --id` ids remembered, so a retry never duplicates
_SETTLED = ("applied", "expired", "discarded", "undelivered")

Report = Callable[[pipe.WorkerEvent], Awaitable[None]]
OnFates = Callable[[list[CommandFate]], None]


class CommandDesk:
    def __init__(
        self,
        pump: EndpointPump,
        record: SessionRecord,
        report: Report,
        *,
        default_ttl: float | None,
        counts: Callable[[], Awaitable[tuple[int, int]]],
    ) -> None:
        self._pump = pump
        self.record = record
        self._report = report
        self._default_ttl = default_ttl
        self._counts = counts
        self._send_ids: dict[str, int] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._last_acked = -1
        self.on_fates: OnFates | None = None  # the page's ticks
        self._server: asyncio.AbstractServer | None = None
        self.path: Path | None = None

    @property
    def endpoint(self) -> StationEndpoint:
        endpoint = self._pump.endpoint
        assert isinstance(endpoint, StationEndpoint)
        return endpoint

    # -- the control socket ------------------------------------------------------------

    async def open(self, path: Path) -> None:
        self.path = path
        self._server = await jsonlines.listen(path, WORKER_REQUESTS, self._request)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _request(self, request: object) -> object:
        match request:
            case Send():
                return await self.send(request)
            case Wait(seqs, timeout):
                if not 0 <= timeout <= 3600:
                    return Failure("timeout must be 0 to 3600 seconds")
                return await self.wait(seqs, timeout)
            case WorkerStatus():
                chats, messages = await self._counts()
                endpoint = self.endpoint
                return WorkerStatusReply(endpoint.linked, endpoint.undelivered, chats, messages)
        return Failure(f"not a request of a worker: {type(request).__name__}")

    # -- commands ----------------------------------------------------------------------

    async def activity(self) -> None:
        await self._report(pipe.Activity())

    async def send(self, request: Send) -> SendReply | Failure:
        """Queue one typed command. Every attempt counts as activity, accepted or not.
        The seq reaches the supervisor (and the pipe's kernel buffer) before the sender
        hears of it, so the supervisor's account of what never arrived is exact even if
        this process dies next."""
        await self.activity()
        if request.id is not None and len(request.id) > 200:
            return Failure("id must be at most 200 characters")
        if request.id is not None and request.id in self._send_ids:
            seq = self._send_ids[request.id]
            return SendReply(seq, self.endpoint.undelivered, duplicate=True)
        ttl = request.ttl if request.ttl is not None else self._default_ttl
        try:
            payload = encode(Command(request.text, request.chat, round(time.time(), 3), ttl))
        except ValueError as exc:
            return Failure(str(exc))
        try:
            seq = self.endpoint.send(payload, self._pump.now())
        except QueueFull as exc:
            return Failure(str(exc), full=True)
        except SessionClosed:
            return Failure("the session has ended")
        if request.id is not None:
            self._send_ids[request.id] = seq
            if len(self._send_ids) > MAX_SEND_IDS:
                self._send_ids.pop(next(iter(self._send_ids)))
        await self._report(pipe.Queued(seq))
        await self.changed([self.record.queued(seq, ttl)])
        await self._pump.drain()
        await self.moved()
        return SendReply(seq, self.endpoint.undelivered)

    async def wait(self, seqs: tuple[int, ...], wait: float) -> WaitReply:
        """`station send --wait`: until every seq is applied (or settled), or the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            fates = [self.record.fates.get(seq) for seq in seqs]
            states = [f.state.value if f is not None else "unknown" for f in fates]
            left = deadline - loop.time()
            if all(state in _SETTLED for state in states) or left <= 0:
                return WaitReply(dict(zip(map(str, seqs), states, strict=True)))
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await waiter

    # -- fates -------------------------------------------------------------------------

    async def acked(self) -> None:
        """The phone's cursor may have moved: the supervisor's ledger follows it."""
        acked = self.endpoint.channel.acked
        if acked != self._last_acked:
            self._last_acked = acked
            await self._report(pipe.Acked(acked))

    async def moved(self) -> None:
        """The link sent or heard something: commands may now be sent or applied."""
        await self.changed(self.record.link_moved(self.endpoint))

    async def changed(self, fates: list[CommandFate]) -> None:
        if not fates:
            return
        if self.on_fates is not None:
            self.on_fates(fates)
        await self._report(self.record.summary())
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
