"""The accept gate: unproven sockets bounded per source and in total from the TCP
accept (half-open ones included), with a deadline; nothing logged per refusal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from station.accept import (
    ACCEPT_BACKLOG,
    AcceptGate,
    GatedConnection,
    kiosk_gate,
    serve_options,
    unproven_budget,
)


def test_per_source_and_total_limits_and_eviction_for_a_quiet_source() -> None:
    gate = AcceptGate("t", total=10, per_source=4)
    hog = [gate.admit("10.0.0.66", 0.0) for _ in range(6)]
    assert sum(t is not None for t in hog) == 4 and gate.stats.refused_source == 2
    others = [gate.admit(f"10.0.1.{i}", 0.0) for i in range(6)]
    assert all(t is not None for t in others) and gate.unproven == 10
    evicted: list[str] = []
    for ticket in hog:
        if ticket is not None:
            ticket.evict = lambda: evicted.append("hog")
    newcomer = gate.admit("10.0.2.1", 0.0)  # full: the worst source makes way
    assert newcomer is not None and evicted == ["hog"] and gate.unproven == 10
    gate.prove(newcomer)
    assert gate.unproven == 9 and gate.stats.proven == 1
    gate.release(newcomer)  # a proven socket no longer counts, closing or not
    assert gate.unproven == 9 and gate.status()["sources"] == 7


def test_many_addresses_each_with_one_socket_lose_to_a_clean_phone() -> None:
    gate = AcceptGate("t", total=8, per_source=8)
    attackers = [f"10.0.9.{i}" for i in range(20)]
    held = {a: gate.admit(a, 0.0) for a in attackers}
    assert sum(t is not None for t in held.values()) == 8  # the rest refused, and noted
    assert gate.admit("10.0.9.19", 0.1) is None  # no one holds more: refused
    for deadline in (3.0, 6.0, 9.0):
        for source, ticket in list(held.items()):
            if ticket is not None:  # each says nothing until its deadline, and goes
                gate.timed_out(ticket, deadline)
                gate.release(ticket)
                held[source] = gate.admit(source, deadline)  # and is opened again at once
    phone = gate.admit("10.0.5.5", 9.1)  # now the attackers look worse than the phone
    assert phone is not None and gate.stats.evicted == 1 and gate.unproven == 8
    much_later = 9.1 + 600  # penalties fade: old refusals are forgiven
    assert gate.admit("10.0.9.19", much_later) is None  # holding alike: no eviction


def test_one_shared_source_makes_way_oldest_first() -> None:
    gate = kiosk_gate("kiosk")
    gate.total = gate.per_source = 3
    dropped: list[int] = []
    tickets = []
    for i in range(3):
        ticket = gate.admit("127.0.0.1", float(i))
        assert ticket is not None
        ticket.evict = lambda i=i: dropped.append(i)  # type: ignore[misc]
        tickets.append(ticket)
    assert gate.admit("127.0.0.1", 3.0) is not None and dropped == [0]


def test_the_budget_keeps_descriptors_in_reserve() -> None:
    assert unproven_budget(20000, 40, 16) == 256
    assert 0 < unproven_budget(256, 40, 16) < 256 - 40 - ACCEPT_BACKLOG
    assert unproven_budget(100, 60, 16) == 4  # never nothing at all


async def _half_open(port: int, count: int) -> list[socket.socket]:
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            await loop.sock_connect(sock, ("127.0.0.1", port))
        socks.append(sock)
    return socks


@pytest.mark.asyncio
async def test_half_open_sockets_are_bounded_and_dropped_at_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = AcceptGate("t", total=16, per_source=16, pre_hello=0.5, shared_source=True)

    async def handler(ws: ServerConnection) -> None:
        assert isinstance(ws, GatedConnection)
        ws.prove()
        await ws.send("hello")
        await ws.wait_closed()

    caplog.set_level(logging.DEBUG)
    async with serve(
        handler, "127.0.0.1", 0, **serve_options(gate, proven_at_handshake=False)
    ) as server:
        port = server.sockets[0].getsockname()[1]
        socks = await _half_open(port, 100)
        await asyncio.sleep(0.2)
        assert gate.unproven <= 16
        began = time.monotonic()
        async with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
            assert await ws.recv() == "hello"
        took = time.monotonic() - began
        await asyncio.sleep(0.8)  # past the pre-hello deadline
        print(f"a real client among 100 half-open sockets: {took * 1000:.0f} ms; {gate.status()}")
        assert gate.unproven == 0 and gate.stats.timed_out >= 1
        assert gate.stats.evicted + gate.stats.refused_source >= 100 - 16
        for sock in socks:
            sock.close()
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) <= 1  # one summary line at most, never one per connection
