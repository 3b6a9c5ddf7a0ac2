"""Two endpoints over real websockets on 127.0.0.1, the link cut every ~200 messages."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.tunnel.helpers import station_offer
from tunnel.aio.pump import EndpointPump
from tunnel.aio.websocket import PhoneConnector, pump_connection, ws_options
from tunnel.events import Event, MessageReceived
from tunnel.identity import PhoneIdentity
from tunnel.session import PhoneEndpoint, StationEndpoint
from tunnel.settings import Settings

TOTAL = 10_000
CUT_EVERY = 200


@pytest.mark.integration
@pytest.mark.asyncio
async def test_ten_thousand_messages_through_cuts() -> None:
    offer, so = station_offer()
    # A window below the cut interval, so that what is buffered in TCP when the link
    # dies cannot carry the count past the next cut point.
    settings = Settings(window=64)
    station = StationEndpoint(settings, station="Clinic", offer=so)
    phone = PhoneEndpoint(
        settings,
        identity=PhoneIdentity.generate(),
        uri_offer=(offer.offer_id, offer.public_key, offer.psk()),
    )
    at_phone: list[bytes] = []
    at_station: list[bytes] = []
    live: list[ServerConnection] = []
    cuts = 0
    done = asyncio.Event()

    async def on_phone(event: Event) -> None:
        nonlocal cuts
        if isinstance(event, MessageReceived):
            at_phone.append(event.payload)
            if len(at_phone) % CUT_EVERY == 0 and live:
                live.pop().transport.abort()  # the WiFi goes: no close handshake at all
                cuts += 1
        if len(at_phone) == TOTAL and len(at_station) == TOTAL:
            done.set()

    async def on_station(event: Event) -> None:
        if isinstance(event, MessageReceived):
            at_station.append(event.payload)
        if len(at_phone) == TOTAL and len(at_station) == TOTAL:
            done.set()

    station_pump = EndpointPump(station, on_station)

    async def handler(ws: ServerConnection) -> None:
        live.append(ws)
        await pump_connection(station_pump, ws)

    async with serve(handler, "127.0.0.1", 0, **ws_options(settings.max_record)) as server:  # type: ignore[arg-type]
        port = next(iter(server.sockets)).getsockname()[1]
        phone_pump = EndpointPump(phone, on_phone)
        connector = PhoneConnector(phone_pump, f"ws://127.0.0.1:{port}/")
        runner = asyncio.create_task(connector.run())
        async with asyncio.timeout(10):
            while not phone.linked:
                await phone_pump.wait_changed()
        for i in range(TOTAL):
            await station_pump.send(b"to-phone %d" % i)
            await phone_pump.send(b"to-station %d" % i)
            if i % 500 == 0:
                await asyncio.sleep(0)
        async with asyncio.timeout(120):
            await done.wait()
        await phone_pump.close("done")
        async with asyncio.timeout(10):
            await runner
        await station_pump.aclose()
    assert at_phone == [b"to-phone %d" % i for i in range(TOTAL)]
    assert at_station == [b"to-station %d" % i for i in range(TOTAL)]
    print(f"cuts={cuts} connects={connector.attempts}")
    # Each cut hit a live connection, and the phone came back after every one.
    assert cuts >= TOTAL // CUT_EVERY // 2
    assert connector.attempts >= cuts  # (the last cut may land on the last message)
