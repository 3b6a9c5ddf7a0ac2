"""The pump's order of side effects, which makes the phone's resumption secret crash-safe.

A completed handshake gives the phone a new resumption secret (``StateChanged``). The
station commits that secret only when the phone's first record on the new transport
confirms it. So the phone must have persisted its state before that record is written:
a crash in between must leave it holding the secret the station will accept. The pump
hands every event to the application, and waits for it, before it writes the bytes the
core produced with it.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.tunnel.helpers import make_pair, paired
from tunnel.aio.pump import EndpointPump
from tunnel.events import Event, LinkUp, StateChanged
from tunnel.session import PhoneState
from tunnel.testing import ConnectionPair

pytestmark = pytest.mark.asyncio

STATION_CONN = 7


class RecordingTransport:
    """Writes nothing anywhere: records each write and close, in order, in ``log``."""

    def __init__(self, log: list[tuple[str, object]]) -> None:
        self.log = log

    async def send(self, data: bytes) -> None:
        self.log.append(("write", data))

    async def close(self, reason: str) -> None:
        self.log.append(("close", reason))


def _writes(log: list[tuple[str, object]]) -> list[bytes]:
    return [data for kind, data in log if kind == "write" and isinstance(data, bytes)]


async def _run_handshake(pair: ConnectionPair) -> None:
    """The phone through a pump, the station by hand (Sans-I/O): one handshake, with a
    slow ``StateChanged`` handler (an fsync), checking what was written meanwhile."""
    log: list[tuple[str, object]] = []
    persisted: list[PhoneState] = []
    entered, release = asyncio.Event(), asyncio.Event()

    async def on_event(event: Event) -> None:
        log.append(("event", type(event).__name__))
        if isinstance(event, StateChanged):
            entered.set()
            await release.wait()  # the store's commit takes its time
            persisted.append(pair.phone.export_state())
            log.append(("persisted", None))

    pump = EndpointPump(pair.phone, on_event, clock=pair.clock)
    try:
        conn = await pump.attach(RecordingTransport(log))
        (hello,) = _writes(log)
        pair.station.connection_made(STATION_CONN, pair.now)
        pair.station.receive(STATION_CONN, hello, pair.now)
        replies = [d for c, d in pair.station.data_to_send() if c == STATION_CONN]
        assert len(replies) == 1
        feeding = asyncio.create_task(pump.feed(conn, replies[0]))
        async with asyncio.timeout(30):
            await entered.wait()
        for _ in range(50):  # the pump has every chance to write early: it must not
            await asyncio.sleep(0)
        assert _writes(log) == [hello], "bytes written before the new state was persisted"
        release.set()
        async with asyncio.timeout(30):
            await feeding
        kinds = [kind for kind, _ in log]
        confirm_at = kinds.index("write", kinds.index("persisted"))
        assert log.index(("event", "StateChanged")) < log.index(("persisted", None)) < confirm_at
        confirmation = _writes(log)[1]
        # That write is what confirms the handshake to the station, and the secret the
        # station now holds is the one the phone persisted before writing it.
        pair.station.events()
        pair.station.receive(STATION_CONN, confirmation, pair.now)
        assert any(isinstance(e, LinkUp) for e in pair.station.events())
        assert persisted[-1] == pair.phone.export_state()
    finally:
        await pump.aclose()


async def test_a_resume_persists_the_new_secret_before_confirming_it() -> None:
    pair = paired().pair
    old = pair.phone.export_state()
    pair.cut()  # the link drops; the phone resumes through the pump
    await _run_handshake(pair)
    assert pair.phone.export_state().secret != old.secret  # the ratchet moved


async def test_pairing_persists_the_first_secret_before_its_first_record() -> None:
    await _run_handshake(make_pair().pair)
