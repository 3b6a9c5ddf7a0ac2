"""The supervisor's phone sockets: read each one's clear hello, route it to the worker that
owns its offer or session (or answer it: unknown, refused, an ended session's
authenticated refusal), then relay the opaque rest both ways, one bounded buffer each."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from station.accept import (
    GatedConnection,
)
from station.phone_socket import PhoneSocket
from station.supervisor_shape import SupervisorShape
from station.worker_handle import WorkerHandle
from tunnel.errors import MalformedRecord
from tunnel.handshake import MessageType, RefuseCode, encode_refusal, parse_hello
from wire import pipe

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 5.0  # a fallback: the accept gate's pre-hello deadline comes first
_ACCEPT = bytes([MessageType.ACCEPT])


class PhoneRelay(SupervisorShape):
    """Accepting and relaying phones' WebSockets (the supervisor's first job)."""

    async def _handle_socket(self, ws: ServerConnection) -> None:
        # The accept gate (station.accept) has bounded this socket since its TCP accept.
        await self._relay(ws)

    async def _relay(self, ws: ServerConnection) -> None:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                first = await ws.recv()
        except (TimeoutError, ConnectionClosed):
            return
        if isinstance(first, str):
            await ws.close(4000, "text frames are not spoken here")
            return
        try:
            hello = parse_hello(first)
        except MalformedRecord:
            await self._refuse(ws, RefuseCode.MALFORMED, "malformed hello")
            return
        handle = self._route(hello.kind, hello.routing_id)
        ended = (
            self.ended_sessions.get(hello.routing_id.hex())
            if handle is None and hello.kind is MessageType.RESUME
            else None
        )
        if ended is not None:
            # Authenticated by the worker before it ended: the phone may believe it.
            with contextlib.suppress(ConnectionClosed):
                await ws.send(ended)
                await ws.close(4000, "session ended")
            return
        if handle is None:
            code = (
                RefuseCode.SESSION_UNKNOWN
                if hello.kind is MessageType.RESUME
                else RefuseCode.OFFER_UNKNOWN
            )
            await self._refuse(
                ws,
                code,
                "unknown session"
                if code is RefuseCode.SESSION_UNKNOWN
                else "unknown or rotated offer",
            )
            return
        if isinstance(ws, GatedConnection):
            ws.hello_routed()
        self._next_conn += 1
        conn = self._next_conn
        phone = PhoneSocket(ws)
        self._conns[conn] = (phone, handle)
        handle.conns.add(conn)
        try:
            if not handle.post(pipe.Open(conn)):
                return
            if not await handle.send(pipe.Data(conn, first)):
                return
            async for message in ws:
                if isinstance(message, str):
                    break
                # Waits only when this worker's pipe is full: this phone slows, no one else.
                if not await handle.send(pipe.Data(conn, message)):
                    break
        except ConnectionClosed:
            pass
        finally:
            if self._conns.pop(conn, None) is not None:
                handle.conns.discard(conn)
                handle.post(pipe.Lost(conn))
            phone.close(1000, "")
            await phone.closed()

    def _route(self, kind: MessageType, routing_id: bytes) -> WorkerHandle | None:
        if kind is MessageType.RESUME:
            wanted = routing_id.hex()
            for handle in self.workers.values():
                if handle.info.session == wanted and handle.stop_requested is None:
                    return handle
            return None
        standby = self.standby
        if standby is None or standby.info.pair_uri is None:
            return None
        # The previous offer stays valid through its grace; the worker checks the time.
        offers = (standby.info.offer_id, standby.info.previous_offer_id)
        if kind is MessageType.PAIR_URI and routing_id.hex() not in offers:
            return None
        return standby

    async def _refuse(self, ws: ServerConnection, code: RefuseCode, reason: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(encode_refusal(code, reason))
            await ws.close(4000, reason)

    def _on_worker_send(self, conn: int, data: bytes) -> None:
        entry = self._conns.get(conn)
        if entry is not None:
            ws = entry[0].ws
            if data[:1] == _ACCEPT and isinstance(ws, GatedConnection):
                ws.prove()  # the worker accepted its Noise handshake: a real phone
                self._remember_peer(ws)
            entry[0].send(data)

    def _on_worker_close(self, conn: int, reason: str) -> None:
        entry = self._conns.pop(conn, None)
        if entry is not None:
            entry[1].conns.discard(conn)
            entry[0].close(4000, reason)

    def _remember_peer(self, ws: ServerConnection) -> None:
        peer = ws.remote_address
        if isinstance(peer, tuple) and peer:
            self._peers.pop(str(peer[0]), None)
            self._peers[str(peer[0])] = None
            while len(self._peers) > 32:
                self._peers.pop(next(iter(self._peers)))
