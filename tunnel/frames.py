"""The frames inside a record: Data, DataRun, Ack, Ping, Pong, Close, Notice.

Compact and fixed: one type byte, big-endian integers, then bytes. Every frame but
Close carries a cumulative ack, so acknowledgements ride on whatever flows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from tunnel.errors import MalformedRecord, UsageError

MAX_CLOSE_REASON = 123


class FrameType(IntEnum):
    DATA = 1
    ACK = 2
    PING = 3
    PONG = 4
    CLOSE = 5
    DATA_RUN = 6
    NOTICE = 7


class CloseCode(IntEnum):
    LOGOUT = 1
    PROTOCOL_ERROR = 2
    SHUTDOWN = 3
    SESSION_UNKNOWN = 4


@dataclass(frozen=True, slots=True)
class Data:
    seq: int
    ack: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class DataRun:
    """Consecutive messages ``first_seq, first_seq + 1, ...`` in one record: a backlog
    (a window's worth after acks, or a resend on resume) costs one seal, not one each."""

    first_seq: int
    ack: int
    payloads: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    ack: int


@dataclass(frozen=True, slots=True)
class Ping:
    ack: int
    token: int


@dataclass(frozen=True, slots=True)
class Pong:
    ack: int
    token: int


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Notice:
    """State that only matters while it is current (the station's logout deadline, the
    phone's battery): no sequence number, never queued or resent; the next one
    supersedes it."""

    ack: int
    payload: bytes


Frame = Data | DataRun | Ack | Ping | Pong | Close | Notice

_U64 = struct.Struct(">Q")
_TWO_U64 = struct.Struct(">QQ")
_DATA = struct.Struct(">BQQ")
DATA_OVERHEAD = _DATA.size  # a Data frame's bytes beyond its payload
_RUN = struct.Struct(">BQQH")  # type, first seq, ack, count; then (u32 length, payload)*
_LEN = struct.Struct(">I")
RUN_OVERHEAD = _RUN.size  # a DataRun's bytes beyond its items
RUN_ITEM_OVERHEAD = _LEN.size  # and beyond each payload
MAX_RUN = 0xFFFF
_MAX_U64 = (1 << 64) - 1


def encode_frame(frame: Frame) -> bytes:
    try:
        if isinstance(frame, Data):
            return _DATA.pack(FrameType.DATA, frame.seq, frame.ack) + frame.payload
        if isinstance(frame, DataRun):
            if not 1 <= len(frame.payloads) <= MAX_RUN:
                raise UsageError("a data run holds 1 to 65535 messages")
            parts = [_RUN.pack(FrameType.DATA_RUN, frame.first_seq, frame.ack, len(frame.payloads))]
            for payload in frame.payloads:
                parts.append(_LEN.pack(len(payload)))
                parts.append(payload)
            return b"".join(parts)
        if isinstance(frame, Ack):
            return bytes([FrameType.ACK]) + _U64.pack(frame.ack)
        if isinstance(frame, Ping):
            return bytes([FrameType.PING]) + _TWO_U64.pack(frame.ack, frame.token)
        if isinstance(frame, Pong):
            return bytes([FrameType.PONG]) + _TWO_U64.pack(frame.ack, frame.token)
        if isinstance(frame, Notice):
            return bytes([FrameType.NOTICE]) + _U64.pack(frame.ack) + frame.payload
    except struct.error:
        raise UsageError("frame field out of range") from None
    reason = frame.reason.encode("ascii", "replace")
    if len(reason) > MAX_CLOSE_REASON or not 0 <= frame.code <= 255:
        raise UsageError("close reason too long or code out of range")
    return bytes([FrameType.CLOSE, frame.code]) + reason


def decode_frame(data: bytes) -> Frame:
    if not data:
        raise MalformedRecord("empty frame")
    kind = data[0]
    if kind == FrameType.DATA:
        if len(data) < _DATA.size:
            raise MalformedRecord("short data frame")
        _, seq, ack = _DATA.unpack_from(data)
        return Data(seq, ack, bytes(data[_DATA.size :]))
    if kind == FrameType.DATA_RUN:
        return _decode_run(data)
    if kind == FrameType.ACK:
        if len(data) != 1 + _U64.size:
            raise MalformedRecord("bad ack frame")
        return Ack(_U64.unpack_from(data, 1)[0])
    if kind in (FrameType.PING, FrameType.PONG):
        if len(data) != 1 + _TWO_U64.size:
            raise MalformedRecord("bad ping frame")
        ack, token = _TWO_U64.unpack_from(data, 1)
        return Ping(ack, token) if kind == FrameType.PING else Pong(ack, token)
    if kind == FrameType.NOTICE:
        if len(data) < 1 + _U64.size:
            raise MalformedRecord("short notice frame")
        return Notice(_U64.unpack_from(data, 1)[0], bytes(data[1 + _U64.size :]))
    if kind == FrameType.CLOSE:
        if len(data) < 2 or len(data) > 2 + MAX_CLOSE_REASON:
            raise MalformedRecord("bad close frame")
        try:
            reason = data[2:].decode("ascii")
        except UnicodeDecodeError:
            raise MalformedRecord("close reason not ASCII") from None
        return Close(data[1], reason)
    raise MalformedRecord("unknown frame type")


def _decode_run(data: bytes) -> DataRun:
    if len(data) < _RUN.size:
        raise MalformedRecord("short data run")
    _, first_seq, ack, count = _RUN.unpack_from(data)
    if count == 0 or first_seq + count - 1 > _MAX_U64:
        raise MalformedRecord("bad data run count")
    view = memoryview(data)
    payloads = []
    at = _RUN.size
    for _ in range(count):
        if at + _LEN.size > len(data):
            raise MalformedRecord("data run ends inside an item header")
        (length,) = _LEN.unpack_from(data, at)
        at += _LEN.size
        if at + length > len(data):
            raise MalformedRecord("data run item longer than the record")
        payloads.append(bytes(view[at : at + length]))
        at += length
    if at != len(data):
        raise MalformedRecord("bytes after the last item of a data run")
    return DataRun(first_seq, ack, tuple(payloads))
