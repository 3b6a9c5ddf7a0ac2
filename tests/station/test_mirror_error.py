"""A phone that pushes what the mirror cannot read: the station says so on its output
(a ``mirror_error`` event naming the session), and the session goes on.

The phone here is the tunnel library itself (a ``PhoneEndpoint`` over a real WebSocket to
a real ``station start``): the real phone never pushes such a thing, which is the point.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.procs import command, run, start_station
from tunnel.aio.pump import EndpointPump
from tunnel.aio.websocket import PhoneConnector
from tunnel.events import Event, LinkUp, MessageReceived, Paired
from tunnel.identity import PhoneIdentity
from tunnel.offer import PairingOffer
from tunnel.session import PhoneEndpoint
from tunnel.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_a_push_the_mirror_cannot_read_reaches_the_station_output(tmp_path: Path) -> None:
    station = start_station(tmp_path, "--host", "127.0.0.1")
    ready = station.wait_for("ready")
    offer = PairingOffer.from_uri(str(ready["pair_uri"]))
    phone = PhoneEndpoint(
        Settings(),
        identity=PhoneIdentity.generate(),
        uri_offer=(offer.offer_id, offer.public_key, offer.psk()),
    )
    linked = asyncio.Event()
    got: list[bytes] = []
    arrived = asyncio.Event()
    session = ""

    async def on_event(event: Event) -> None:
        nonlocal session
        if isinstance(event, Paired):
            session = event.session_id.hex()
        elif isinstance(event, LinkUp):
            linked.set()
        elif isinstance(event, MessageReceived):
            got.append(event.payload)
            arrived.set()

    pump = EndpointPump(phone, on_event)
    connector = PhoneConnector(pump, f"ws://127.0.0.1:{ready['port']}/")
    running = asyncio.create_task(connector.run())
    try:
        async with asyncio.timeout(30):
            await linked.wait()
        await pump.send(b"\x00 this is no message of the mirror's \xff")
        error = await asyncio.to_thread(
            station.wait_for, "mirror_error", timeout=30, where=lambda e: e["session"] == session
        )
        assert error["reason"]  # says what was wrong with it (never its content)
        assert "mirror's" not in str(error)
        # The session is not disturbed: a command typed at the kiosk still arrives.
        sent = await asyncio.to_thread(
            run, [command("station"), "send", "--control", str(tmp_path / "ctl.sock"), "still here"]
        )
        assert sent.returncode == 0, sent.stderr
        async with asyncio.timeout(30):
            await arrived.wait()
        assert b"still here" in got[0]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await pump.aclose()
        station.stop()
