"""The pipe between the supervisor and a session worker.

Length-prefixed frames over a Unix socketpair. The supervisor relays *opaque* tunnel
bytes through it (it never sees keys or plaintext) and receives the worker's status
events, which carry ids, counts and states, never content.

    frame = length (u32, big-endian, of what follows) · type (u8) · body
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from station.errors import WorkerProtocolError

MAX_FRAME = 1 << 20
_HEADER = struct.Struct(">IB")
_CONN = struct.Struct(">I")


class FrameType(IntEnum):
    # supervisor -> worker
    OPEN = 1  # conn
    DATA = 2  # conn · bytes from the phone
    LOST = 3  # conn
    STOP = 4  # JSON {"reason": ...}
    POLICY = 5  # JSON {"logout_in": seconds, "reason": ...}: the session's next logout
    # worker -> supervisor
    SEND = 11  # conn · bytes for the phone
    CLOSE = 12  # conn · ASCII reason
    EVENT = 13  # JSON status event


@dataclass(frozen=True, slots=True)
class Frame:
    type: FrameType
    conn: int = 0
    body: bytes = b""

    def json(self) -> dict[str, Any]:
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise WorkerProtocolError("event is not a JSON object")
        return value


_HAS_CONN = {FrameType.OPEN, FrameType.DATA, FrameType.LOST, FrameType.SEND, FrameType.CLOSE}


def encode(frame: Frame) -> bytes:
    body = (_CONN.pack(frame.conn) if frame.type in _HAS_CONN else b"") + frame.body
    return _HEADER.pack(len(body) + 1, frame.type) + body


def event_frame(**fields: Any) -> Frame:
    return Frame(FrameType.EVENT, body=json.dumps(fields, separators=(",", ":")).encode())


def stop_frame(reason: str) -> Frame:
    return Frame(FrameType.STOP, body=json.dumps({"reason": reason}).encode())


def policy_frame(logout_in: float, reason: str) -> Frame:
    body = {"logout_in": round(logout_in, 2), "reason": reason}
    return Frame(FrameType.POLICY, body=json.dumps(body).encode())


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame, or None at a clean end of stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise WorkerProtocolError("stream ended inside a frame header") from None
        return None
    length, raw_type = _HEADER.unpack(header)
    if length < 1 or length > MAX_FRAME:
        raise WorkerProtocolError(f"frame length {length} out of range")
    try:
        frame_type = FrameType(raw_type)
    except ValueError:
        raise WorkerProtocolError(f"unknown frame type {raw_type}") from None
    try:
        body = await reader.readexactly(length - 1)
    except asyncio.IncompleteReadError:
        raise WorkerProtocolError("stream ended inside a frame") from None
    if frame_type in _HAS_CONN:
        if len(body) < _CONN.size:
            raise WorkerProtocolError("frame too short for its connection id")
        (conn,) = _CONN.unpack_from(body)
        return Frame(frame_type, conn, body[_CONN.size :])
    return Frame(frame_type, 0, body)


class FrameWriter:
    """Serialises frames onto a stream; one writer per direction."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._lock = asyncio.Lock()

    async def write(self, frame: Frame) -> None:
        async with self._lock:
            self._writer.write(encode(frame))
            await self._writer.drain()

    def close(self) -> None:
        self._writer.close()
