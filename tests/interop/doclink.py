"""The document-only phone on a real WebSocket (the ``websockets`` client as transport).

Written from docs/PROTOCOL.md's Transport, The link, Application messages and Logout
sections: first record an Ack, a Pong for every Ping, a Ping after 1 s of silence, acks
only after a command is applied, the confirmed logout. Imports nothing of the project.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from websockets.asyncio.client import ClientConnection, connect

from tests.interop import docphone as dp


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def open_ws(url: str) -> ClientConnection:
    return await connect(url, compression=None, max_size=65536 + 1024, ping_interval=None)


class Link:
    """One linked transport, its record directions, and the phone's reactions."""

    def __init__(self, ws: ClientConnection, state: dp.PhoneState, hs: dp.Handshake) -> None:
        self.ws, self.state = ws, state
        self.out, self.inn = dp.Direction(hs.k1), dp.Direction(hs.k2)
        self.last_sent = time.monotonic()
        self.closed_by_station: str | None = None
        self.frames: list[int] = []
        self.pings = 0

    async def send(self, frame: bytes) -> None:
        await self.ws.send(self.out.seal(frame))
        self.last_sent = time.monotonic()

    async def run(self, until: Callable[[], bool], limit: float = 20.0) -> None:
        deadline = time.monotonic() + limit
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"not done within {limit} s; applied {self.state.cursor}")
            if time.monotonic() - self.last_sent >= 1.0:
                self.pings += 1
                ack = self.state.cursor.to_bytes(8, "big")
                await self.send(bytes([dp.PING]) + ack + self.pings.to_bytes(8, "big"))
            try:
                record = await asyncio.wait_for(self.ws.recv(), 0.25)
            except TimeoutError:
                continue
            assert isinstance(record, bytes), "the station sent a text message"
            await self._on_frame(self.inn.open(record))

    async def _on_frame(self, frame: bytes) -> None:
        kind, fields = dp.decode_frame(frame)
        self.frames.append(kind)
        if kind in (dp.DATA, dp.DATA_RUN):
            for offset, payload in enumerate(fields["payloads"]):
                self.state.apply(fields["seq"] + offset, payload)
            await self.send(dp.ack_frame(self.state.cursor))  # after the (durable) apply
        elif kind == dp.PING:
            pong = bytes([dp.PONG]) + self.state.cursor.to_bytes(8, "big")
            await self.send(pong + fields["token"].to_bytes(8, "big"))
        elif kind == dp.NOTICE:
            self._on_notice(json.loads(fields["payload"]))
        elif kind == dp.CLOSE:
            self.closed_by_station = fields["reason"]

    def _on_notice(self, notice: dict[str, object]) -> None:
        if notice["type"] == "receipt_key":
            self.state.receipt_key = _b64(str(notice["key"]))
        elif notice["type"] == "receipt":
            body, sig = _b64(str(notice["body"])), _b64(str(notice["sig"]))
            try:
                Ed25519PublicKey.from_public_bytes(self.state.receipt_key).verify(sig, body)
            except InvalidSignature:
                raise AssertionError("the receipt's signature does not verify") from None
            self.state.receipt = json.loads(body)

    async def drop(self) -> None:
        """WiFi gone: the transport ends without a word."""
        transport = self.ws.transport
        if transport is not None:
            transport.abort()
        await self.ws.wait_closed()

    async def logout(self) -> str:
        """The confirmed logout: our Close, answered by the station's (receipt first)."""
        await self.send(bytes([dp.CLOSE, 1]) + b"remote")
        await self.run(lambda: self.closed_by_station is not None, limit=10)
        await self.ws.close(4000, "logout")
        return str(self.closed_by_station)


async def _first_record(ws: ClientConnection, state: dp.PhoneState, hs: dp.Handshake) -> Link:
    link = Link(ws, state, hs)
    state.secret = hs.next_secret  # persisted before anything is sent
    await link.send(dp.ack_frame(state.cursor))
    return link


async def pair_by_uri(url: str, state: dp.PhoneState, offer: dp.Offer) -> Link:
    ws = await open_ws(url)
    try:
        hello, hs = dp.uri_hello(state, offer, os.urandom(32))
        await ws.send(hello)
        _, payload = dp.read_accept(await _recv(ws), hs)
        state.accepted(payload)
        return await _first_record(ws, state, hs)
    except BaseException:
        await ws.close(4000, "pairing failed")
        raise


async def pair_by_code(url: str, state: dp.PhoneState, code: str) -> tuple[Link, int]:
    ws = await open_ws(url)
    try:
        hello, slots = dp.code_hello(code, [os.urandom(64), os.urandom(64)])
        await ws.send(hello)
        ephemerals = [os.urandom(32), os.urandom(32)]
        noise, handshakes = dp.code_noise(state, hello, slots, await _recv(ws), ephemerals)
        await ws.send(noise)
        accept = await _recv(ws)
        hs, payload = dp.read_accept(accept, handshakes)
        state.accepted(payload)
        return await _first_record(ws, state, hs), accept[1]
    except BaseException:
        await ws.close(4000, "pairing failed")
        raise


async def resume(url: str, state: dp.PhoneState) -> Link:
    """Resume, or raise the station's ``Refusal`` (check ``authentic`` before believing it)."""
    ws = await open_ws(url)
    hello, hs = dp.resume_hello(state, os.urandom(32))
    try:
        await ws.send(hello)
        _, payload = dp.read_accept(await _recv(ws), hs)
        assert len(payload) == 8  # the station's cursor: we sent nothing, so 0
        return await _first_record(ws, state, hs)
    except dp.Refusal as refusal:
        refusal.ephemeral = hello[18:50]
        await ws.close(4000, "refused")
        raise
    except BaseException:
        await ws.close(4000, "resume failed")
        raise


async def _recv(ws: ClientConnection) -> bytes:
    message = await ws.recv()
    assert isinstance(message, bytes), "the station sent a text message"
    return message
