"""A LAN client that hogs a station's sockets; the flood tests run it in the attacker's
namespace (``python -m tests.socket_hog ...``).

* ``--hold N --source A``: N TCP connections from address A, each re-opened the moment
  it is closed (a refused one is re-opened at once, so this also floods accepts).
* ``--half-open M --sources A,B,...``: M connections spread over those addresses, each
  sending half a WebSocket upgrade and then nothing, re-opened when closed.

Bounded: at most ``--rate`` connects a second in all, and ``--duration`` seconds. Prints
one JSON line of counts a second, and a last one at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from dataclasses import asdict, dataclass

HALF_UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: station\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\n"  # ... and the rest never comes
)


@dataclass
class Counts:
    connects: int = 0
    refused: int = 0  # closed by the station within 0.1 s of opening
    errors: int = 0
    held: int = 0  # open right now
    half_open: int = 0  # half-open upgrades open right now


class Pace:
    """At most ``rate`` connects a second (a token bucket of one second)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = time.monotonic()

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


async def keep(
    source: str, host: str, port: int, payload: bytes, counts: Counts, pace: Pace
) -> None:
    while True:
        await pace.take()
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        except OSError:
            counts.errors += 1
            await asyncio.sleep(0.01)
            continue
        counts.connects += 1
        opened = time.monotonic()
        if payload:
            counts.half_open += 1
            writer.write(payload)
        else:
            counts.held += 1
        with contextlib.suppress(OSError):
            await reader.read()  # until the station closes it
        if payload:
            counts.half_open -= 1
        else:
            counts.held -= 1
        if time.monotonic() - opened < 0.1:
            counts.refused += 1
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True, help="HOST:PORT")
    parser.add_argument("--hold", type=int, default=0)
    parser.add_argument("--source", default="0.0.0.0")
    parser.add_argument("--half-open", type=int, default=0)
    parser.add_argument("--sources", default="")
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--duration", type=float, default=120.0)
    args = parser.parse_args()
    host, _, port_text = args.target.rpartition(":")
    port = int(port_text)
    counts = Counts()
    pace = Pace(args.rate)
    tasks = [
        asyncio.create_task(keep(args.source, host, port, b"", counts, pace))
        for _ in range(args.hold)
    ]
    sources = [s for s in args.sources.split(",") if s] or [args.source]
    tasks += [
        asyncio.create_task(keep(sources[i % len(sources)], host, port, HALF_UPGRADE, counts, pace))
        for i in range(args.half_open)
    ]
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        print(json.dumps(asdict(counts)), flush=True)
        await asyncio.sleep(1.0)
    for task in tasks:
        task.cancel()
    print(json.dumps(asdict(counts)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
