"""The real path: a station endpoint and the real phone node applying into its store.

The phone is ``medic_phone.node.PhoneNode`` with its SQLite store (WAL,
``synchronous=FULL``, group commit, ack after commit) in a temporary directory, linked
over real websockets on 127.0.0.1. The station side is the tunnel's station endpoint
and pump, as in a session worker. With ``via_proxy`` the phone reaches the station
through the fault proxy (``drill.proxy``), which can cut the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from bench.raw import WINDOW
from drill.proxy import FaultProxy
from medic_phone.node import PhoneNode, Target
from medic_phone.store import PhoneStore
from tunnel.aio.pump import EndpointPump
from tunnel.aio.websocket import pump_connection, ws_options
from tunnel.events import Acked, Event
from tunnel.handshake import StationOffer
from tunnel.identity import PhoneIdentity
from tunnel.offer import new_offer
from tunnel.pake import generate_code
from tunnel.session import StationEndpoint
from tunnel.settings import Settings
from wire.app import Command, encode

# ~200 bytes on the wire inside the record, as the raw baseline's payload.
COMMAND = encode(Command("c" * 180))


class DurableRig:
    def __init__(self, store_key: bytes | None = None, *, via_proxy: bool = False) -> None:
        self.store_key = store_key  # a sealed store, as a phone with a passphrase has
        self.proxy: FaultProxy | None = None
        self._via_proxy = via_proxy
        self.applied: dict[int, float] = {}  # seq -> perf_counter when the phone committed
        self._applied_changed = asyncio.Event()
        self.settings = Settings(window=WINDOW, queue_max_count=1_000_000, queue_max_bytes=1 << 30)
        offer, keypair = new_offer("bench", [("127.0.0.1", 1)], now=time.time(), ttl=60)
        self._offer = offer
        self.station = StationEndpoint(
            self.settings,
            station="bench",
            offer=StationOffer(offer.offer_id, keypair, offer.psk(), generate_code()),
        )
        self.acked = 0
        self._changed = asyncio.Event()
        self._live: list[ServerConnection] = []
        self._server: Server | None = None
        self.port = 0

    def _on_phone(self, event: dict[str, Any]) -> None:
        if event.get("event") == "command":
            self.applied[int(event["seq"])] = time.perf_counter()
            self._applied_changed.set()

    async def _on_station(self, event: Event) -> None:
        if isinstance(event, Acked):
            self.acked = event.through
            self._changed.set()

    async def _handler(self, ws: ServerConnection) -> None:
        self._live.append(ws)
        try:
            await pump_connection(self.pump, ws)
        finally:
            self._live.remove(ws)

    async def _serve(self, port: int) -> None:
        options = ws_options(self.settings.max_record)
        self._server = await serve(self._handler, "127.0.0.1", port, **options)  # type: ignore[arg-type]
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])

    @contextlib.asynccontextmanager
    async def linked(self) -> AsyncIterator[DurableRig]:
        self.pump = EndpointPump(self.station, self._on_station)
        await self._serve(0)
        port = self.port
        if self._via_proxy:
            self.proxy = FaultProxy(("127.0.0.1", 0), ("127.0.0.1", self.port))
            port = await self.proxy.start()
        with tempfile.TemporaryDirectory() as home_dir:
            home = Path(home_dir)
            self.home = home
            async with PhoneStore.create(home, store_key=self.store_key) as store:
                node = PhoneNode(store, PhoneIdentity.generate(), self._on_phone, home=home)
                target = Target(
                    "bench",
                    (("127.0.0.1", port),),
                    "bench",
                    uri_offer=(self._offer.offer_id, self._offer.public_key, self._offer.psk()),
                    mdns=False,
                )
                runner = asyncio.create_task(node.run(target))
                try:
                    await self.wait_linked()
                    yield self
                    await self.pump.close("bench done")
                    await asyncio.wait_for(runner, 10)
                finally:
                    runner.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await runner
        await self.pump.aclose()
        if self.proxy is not None:
            await self.proxy.stop()
        await self._stop_server()

    async def _stop_server(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_linked(self) -> None:
        while not _linked(self.station):
            await self.pump.wait_changed()

    async def wait_acked(self, seq: int) -> None:
        while self.acked < seq:
            self._changed.clear()
            await self._changed.wait()

    async def throughput(self, count: int) -> float:
        """Commands per second, each applied durably and acknowledged."""
        start = time.perf_counter()
        last = 0
        for _ in range(count):
            last = await self.pump.send(COMMAND)
        await self.wait_acked(last)
        return count / (time.perf_counter() - start)

    async def rtt(self, rounds: int) -> list[float]:
        """One command at a time: send -> applied in the store -> ack at the station."""
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            seq = await self.pump.send(COMMAND)
            await self.wait_acked(seq)
            samples.append(time.perf_counter() - start)
        return samples

    async def drain(self, count: int) -> float:
        """The link goes, ``count`` commands queue, the link comes back: seconds to all."""
        await self._stop_server()
        for ws in list(self._live):
            ws.transport.abort()
        while _linked(self.station):
            await self.pump.wait_changed()
        last = 0
        for _ in range(count):
            last = await self.pump.send(COMMAND)
        await self._serve(self.port)
        back = time.perf_counter()
        await self.wait_acked(last)
        return time.perf_counter() - back

    async def wait_applied(self, seq: int) -> float:
        while seq not in self.applied:
            self._applied_changed.clear()
            await self._applied_changed.wait()
        return self.applied[seq]

    async def recovery(self, drops: int) -> list[float]:
        """The proxy resets the link (both ends see it go); a command is typed at once:
        seconds from the cut to that command committed on the phone. Needs ``via_proxy``."""
        assert self.proxy is not None, "recovery needs the rig built with via_proxy=True"
        samples = []
        for _ in range(drops):
            await self.wait_linked()
            await self.wait_acked(self.pump.endpoint.channel.next_seq - 1)
            cut = time.perf_counter()
            self.proxy.cut()
            seq = await self.pump.send(COMMAND)
            samples.append(await self.wait_applied(seq) - cut)
        return samples


def fsync_floor(rounds: int, directory: Path | None = None) -> list[float]:
    """One SQLite commit (WAL, synchronous=FULL) at a time on the phone store's disk:
    the least a durable round trip can cost here."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE t (x BLOB)")
            samples = []
            for _ in range(rounds):
                start = time.perf_counter()
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO t VALUES (?)", (COMMAND,))
                db.execute("COMMIT")
                samples.append(time.perf_counter() - start)
            return samples
        finally:
            db.close()


def _linked(endpoint: StationEndpoint) -> bool:
    # A call, not an attribute, so that the type checker does not pin it across awaits.
    return endpoint.linked
