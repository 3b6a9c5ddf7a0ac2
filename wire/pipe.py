"""The pipe between the station supervisor and a session worker: typed frames.

Length-prefixed frames over a Unix socketpair::

    frame = length (u32, big-endian, of what follows) · type (u8) · body

Frames that belong to one phone transport start their body with its connection id (u32).
The supervisor relays *opaque* tunnel bytes (``Data`` in, ``Send`` out); the worker's
status events (``EVENT``, JSON with an ``event`` key) carry ids, counts and states,
never content.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from wire.codec import Registry, dumps, from_json, loads, to_json
from wire.errors import WireError

MAX_FRAME = 1 << 20
_HEADER = struct.Struct(">IB")
_CONN = struct.Struct(">I")


class FrameType(IntEnum):
    # supervisor -> worker
    OPEN = 1  # conn
    DATA = 2  # conn · bytes from the phone
    LOST = 3  # conn
    STOP = 4  # JSON Stop
    POLICY = 5  # JSON PolicyDeadline
    # worker -> supervisor
    SEND = 11  # conn · bytes for the phone
    CLOSE = 12  # conn · ASCII reason
    EVENT = 13  # JSON worker event


# -- supervisor -> worker --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Open:
    conn: int


@dataclass(frozen=True, slots=True)
class Data:
    conn: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Lost:
    conn: int


@dataclass(frozen=True, slots=True)
class Stop:
    reason: str


@dataclass(frozen=True, slots=True)
class PolicyDeadline:
    """The session's next logout, so the page counts down and the phone is told."""

    logout_in: float
    reason: str


# -- worker -> supervisor --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    conn: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseConn:
    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class Measure:
    applied: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Hardening:
    KIND: ClassVar[str] = "hardening"
    measures: dict[str, Measure]


@dataclass(frozen=True, slots=True)
class OfferShown:
    KIND: ClassVar[str] = "offer"
    offer_id: str
    pair_uri: str
    pair_code: str
    expires_at: int
    previous_offer_id: str | None = None
    code_paused_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SessionPaired:
    KIND: ClassVar[str] = "paired"
    session: str
    fingerprint: str
    device: str
    control: str
    page: str | None = None


@dataclass(frozen=True, slots=True)
class PairingFailed:
    KIND: ClassVar[str] = "pairing_failed"
    reason: str


@dataclass(frozen=True, slots=True)
class CodePaused:
    KIND: ClassVar[str] = "code_paused"
    paused_s: float
    failures: int
    pair_code: str | None = None


@dataclass(frozen=True, slots=True)
class ResumeGap:
    KIND: ClassVar[str] = "resume_gap"
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class LinkUp:
    KIND: ClassVar[str] = "link_up"
    resumed: bool


@dataclass(frozen=True, slots=True)
class LinkDown:
    KIND: ClassVar[str] = "link_down"
    reason: str


@dataclass(frozen=True, slots=True)
class Queued:
    """A command took ``seq``: told before the sender hears of it."""

    KIND: ClassVar[str] = "queued"
    seq: int


@dataclass(frozen=True, slots=True)
class Acked:
    KIND: ClassVar[str] = "acked"
    through: int


@dataclass(frozen=True, slots=True)
class Activity:
    """Input at the kiosk (a key, a send): the inactivity timer starts again."""

    KIND: ClassVar[str] = "activity"


@dataclass(frozen=True, slots=True)
class SessionRefusal:
    """The authenticated SESSION_ENDED refusal the supervisor answers resumes with."""

    KIND: ClassVar[str] = "session_refusal"
    refusal: bytes


@dataclass(frozen=True, slots=True)
class Ended:
    KIND: ClassVar[str] = "ended"
    reason: str
    undelivered_seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Mirrored:
    KIND: ClassVar[str] = "mirror"
    version: int
    chats: int
    messages: int


@dataclass(frozen=True, slots=True)
class MirrorError:
    """The phone sent something the worker cannot read: shown, never dropped quietly."""

    KIND: ClassVar[str] = "mirror_error"
    reason: str


@dataclass(frozen=True, slots=True)
class Commands:
    """Counts by fate, the oldest not yet applied and the phone's last sign of life."""

    KIND: ClassVar[str] = "commands"
    commands: dict[str, int]
    oldest_queued_at: float | None = None
    last_heard: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    KIND: ClassVar[str] = "device"
    name: str
    battery: int | None = None


WorkerEvent = (
    Hardening
    | OfferShown
    | SessionPaired
    | PairingFailed
    | CodePaused
    | ResumeGap
    | LinkUp
    | LinkDown
    | Queued
    | Acked
    | Activity
    | SessionRefusal
    | Ended
    | Mirrored
    | MirrorError
    | Commands
    | DeviceSeen
)
EVENTS = Registry(
    "event",
    (
        Hardening,
        OfferShown,
        SessionPaired,
        PairingFailed,
        CodePaused,
        ResumeGap,
        LinkUp,
        LinkDown,
        Queued,
        Acked,
        Activity,
        SessionRefusal,
        Ended,
        Mirrored,
        MirrorError,
        Commands,
        DeviceSeen,
    ),
)

ToWorker = Open | Data | Lost | Stop | PolicyDeadline
ToSupervisor = Send | CloseConn | WorkerEvent
PipeMessage = ToWorker | ToSupervisor


# -- the codec --------------------------------------------------------------------------


def encode(message: PipeMessage) -> bytes:
    kind, body = _body(message)
    return _HEADER.pack(len(body) + 1, kind) + body


def _body(message: PipeMessage) -> tuple[FrameType, bytes]:
    match message:
        case Open(conn):
            return FrameType.OPEN, _CONN.pack(conn)
        case Data(conn, data):
            return FrameType.DATA, _CONN.pack(conn) + data
        case Lost(conn):
            return FrameType.LOST, _CONN.pack(conn)
        case Send(conn, data):
            return FrameType.SEND, _CONN.pack(conn) + data
        case CloseConn(conn, reason):
            return FrameType.CLOSE, _CONN.pack(conn) + reason.encode("ascii", "replace")[:120]
        case Stop() | PolicyDeadline():
            kind = FrameType.STOP if isinstance(message, Stop) else FrameType.POLICY
            return kind, dumps(to_json(message))
        case _:
            return FrameType.EVENT, EVENTS.encode(message)


def decode(kind: int, body: bytes) -> PipeMessage:
    """The message in one frame's type and body; ``WireError`` for anything else."""
    try:
        frame_type = FrameType(kind)
    except ValueError:
        raise WireError(f"unknown frame type {kind}") from None
    if frame_type is FrameType.STOP:
        return from_json(Stop, loads(body))
    if frame_type is FrameType.POLICY:
        return from_json(PolicyDeadline, loads(body))
    if frame_type is FrameType.EVENT:
        event = EVENTS.decode(body)
        return event  # type: ignore[return-value]  # the registry holds WorkerEvent classes
    if len(body) < _CONN.size:
        raise WireError("frame too short for its connection id")
    (conn,) = _CONN.unpack_from(body)
    rest = body[_CONN.size :]
    if frame_type is FrameType.OPEN:
        return Open(conn)
    if frame_type is FrameType.LOST:
        return Lost(conn)
    if frame_type is FrameType.DATA:
        return Data(conn, rest)
    if frame_type is FrameType.SEND:
        return Send(conn, rest)
    return CloseConn(conn, rest.decode("ascii", "replace"))


async def read(reader: asyncio.StreamReader) -> PipeMessage | None:
    """The next message, or None at a clean end of stream; ``WireError`` otherwise."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise WireError("stream ended inside a frame header") from None
        return None
    length, kind = _HEADER.unpack(header)
    if length < 1 or length > MAX_FRAME:
        raise WireError(f"frame length {length} out of range")
    try:
        body = await reader.readexactly(length - 1)
    except asyncio.IncompleteReadError:
        raise WireError("stream ended inside a frame") from None
    return decode(kind, body)


class Writer:
    """The worker's side: frames in order, one writer per direction."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._lock = asyncio.Lock()

    async def write(self, message: PipeMessage) -> None:
        async with self._lock:
            self._writer.write(encode(message))
            await self._writer.drain()

    def close(self) -> None:
        self._writer.close()


class PipeTransport:
    """A phone's WebSocket as the worker sees it: frames the supervisor relays."""

    def __init__(self, out: Writer, conn: int) -> None:
        self._out = out
        self._conn = conn

    async def send(self, data: bytes) -> None:
        await self._out.write(Send(self._conn, data))

    async def close(self, reason: str) -> None:
        await self._out.write(CloseConn(self._conn, reason))
