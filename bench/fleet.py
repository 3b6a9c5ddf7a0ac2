"""Phones for the station benchmarks: real ``PhoneNode``s, each with its own SQLite store
(WAL, ``synchronous=FULL``), linked to a real ``station start`` over real sockets.

The phones run in this process, so that the moment each command is committed on a
phone is known exactly (its ``command`` event), and so that 32 of them do not cost 32
interpreters on a 2-core machine. Commands reach a session as ``station send`` sends
them: one JSON line on the session worker's own control socket.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.station_proc import BenchProcessError, ControlClient, Station
from medic_phone.node import PhoneNode, Target
from medic_phone.store import PhoneStore
from tunnel.identity import PhoneIdentity
from tunnel.offer import PairingOffer
from wire.control import WORKER_REQUESTS, EndedSession, Logout, LogoutReply, Send, SendReply


class BenchPhone:
    """One phone: its store, its node, and when each command was applied."""

    def __init__(self, store: PhoneStore, home: Path, identity: PhoneIdentity) -> None:
        self.store = store
        self.home = home
        self.identity = identity
        self.node: PhoneNode | None = None
        self.session: str | None = None
        self.applied: dict[int, float] = {}  # seq -> perf_counter when committed
        self.logged_out = asyncio.Event()
        self._changed = asyncio.Event()
        self._paired = asyncio.Event()
        self._runner: asyncio.Task[int] | None = None
        self.worker: ControlClient | None = None
        self.recent: collections.deque[str] = collections.deque(maxlen=12)  # event names

    def _emit(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        self.recent.append(str(kind))
        if kind == "command":
            self.applied[int(event["seq"])] = time.perf_counter()
            self._changed.set()
        elif kind == "paired":
            self.session = str(event["session"])
            self._paired.set()
        elif kind == "logout":
            self.logged_out.set()

    async def pair(self, station: Station, pair_uri: str, url: str, within: float = 30.0) -> float:
        """Link through ``url`` with the offer ``pair_uri``; seconds until paired."""
        offer = PairingOffer.from_uri(pair_uri)
        where = urlsplit(url)
        assert where.hostname is not None and where.port is not None
        target = Target(
            "offer:" + offer.offer_id.hex(),
            ((where.hostname, where.port),),
            offer.station,
            uri_offer=(offer.offer_id, offer.public_key, offer.psk()),
            mdns=False,
        )
        self.node = PhoneNode(self.store, self.identity, self._emit, home=self.home)
        self.applied.clear()
        self.logged_out.clear()
        self._paired.clear()
        start = time.perf_counter()
        self._runner = asyncio.create_task(self.node.run(target))
        try:
            async with asyncio.timeout(within):
                await self._paired.wait()
        except TimeoutError:
            raise BenchProcessError(f"a phone did not pair within {within} s") from None
        took = time.perf_counter() - start
        control = await self._control_path(station)
        self.worker = await ControlClient.connect(control)
        return took

    async def _control_path(self, station: Station) -> str:
        for _ in range(500):
            for session in (await station.status()).sessions:
                if session.session == self.session and session.control:
                    return session.control
            await asyncio.sleep(0.01)
        raise BenchProcessError("the station never listed the new session")

    async def send(self, text: str) -> tuple[int, float]:
        """A command typed for this phone: (its seq, perf_counter when it was sent)."""
        assert self.worker is not None
        sent = time.perf_counter()
        reply = await self.worker.ask(Send(text), WORKER_REQUESTS, SendReply)
        return reply.seq, sent

    async def wait_applied(self, seq: int, within: float = 60.0) -> float:
        try:
            async with asyncio.timeout(within):
                while seq not in self.applied:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise BenchProcessError(f"seq {seq} not applied within {within} s") from None
        return self.applied[seq]

    def describe(self) -> str:
        """What this phone last saw, for an error message (names and states only)."""
        state = "no node"
        if self.node is not None and self.node.pump is not None:
            endpoint = self.node.pump.endpoint
            state = f"linked={endpoint.linked} ended={endpoint.ended!r}"
        return f"{state}; last events: {', '.join(self.recent)}"

    async def wait_logged_out(self, within: float = 30.0) -> None:
        try:
            async with asyncio.timeout(within):
                await self.logged_out.wait()
        except TimeoutError:
            raise BenchProcessError(
                f"the phone did not see its logout within {within} s ({self.describe()})"
            ) from None

    async def finish(self, within: float = 30.0) -> None:
        """After a logout: the node's run returns (the station said goodbye)."""
        if self.worker is not None:
            await self.worker.close()
            self.worker = None
        if self._runner is not None:
            try:
                async with asyncio.timeout(within):
                    await self._runner
            except TimeoutError:
                self._runner.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._runner
                raise BenchProcessError("a phone did not end after its logout") from None
            self._runner = None


@contextlib.asynccontextmanager
async def phone(home: Path) -> AsyncIterator[BenchPhone]:
    """A phone with a fresh store under ``home``."""
    async with PhoneStore.create(home) as store:
        yield BenchPhone(store, home, PhoneIdentity.generate())


async def logout(station: Station, session: str) -> EndedSession:
    """``station logout --session``: the wiped session's undelivered count, once it is gone."""
    reply = await station.ask(Logout(session), LogoutReply)
    [ended] = reply.ended
    return ended
