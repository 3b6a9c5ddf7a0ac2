"""WebSocket transports for the tunnel: one record per binary message.

websockets' own keepalive and compression are off: liveness is the core's (its
deadlines are tuned for flaky WiFi), and compressing ciphertext gains nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tunnel.aio.pump import EndpointPump
from tunnel.backoff import reconnect_delays
from tunnel.session import PhoneEndpoint

if TYPE_CHECKING:
    # Imported where it is used, by the phone: websockets' client imports ssl, which
    # the station's processes keep out (station.lean).
    from websockets.asyncio.client import ClientConnection

log = logging.getLogger(__name__)

# Room for the WebSocket's own framing on top of the largest record.
_WS_SLACK = 1024
CLOSE_PROTOCOL = 4000


def ws_options(max_record: int) -> dict[str, object]:
    return {
        "max_size": max_record + _WS_SLACK,
        "compression": None,
        "ping_interval": None,
        "max_queue": 64,
    }


class WebSocketTransport:
    """Adapts a websockets connection to the pump's Transport protocol."""

    def __init__(self, ws: ClientConnection | ServerConnection) -> None:
        self._ws = ws

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send(data)
        except ConnectionClosed:
            return

    async def close(self, reason: str) -> None:
        # The reason is one of the core's fixed close reasons: it leaks nothing.
        with contextlib.suppress(ConnectionClosed):
            await self._ws.close(CLOSE_PROTOCOL, reason[:120])


class BufferedSocket:
    """A WebSocket whose sends and close never wait on the network.

    Whoever hands it bytes (the pump draining the core, the supervisor relaying a
    worker's records) must not be held up by one socket whose peer vanished (WiFi gone:
    the TCP buffer fills, a close waits for an answer that never comes), or everything
    behind it waits too. So records go into a bounded buffer that a task of this socket
    writes out, each send and the final close under a deadline; past the bound or a
    deadline the socket is aborted (the peer resumes on a new one).
    """

    MAX_PENDING = 8 * 1024 * 1024  # bytes waiting for this socket; beyond: abort
    SEND_DEADLINE = 5.0  # seconds one record may take to leave
    CLOSE_DEADLINE = 1.0  # seconds the closing handshake may take

    def __init__(self, ws: ClientConnection | ServerConnection) -> None:
        self.ws = ws
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._task = asyncio.create_task(self._run())

    def push(self, data: bytes) -> None:
        """Queue a record; never waits."""
        if self._close is not None:
            return
        if self._pending_bytes + len(data) > self.MAX_PENDING:
            log.info("socket too slow: %d bytes waiting; aborting it", self._pending_bytes)
            self.abort()
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        self._wake.set()

    def close_soon(self, code: int, reason: str) -> None:
        """Close after what is queued has gone (or at the deadlines); never waits."""
        # The reason is one of our fixed close reasons: it leaks nothing.
        if self._close is None:
            self._close = (code, reason[:120])
            self._wake.set()

    def abort(self) -> None:
        """Drop the TCP connection at once (no closing handshake)."""
        self._close = self._close or (1011, "aborted")
        self._pending.clear()
        self._pending_bytes = 0
        transport = self.ws.transport
        if transport is not None:
            transport.abort()
        self._wake.set()

    async def closed(self) -> None:
        """Wait until the socket's task has finished (sent, closed or aborted)."""
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            while True:
                while self._pending:
                    data = self._pending.popleft()
                    self._pending_bytes -= len(data)
                    async with asyncio.timeout(self.SEND_DEADLINE):
                        await self.ws.send(data)
                if self._close is not None:
                    break
                self._wake.clear()
                await self._wake.wait()
            code, reason = self._close
            async with asyncio.timeout(self.CLOSE_DEADLINE):
                await self.ws.close(code, reason)
        except TimeoutError:
            self.abort()
        except ConnectionClosed:
            pass


class QueuedTransport(BufferedSocket):
    """The pump's transport over a ``BufferedSocket``: neither call waits."""

    async def send(self, data: bytes) -> None:
        self.push(data)

    async def close(self, reason: str) -> None:
        self.close_soon(CLOSE_PROTOCOL, reason)


async def pump_connection(pump: EndpointPump, ws: ClientConnection | ServerConnection) -> None:
    """Feed every binary message of ``ws`` to the pump until either side closes it."""
    conn = await pump.attach(WebSocketTransport(ws))
    try:
        async for message in ws:
            if isinstance(message, str):
                await ws.close(CLOSE_PROTOCOL, "text frames are not spoken here")
                break
            await pump.feed(conn, message)
    except ConnectionClosed:
        pass
    finally:
        await pump.lost(conn)


async def serve_endpoint(pump: EndpointPump, host: str, port: int, *, max_record: int) -> Server:
    """Serve one station endpoint: every WebSocket becomes a transport of that session."""

    async def handler(ws: ServerConnection) -> None:
        await pump_connection(pump, ws)

    return await serve(handler, host, port, **ws_options(max_record))  # type: ignore[arg-type]


class PhoneConnector:
    """Keeps a phone endpoint linked: connect, pair or resume, back off, repeat.

    Returns from ``run`` when the session ends (logout) or pairing fails.
    """

    def __init__(
        self,
        pump: EndpointPump,
        url: str | Callable[[], str],
        *,
        open_timeout: float = 3.0,
        rng: random.Random | None = None,
    ) -> None:
        self._pump = pump
        self._url = url
        self._open_timeout = open_timeout
        self._rng = rng or random.Random()
        self.attempts = 0

    @property
    def endpoint(self) -> PhoneEndpoint:
        endpoint = self._pump.endpoint
        assert isinstance(endpoint, PhoneEndpoint)
        return endpoint

    def _ended(self) -> bool:
        return self.endpoint.ended is not None

    async def run(self) -> str:
        from websockets.asyncio.client import connect

        delays = reconnect_delays(rng=self._rng)
        max_record = self.endpoint.settings.max_record
        while not self._ended():
            url = self._url() if callable(self._url) else self._url
            self.attempts += 1
            try:
                async with asyncio.timeout(self._open_timeout):
                    ws = await connect(url, open_timeout=None, **ws_options(max_record))  # type: ignore[arg-type]
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                log.debug("connect failed: %s", type(exc).__name__)
                await asyncio.sleep(next(delays))
                continue
            links_before = self.endpoint.link_count
            async with ws:
                await pump_connection(self._pump, ws)
            if self._ended():
                break
            if self.endpoint.link_count > links_before:
                # The link worked: try again at once (a reset link is usually back),
                # then back off from the bottom again.
                delays = reconnect_delays(rng=self._rng)
                continue
            await asyncio.sleep(next(delays))
        return self.endpoint.ended or "ended"
