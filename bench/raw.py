"""The baseline: raw ``websockets`` on 127.0.0.1, the transport's own limit here."""

from __future__ import annotations

import asyncio
import time

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

PAYLOAD = b"x" * 200
WINDOW = 1024  # the same window as the tunnel's


async def raw_throughput(count: int) -> float:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message[:8])  # a short ack per message

    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            start = time.perf_counter()
            acked = 0
            progressed = asyncio.Event()

            async def reader() -> None:
                nonlocal acked
                async for _ in ws:
                    acked += 1
                    progressed.set()
                    if acked == count:
                        return

            task = asyncio.create_task(reader())
            for i in range(count):
                while i - acked >= WINDOW:  # the same window as the tunnel's
                    progressed.clear()
                    await progressed.wait()
                await ws.send(PAYLOAD)
            await task
            return count / (time.perf_counter() - start)


async def raw_rtt(rounds: int, reps: int = 1) -> list[list[float]]:
    """``reps`` runs of ``rounds`` echo round trips on one connection."""

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            runs = []
            for _ in range(reps):
                samples = []
                for _ in range(rounds):
                    start = time.perf_counter()
                    await ws.send(PAYLOAD)
                    await ws.recv()
                    samples.append(time.perf_counter() - start)
                runs.append(samples)
            return runs
