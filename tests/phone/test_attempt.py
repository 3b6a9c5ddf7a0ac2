"""One connection attempt: an address goes straight to the TCP connect, a name through
the resolver (off the loop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.server import Server, ServerConnection, serve

from medic_phone.attempt import open_websocket
from medic_phone.dialplan import Candidate
from tunnel.aio.websocket import ws_options

MAX_RECORD = 65_536


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0, **ws_options(MAX_RECORD)) as running:  # type: ignore[arg-type]
        yield running


def _port(server: Server) -> int:
    return int(next(iter(server.sockets)).getsockname()[1])


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts the loop's resolver (a hop to the executor's thread) was asked for."""
    asked: list[str] = []
    loop_type = type(asyncio.get_event_loop_policy().get_event_loop())
    real = loop_type.getaddrinfo

    async def counted(self: asyncio.AbstractEventLoop, host: Any, *args: Any, **kw: Any) -> Any:
        asked.append(str(host))
        return await real(self, host, *args, **kw)

    monkeypatch.setattr(loop_type, "getaddrinfo", counted)
    return asked


@pytest.mark.asyncio
async def test_an_address_is_dialled_without_the_resolver(
    server: Server, resolved: list[str]
) -> None:
    ws = await open_websocket(Candidate("127.0.0.1", _port(server), "uri"), max_record=MAX_RECORD)
    try:
        await ws.send(b"hello")
        assert await ws.recv() == b"hello"
    finally:
        await ws.close()
    assert resolved == []


@pytest.mark.asyncio
async def test_a_name_is_resolved_off_the_loop(server: Server, resolved: list[str]) -> None:
    ws = await open_websocket(
        Candidate("localhost", _port(server), "connect"), max_record=MAX_RECORD
    )
    try:
        await ws.send(b"hello")
        assert await ws.recv() == b"hello"
    finally:
        await ws.close()
    assert resolved == ["localhost"]
