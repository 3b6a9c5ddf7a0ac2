"""One phone's WebSocket as the supervisor relays it.

Records for the phone leave from a bounded buffer in the socket's own task, each send
and the final close under a deadline. A dead link (WiFi gone: sends block on a full
TCP buffer, a close waits for a handshake that never comes) therefore holds up only
this socket: never the worker's pipe, the policy, the control socket or another
session. A socket that cannot keep up is aborted; the phone resumes on a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

log = logging.getLogger(__name__)

MAX_PENDING_BYTES = 8 * 1024 * 1024  # records waiting for one phone; beyond: abort
SEND_DEADLINE = 5.0  # seconds one record may take to leave
CLOSE_DEADLINE = 1.0  # seconds the closing handshake may take


class PhoneSocket:
    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._task = asyncio.create_task(self._run())

    def send(self, data: bytes) -> None:
        """Queue a record for the phone; never waits."""
        if self._close is not None:
            return
        if self._pending_bytes + len(data) > MAX_PENDING_BYTES:
            log.info("phone socket too slow: %d bytes waiting; aborting it", self._pending_bytes)
            self.abort()
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        """Close after what is queued has gone (or at the deadlines); never waits."""
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
                    async with asyncio.timeout(SEND_DEADLINE):
                        await self.ws.send(data)
                if self._close is not None:
                    break
                self._wake.clear()
                await self._wake.wait()
            code, reason = self._close
            async with asyncio.timeout(CLOSE_DEADLINE):
                await self.ws.close(code, reason)
        except TimeoutError:
            self.abort()
        except ConnectionClosed:
            pass
