"""``make bench``: the tunnel against raw websockets on the same machine, same run.

* ``throughput_ratio``: acked messages per second through the tunnel (200-byte
  payloads) over raw websockets messages per second (same payloads, echo-acked in
  windows the same size).
* ``rtt_p99_ratio``: p99 round trip of one message through the tunnel (send -> peer
  delivers -> ack back) over the p99 of a raw websockets echo.

Prints a table and writes ``bench/results.json``. ``--quick`` is the smoke run that
``make test`` uses: it checks the benchmark works, its figures mean little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from tunnel.aio.pump import EndpointPump
from tunnel.aio.websocket import PhoneConnector, pump_connection, ws_options
from tunnel.events import Acked, Event, MessageReceived, Settings
from tunnel.handshake import StationOffer
from tunnel.identity import PhoneIdentity
from tunnel.offer import new_offer
from tunnel.pake import generate_code
from tunnel.session import PhoneEndpoint, StationEndpoint

PAYLOAD = b"x" * 200
WINDOW = 1024


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


async def raw_rtt(rounds: int) -> list[float]:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            samples = []
            for _ in range(rounds):
                start = time.perf_counter()
                await ws.send(PAYLOAD)
                await ws.recv()
                samples.append(time.perf_counter() - start)
            return samples


class TunnelPair:
    """A station and a phone endpoint linked over real websockets on 127.0.0.1."""

    def __init__(self) -> None:
        self.delivered = 0
        self.acked = 0
        self.changed = asyncio.Event()

    async def __aenter__(self) -> TunnelPair:
        settings = Settings(window=WINDOW, queue_max_count=1_000_000, queue_max_bytes=1 << 30)
        offer, keypair = new_offer("bench", [("127.0.0.1", 1)], now=time.time(), ttl=60)
        station = StationEndpoint(
            settings,
            station="bench",
            offer=StationOffer(offer.offer_id, keypair, offer.psk(), generate_code()),
        )
        phone = PhoneEndpoint(
            settings,
            identity=PhoneIdentity.generate(),
            uri_offer=(offer.offer_id, offer.public_key, offer.psk()),
        )

        async def on_station(event: Event) -> None:
            if isinstance(event, Acked):
                self.acked = event.through
                self.changed.set()

        async def on_phone(event: Event) -> None:
            if isinstance(event, MessageReceived):
                self.delivered += 1

        self.station = EndpointPump(station, on_station)

        async def handler(ws: ServerConnection) -> None:
            await pump_connection(self.station, ws)

        self.server = await serve(handler, "127.0.0.1", 0, **ws_options(settings.max_record))  # type: ignore[arg-type]
        port = next(iter(self.server.sockets)).getsockname()[1]
        self.phone = EndpointPump(phone, on_phone)
        self.runner = asyncio.create_task(
            PhoneConnector(self.phone, f"ws://127.0.0.1:{port}/").run()
        )
        while not station.linked:
            await self.station.wait_changed()
        return self

    async def wait_acked(self, seq: int) -> None:
        while self.acked < seq:
            self.changed.clear()
            await self.changed.wait()

    async def __aexit__(self, *exc: object) -> None:
        await self.phone.close("bench done")
        await asyncio.wait_for(self.runner, 10)
        await self.station.aclose()
        self.server.close()
        await self.server.wait_closed()


async def tunnel_throughput(count: int) -> float:
    async with TunnelPair() as pair:
        start = time.perf_counter()
        last = 0
        for _ in range(count):
            last = await pair.station.send(PAYLOAD)
        await pair.wait_acked(last)
        return count / (time.perf_counter() - start)


async def tunnel_rtt(rounds: int) -> list[float]:
    async with TunnelPair() as pair:
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            seq = await pair.station.send(PAYLOAD)
            await pair.wait_acked(seq)
            samples.append(time.perf_counter() - start)
        return samples


async def durable(count: int, drain: int, drops: int) -> dict[str, float]:
    """The real phone node applying into its SQLite store (WAL, synchronous=FULL)."""
    import tempfile

    from medic_phone.node import PhoneNode, Target
    from medic_phone.store import PhoneStore
    from station.mirror import encode_command

    settings = Settings(window=WINDOW, queue_max_count=1_000_000, queue_max_bytes=1 << 30)
    offer, keypair = new_offer("bench", [("127.0.0.1", 1)], now=time.time(), ttl=60)
    station = StationEndpoint(
        settings,
        station="bench",
        offer=StationOffer(offer.offer_id, keypair, offer.psk(), generate_code()),
    )
    acked = 0
    changed = asyncio.Event()
    delivered_at: list[float] = []

    async def on_station(event: Event) -> None:
        nonlocal acked
        if isinstance(event, Acked):
            acked = event.through
            delivered_at.append(time.perf_counter())
            changed.set()

    pump = EndpointPump(station, on_station)
    live: list[ServerConnection] = []

    async def handler(ws: ServerConnection) -> None:
        live.append(ws)
        await pump_connection(pump, ws)

    async def wait_acked(seq: int) -> None:
        while acked < seq:
            changed.clear()
            await changed.wait()

    server = await serve(handler, "127.0.0.1", 0, **ws_options(settings.max_record))  # type: ignore[arg-type]
    port = next(iter(server.sockets)).getsockname()[1]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as home_dir:
        home = Path(home_dir)
        async with PhoneStore.create(home) as store:
            node = PhoneNode(store, PhoneIdentity.generate(), lambda e: None, home=home)
            target = Target(
                "bench",
                (f"ws://127.0.0.1:{port}/",),
                "bench",
                uri_offer=(offer.offer_id, offer.public_key, offer.psk()),
            )
            runner = asyncio.create_task(node.run(target))
            while not station.linked:
                await pump.wait_changed()
            payload = encode_command("c" * 180)  # ~200 bytes on the wire inside the record
            start = time.perf_counter()
            last = 0
            for _ in range(count):
                last = await pump.send(payload)
            await wait_acked(last)
            out["durable_msgs_per_s"] = count / (time.perf_counter() - start)
            # drain: the link goes, `drain` commands queue, the link comes back.
            server.close()
            for ws in live:
                ws.transport.abort()
            await server.wait_closed()
            while _linked(station):
                await pump.wait_changed()
            for _ in range(drain):
                last = await pump.send(payload)
            server = await serve(handler, "127.0.0.1", port, **ws_options(settings.max_record))  # type: ignore[arg-type]
            back = time.perf_counter()
            await wait_acked(last)
            out["drain_10k_s"] = (time.perf_counter() - back) * 10_000 / drain
            # recovery: a reset, then the time to the next command applied and acked.
            samples = []
            for _ in range(drops):
                while not _linked(station):
                    await pump.wait_changed()
                for ws in list(live):
                    ws.transport.abort()
                live.clear()
                cut = time.perf_counter()
                seq = await pump.send(payload)
                await wait_acked(seq)
                samples.append(time.perf_counter() - cut)
            out["recovery_p99_s"] = p99(samples)
            await pump.close("bench done")
            await asyncio.wait_for(runner, 10)
    await pump.aclose()
    server.close()
    await server.wait_closed()
    return out


async def pairing_ms(rounds: int) -> dict[str, float]:
    """Pairing on loopback, by URI and by code: connect to the phone's first LinkUp."""
    uri: list[float] = []
    code: list[float] = []
    for by_code in [False] * rounds + [True] * rounds:
        settings = Settings()
        offer, keypair = new_offer("bench", [("127.0.0.1", 1)], now=time.time(), ttl=60)
        so = StationOffer(offer.offer_id, keypair, offer.psk(), generate_code())
        station = StationEndpoint(settings, station="bench", offer=so)
        phone = PhoneEndpoint(
            settings,
            identity=PhoneIdentity.generate(),
            code=so.code if by_code else None,
            uri_offer=None if by_code else (offer.offer_id, offer.public_key, offer.psk()),
        )
        spump = EndpointPump(station, _ignore)

        async def handler(ws: ServerConnection, spump: EndpointPump = spump) -> None:
            await pump_connection(spump, ws)

        async with serve(handler, "127.0.0.1", 0, **ws_options(settings.max_record)) as server:  # type: ignore[arg-type]
            port = next(iter(server.sockets)).getsockname()[1]
            ppump = EndpointPump(phone, _ignore)
            start = time.perf_counter()
            runner = asyncio.create_task(PhoneConnector(ppump, f"ws://127.0.0.1:{port}/").run())
            while not phone.linked:
                await ppump.wait_changed()
            (code if by_code else uri).append((time.perf_counter() - start) * 1000)
            await ppump.close("done")
            await asyncio.wait_for(runner, 10)
            await spump.aclose()
    return {"pair_uri_ms": statistics.median(uri), "pair_code_ms": statistics.median(code)}


def _linked(endpoint: StationEndpoint) -> bool:
    # A call, not an attribute, so that the type checker does not pin it across awaits.
    return endpoint.linked


async def _ignore(event: Event) -> None:
    return None


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


async def run(quick: bool) -> dict[str, Any]:
    count, rounds = (2_000, 200) if quick else (20_000, 2_000)
    raw_tp = await raw_throughput(count)
    tun_tp = await tunnel_throughput(count)
    raw_p99 = p99(await raw_rtt(rounds))
    tun_p99 = p99(await tunnel_rtt(rounds))
    d = await durable(count, 1_000 if quick else 10_000, 10 if quick else 50)
    pairing = await pairing_ms(3 if quick else 10)
    return {
        "quick": quick,
        "machine": f"{platform.machine()} {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        "raw_msgs_per_s": round(raw_tp),
        "tunnel_msgs_per_s": round(tun_tp),
        "throughput_ratio": round(tun_tp / raw_tp, 3),
        "raw_rtt_p99_ms": round(raw_p99 * 1000, 3),
        "tunnel_rtt_p99_ms": round(tun_p99 * 1000, 3),
        "rtt_p99_ratio": round(tun_p99 / raw_p99, 3),
        "durable_msgs_per_s": round(d["durable_msgs_per_s"]),
        "durable_throughput_ratio": round(d["durable_msgs_per_s"] / raw_tp, 3),
        "drain_10k_s": round(d["drain_10k_s"], 3),
        "recovery_p99_s": round(d["recovery_p99_s"], 3),
        "pair_uri_ms": round(pairing["pair_uri_ms"], 1),
        "pair_code_ms": round(pairing["pair_code_ms"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: checks it works")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.json")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.quick))
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    if not args.quick:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
