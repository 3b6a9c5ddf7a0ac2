"""The bare tunnel (no store): a station and a phone endpoint over real websockets."""

from __future__ import annotations

import asyncio
import statistics
import time

from websockets.asyncio.server import ServerConnection, serve

from bench.raw import PAYLOAD, WINDOW
from tunnel.aio.pump import EndpointPump
from tunnel.aio.websocket import PhoneConnector, pump_connection, ws_options
from tunnel.events import Acked, Event, MessageReceived
from tunnel.handshake import StationOffer
from tunnel.identity import PhoneIdentity
from tunnel.offer import new_offer
from tunnel.pake import generate_code
from tunnel.session import PhoneEndpoint, StationEndpoint
from tunnel.settings import Settings


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


async def tunnel_rtt(rounds: int, reps: int = 1) -> list[list[float]]:
    """``reps`` runs of ``rounds`` round trips (send -> delivered -> ack) on one link."""
    async with TunnelPair() as pair:
        runs = []
        for _ in range(reps):
            samples = []
            for _ in range(rounds):
                start = time.perf_counter()
                seq = await pair.station.send(PAYLOAD)
                await pair.wait_acked(seq)
                samples.append(time.perf_counter() - start)
            runs.append(samples)
        return runs


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


async def _ignore(event: Event) -> None:
    return None
