"""The fault proxy: each toxic, each outage, and a timeline followed on schedule."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from station.proxy import FaultProxy, Toxics
from tunnel.testing.faults import FaultSchedule, get_profile

pytestmark = pytest.mark.asyncio


class Echo:
    """A TCP echo server on 127.0.0.1 that records the size of every read."""

    def __init__(self) -> None:
        self.reads: list[int] = []

    async def __aenter__(self) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    self.reads.append(len(data))
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


async def _proxy(port: int, **kw: object) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(("127.0.0.1", 0), ("127.0.0.1", port), **kw)  # type: ignore[arg-type]
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def _connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _closed(reader: asyncio.StreamReader) -> bool:
    """True once the proxy reset or closed the connection (EOF or RST)."""
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        return True


async def _roundtrip(proxy: FaultProxy, data: bytes) -> bytes:
    reader, writer = await _connect(proxy)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readexactly(len(data)), 10)
    finally:
        writer.close()


async def test_latency_and_jitter_keep_order() -> None:
    async with Echo() as port:
        async for proxy in _proxy(port, toxics=Toxics(latency=0.05, jitter=0.05), seed=3):
            reader, writer = await _connect(proxy)
            start = time.monotonic()
            for i in range(100):
                writer.write(b"%04d" % i)
                await writer.drain()
                await asyncio.sleep(0.001)
            got = await asyncio.wait_for(reader.readexactly(400), 10)
            assert time.monotonic() - start >= 0.1  # at least the latency, both ways
            assert got == b"".join(b"%04d" % i for i in range(100))
            writer.close()


async def test_bandwidth_limits_throughput() -> None:
    async with Echo() as port:
        async for proxy in _proxy(port, toxics=Toxics(bandwidth=200_000)):
            start = time.monotonic()
            assert await _roundtrip(proxy, b"b" * 100_000) == b"b" * 100_000
            assert time.monotonic() - start >= 0.45


async def test_slicer_delivers_small_pieces() -> None:
    echo = Echo()
    async with echo as port:
        async for proxy in _proxy(port, toxics=Toxics(slicer=100, slicer_delay=0.002)):
            assert await _roundtrip(proxy, b"s" * 5000) == b"s" * 5000
    assert len(echo.reads) >= 40 and sum(r <= 100 for r in echo.reads) >= 0.8 * len(echo.reads)


async def test_data_limit_resets_the_connection() -> None:
    async with Echo() as port:
        async for proxy in _proxy(port, toxics=Toxics(limit=1000)):
            reader, writer = await _connect(proxy)
            writer.write(b"x" * 5000)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert len(data) < 5000 and proxy.stats.resets >= 1


async def test_blackhole_holds_without_closing_then_delivers() -> None:
    async with Echo() as port:
        async for proxy in _proxy(port):
            reader, writer = await _connect(proxy)
            proxy.blackhole()
            writer.write(b"held")
            await writer.drain()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readexactly(4), 0.5)
            assert not writer.is_closing()
            proxy.up()
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"
            writer.close()


async def test_down_resets_and_refuses_until_up() -> None:
    async with Echo() as port:
        async for proxy in _proxy(port):
            reader, writer = await _connect(proxy)
            proxy.down()
            assert await _closed(reader)  # reset
            r2, w2 = await _connect(proxy)
            assert await _closed(r2)  # refused
            writer.close()
            w2.close()
            proxy.up()
            assert await _roundtrip(proxy, b"back") == b"back"
            assert proxy.stats.refused >= 1 and [o.kind for o in proxy.stats.outages] == ["down"]


async def test_cut_resets_once_and_the_link_stays_up() -> None:
    async with Echo() as port:
        async for proxy in _proxy(port):
            reader, writer = await _connect(proxy)
            await asyncio.sleep(0.05)
            proxy.cut()
            assert await _closed(reader)
            writer.close()
            assert await _roundtrip(proxy, b"again") == b"again"


async def test_the_proxy_follows_a_timeline() -> None:
    schedule = FaultSchedule.from_events([{"kind": "down", "start": 0.2, "end": 0.6}])
    async with Echo() as port:
        async for proxy in _proxy(port, schedule=schedule):
            assert await _roundtrip(proxy, b"before") == b"before"
            await asyncio.sleep(0.3)
            assert proxy.state == "down"
            r, w = await _connect(proxy)
            assert await _closed(r)
            w.close()
            await asyncio.sleep(0.4)
            assert proxy.state == "up"
            assert await _roundtrip(proxy, b"after") == b"after"


async def test_a_seeded_timeline_is_reproducible() -> None:
    profile = get_profile("flaky-wifi")
    one = FaultSchedule.generate(profile, seed=42, duration=120).to_dicts()
    two = FaultSchedule.generate(profile, seed=42, duration=120).to_dicts()
    other = FaultSchedule.generate(profile, seed=43, duration=120).to_dicts()
    assert one == two and one != other and one
