"""``make demo``: a station and a phone over real WebSockets on 127.0.0.1, with drops.

The phone pairs by URI, then the kiosk sends commands at a steady rate while the phone
pushes messages back; on a seeded schedule the link is cut (a reset) or blackholed (no
close: only liveness notices). At the end each side's received list is checked against
what the other sent, and a table reports loss, duplicates, order and recovery times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import time

from rich.console import Console
from rich.table import Table
from websockets.asyncio.server import ServerConnection, serve

from tunnel.aio.pump import EndpointPump
from tunnel.aio.websocket import PhoneConnector, pump_connection, ws_options
from tunnel.events import Event, LinkDown, LinkUp, MessageReceived
from tunnel.handshake import StationOffer
from tunnel.identity import PhoneIdentity
from tunnel.offer import new_offer
from tunnel.pake import generate_code
from tunnel.session import PhoneEndpoint, StationEndpoint
from tunnel.settings import Settings


class _Link:
    """Cuts or blackholes the live server-side socket on command."""

    def __init__(self) -> None:
        self.live: ServerConnection | None = None
        self.blackholed = False

    def cut(self) -> None:
        if self.live is not None:
            self.live.transport.abort()
            self.live = None

    def blackhole(self) -> None:
        if self.live is not None:
            # Stop reading and writing without closing: the peer hears nothing.
            self.live.transport.pause_reading()
            self.blackholed = True


async def run(seconds: float, rate: float, seed: int, console: Console) -> int:
    rng = random.Random(seed)
    settings = Settings()
    link = _Link()
    pumps: list[EndpointPump] = []

    async def handler(ws: ServerConnection) -> None:
        link.live = ws
        await pump_connection(pumps[0], ws)

    server = await serve(handler, "127.0.0.1", 0, **ws_options(settings.max_record))  # type: ignore[arg-type]
    port = next(iter(server.sockets)).getsockname()[1]
    offer, keypair = new_offer("Demo clinic", [("127.0.0.1", port)], now=time.time(), ttl=60)
    station = StationEndpoint(
        settings,
        station="Demo clinic",
        offer=StationOffer(offer.offer_id, keypair, offer.psk(), generate_code()),
    )
    phone = PhoneEndpoint(
        settings,
        identity=PhoneIdentity.generate(),
        uri_offer=(offer.offer_id, offer.public_key, offer.psk()),
    )
    at_phone: list[bytes] = []
    at_station: list[bytes] = []
    downs: list[float] = []
    recoveries: list[float] = []
    down_since: float | None = None
    first_after_up: float | None = None

    async def on_phone(event: Event) -> None:
        nonlocal down_since, first_after_up
        if isinstance(event, MessageReceived):
            at_phone.append(event.payload)
            if first_after_up is not None:
                recoveries.append(time.monotonic() - first_after_up)
                first_after_up = None
        elif isinstance(event, LinkDown):
            down_since = time.monotonic()
            downs.append(down_since)
        elif isinstance(event, LinkUp) and down_since is not None:
            first_after_up = down_since  # recovery: from the drop to the next delivery
            down_since = None

    async def on_station(event: Event) -> None:
        if isinstance(event, MessageReceived):
            at_station.append(event.payload)

    station_pump = EndpointPump(station, on_station)
    pumps.append(station_pump)
    phone_pump = EndpointPump(phone, on_phone)
    connector = PhoneConnector(phone_pump, f"ws://127.0.0.1:{port}/", rng=rng)
    runner = asyncio.create_task(connector.run())
    console.print(f"[bold]Demo clinic[/] on ws://127.0.0.1:{port}/  pairing URI:")
    console.print(offer.to_uri(), soft_wrap=True)

    sent_to_phone = sent_to_station = cuts = blackholes = 0
    start = time.monotonic()
    next_fault = start + rng.uniform(1.0, 3.0)
    while time.monotonic() - start < seconds:
        await station_pump.send(b"command %d" % sent_to_phone)
        sent_to_phone += 1
        if sent_to_phone % 4 == 0:
            await phone_pump.send(b"message %d" % sent_to_station)
            sent_to_station += 1
        if time.monotonic() >= next_fault:
            if rng.random() < 0.7:
                link.cut()
                cuts += 1
            else:
                link.blackhole()
                blackholes += 1
            next_fault = time.monotonic() + rng.uniform(1.0, 3.0)
        await asyncio.sleep(1.0 / rate)

    # Let the last outage heal and the queues drain (bounded: 15 s).
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(15):
            while len(at_phone) < sent_to_phone or len(at_station) < sent_to_station:
                await phone_pump.wait_changed()
    await phone_pump.close("logout")
    await asyncio.wait_for(runner, 10)
    await station_pump.aclose()
    server.close()
    await server.wait_closed()

    expected_phone = [b"command %d" % i for i in range(sent_to_phone)]
    expected_station = [b"message %d" % i for i in range(sent_to_station)]
    failures = _report(
        console,
        [
            ("kiosk -> phone", expected_phone, at_phone),
            ("phone -> kiosk", expected_station, at_station),
        ],
        cuts=cuts,
        blackholes=blackholes,
        recoveries=recoveries,
    )
    return 1 if failures else 0


def _report(
    console: Console,
    directions: list[tuple[str, list[bytes], list[bytes]]],
    *,
    cuts: int,
    blackholes: int,
    recoveries: list[float],
) -> int:
    table = Table(title="Tunnel demo: exactly once, in order, through drops")
    for column in ("direction", "sent", "delivered", "lost", "duplicated", "out of order"):
        table.add_column(column, justify="right")
    failures = 0
    for name, sent, got in directions:
        lost = len(set(sent) - set(got))
        duplicated = len(got) - len(set(got))
        in_order = [m for m in got if m in set(sent)] == sent[: len(got)]
        out_of_order = 0 if in_order else 1
        failures += lost + duplicated + out_of_order
        table.add_row(
            name, str(len(sent)), str(len(got)), str(lost), str(duplicated), str(out_of_order)
        )
    console.print(table)
    p50 = statistics.median(recoveries) if recoveries else 0.0
    worst = max(recoveries, default=0.0)
    console.print(
        f"outages: {cuts} resets, {blackholes} blackholes (no close); "
        f"recovery from drop noticed to next delivery: p50 {p50:.2f} s, max {worst:.2f} s"
    )
    console.print(
        "[green]OK: nothing lost, duplicated or reordered[/]" if not failures else "[red]FAILED[/]"
    )
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tunnel.demo", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=200.0, help="commands per second")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.seconds, args.rate, args.seed, Console()))


if __name__ == "__main__":
    sys.exit(main())
