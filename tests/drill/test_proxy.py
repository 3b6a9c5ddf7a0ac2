"""The fault proxy: each toxic, each outage, and a timeline followed on schedule.

Every wait is on something the proxy or the echo server did, with a generous ceiling;
timing checks are lower bounds (a slow machine only makes them safer)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from drill.faults import FaultEvent, FaultSchedule
from drill.profiles import LinkConditions
from drill.proxy import FaultProxy

pytestmark = pytest.mark.asyncio


class Echo:
    """A TCP echo server on 127.0.0.1 that records the size of every read."""

    def __init__(self) -> None:
        self.reads: list[int] = []
        self._read = asyncio.Event()

    async def got(self, count: int) -> None:
        """Wait until ``count`` bytes have been read in all."""
        while sum(self.reads) < count:
            self._read.clear()
            await self._read.wait()

    async def __aenter__(self) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    self.reads.append(len(data))
                    self._read.set()
                    writer.write(data)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


@contextlib.asynccontextmanager
async def _proxy(port: int, **kw: object) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(("127.0.0.1", 0), ("127.0.0.1", port), **kw)  # type: ignore[arg-type]
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def _connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection through the proxy, once the proxy has dialled the target for it."""
    before = proxy.stats.connections
    streams = await asyncio.open_connection("127.0.0.1", proxy.port)
    async with asyncio.timeout(30):
        await proxy.wait_until(lambda: proxy.stats.connections > before)
    return streams


async def _refused(proxy: FaultProxy) -> bool:
    """True if a new connection is refused (reset at once, never forwarded)."""
    before = proxy.stats.refused
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        async with asyncio.timeout(30):
            await proxy.wait_until(lambda: proxy.stats.refused > before)
        return await _closed(reader)
    finally:
        writer.close()


async def _closed(reader: asyncio.StreamReader) -> bool:
    """True once the proxy reset or closed the connection (EOF or RST)."""
    try:
        return await asyncio.wait_for(reader.read(), 30) == b""
    except ConnectionResetError:
        return True


async def _roundtrip(proxy: FaultProxy, data: bytes) -> bytes:
    reader, writer = await _connect(proxy)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readexactly(len(data)), 30)
    finally:
        writer.close()


async def test_latency_and_jitter_keep_order() -> None:
    jittery = LinkConditions(latency=0.05, jitter=0.05)
    async with Echo() as port, _proxy(port, conditions=jittery, seed=3) as proxy:
        reader, writer = await _connect(proxy)
        start = time.monotonic()
        for i in range(100):
            writer.write(b"%04d" % i)
            await writer.drain()
            await asyncio.sleep(0.001)
        got = await asyncio.wait_for(reader.readexactly(400), 30)
        assert time.monotonic() - start >= 0.1  # at least the latency, both ways
        assert got == b"".join(b"%04d" % i for i in range(100))
        writer.close()


async def test_bandwidth_limits_throughput() -> None:
    async with Echo() as port, _proxy(port, conditions=LinkConditions(bandwidth=200_000)) as p:
        start = time.monotonic()
        assert await _roundtrip(p, b"b" * 100_000) == b"b" * 100_000
        assert time.monotonic() - start >= 0.45


async def test_slicer_delivers_small_pieces() -> None:
    echo = Echo()
    sliced = LinkConditions(slicer=100, slicer_delay=0.002)
    async with echo as port, _proxy(port, conditions=sliced) as proxy:
        assert await _roundtrip(proxy, b"s" * 5000) == b"s" * 5000
    assert len(echo.reads) >= 40 and sum(r <= 100 for r in echo.reads) >= 0.8 * len(echo.reads)


async def test_data_limit_resets_the_connection() -> None:
    async with Echo() as port, _proxy(port, conditions=LinkConditions(limit=1000)) as proxy:
        reader, writer = await _connect(proxy)
        writer.write(b"x" * 5000)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        assert len(data) < 5000 and proxy.stats.resets >= 1


async def test_blackhole_holds_without_closing_then_delivers() -> None:
    async with Echo() as port, _proxy(port) as proxy:
        reader, writer = await _connect(proxy)
        proxy.blackhole()
        writer.write(b"held")
        await writer.drain()
        # Nothing gets through while the hole lasts, however long we look.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.5)
        assert not writer.is_closing() and proxy.stats.bytes_up == 0
        proxy.up()
        assert await asyncio.wait_for(reader.readexactly(4), 30) == b"held"
        writer.close()


@pytest.mark.parametrize("direction", ["to_station", "to_phone"])
async def test_a_one_way_blackhole_holds_one_direction(direction: str) -> None:
    echo = Echo()
    async with echo as port, _proxy(port) as proxy:
        reader, writer = await _connect(proxy)
        proxy.blackhole(direction)  # type: ignore[arg-type]
        writer.write(b"ping")
        await writer.drain()
        if direction == "to_station":
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readexactly(4), 0.5)
            assert echo.reads == []  # the station side never saw it
        else:
            async with asyncio.timeout(30):
                await echo.got(4)  # it went up and was echoed...
            with pytest.raises(TimeoutError):  # ...and the echo is held
                await asyncio.wait_for(reader.readexactly(4), 0.5)
        proxy.up()
        assert await asyncio.wait_for(reader.readexactly(4), 30) == b"ping"
        writer.close()


async def test_down_resets_and_refuses_until_up() -> None:
    async with Echo() as port, _proxy(port) as proxy:
        reader, writer = await _connect(proxy)
        proxy.down()
        assert await _closed(reader)  # reset
        assert await _refused(proxy)
        writer.close()
        proxy.up()
        assert await _roundtrip(proxy, b"back") == b"back"
        assert [o.kind for o in proxy.stats.outages] == ["down"]
        assert proxy.stats.outages[0].end is not None


async def test_cut_resets_once_and_the_link_stays_up() -> None:
    async with Echo() as port, _proxy(port) as proxy:
        reader, writer = await _connect(proxy)
        proxy.cut()
        assert await _closed(reader)
        writer.close()
        assert await _roundtrip(proxy, b"again") == b"again"
        assert proxy.stats.resets == 1 and [o.kind for o in proxy.stats.outages] == ["cut"]


async def test_the_proxy_follows_a_timeline() -> None:
    schedule = FaultSchedule(
        (
            FaultEvent("cut", 0.2),
            FaultEvent("blackhole", 0.4, 0.9, "to_phone"),
            FaultEvent("down", 1.2, 600.0),  # long: the test ends it when it has seen it
        )
    )
    async with Echo() as port, _proxy(port) as proxy:
        assert await _roundtrip(proxy, b"before") == b"before"
        proxy.begin(schedule)  # its times count from here
        async with asyncio.timeout(30):
            await proxy.wait_until(lambda: proxy.state == "down")
        assert await _refused(proxy)
        proxy.end()
        assert proxy.state == "up"
        assert await _roundtrip(proxy, b"after") == b"after"
        cut, hole, down = proxy.stats.outages
        assert (cut.kind, hole.kind, down.kind) == ("cut", "blackhole", "down")
        assert hole.direction == "to_phone"
        # Never early: each change came at or after its time on the timeline.
        assert cut.start >= 0.2 and hole.start >= 0.4 and down.start >= 1.2
        assert hole.end is not None and hole.end >= 0.9
        assert down.end is not None and down.end < 600  # ended by hand
