"""Requests and replies on the local control sockets (JSON lines, one request per line).

Three sockets speak it: the station supervisor's (``station status``, ``logout``,
``open`` and the ``route`` that ``station send`` asks first), each session worker's
(``send``, ``wait``, ``status``: typed text goes to the worker, never through the
supervisor), and each running phone link's (``info``, ``unlink``, ``decide``,
``changed``). A request is ``{"op": NAME, ...fields}``; a reply is ``{"ok": true,
...fields}`` or ``{"ok": false, "error": why}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeVar

from wire.codec import Registry, dumps, from_json, loads, to_json
from wire.errors import WireError

R = TypeVar("R")

# -- replies shared by every socket ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    """A refused request, with why (``full``: the session's queue is full)."""

    error: str
    full: bool = False


# -- the station supervisor --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Status:
    KIND: ClassVar[str] = "status"
    link: bool = False  # also a fresh one-use link to the kiosk page


@dataclass(frozen=True, slots=True)
class Open:
    KIND: ClassVar[str] = "open"


@dataclass(frozen=True, slots=True)
class Route:
    """Which worker socket takes `station send` for a session (id prefix)."""

    KIND: ClassVar[str] = "route"
    session: str | None = None


@dataclass(frozen=True, slots=True)
class Logout:
    KIND: ClassVar[str] = "logout"
    session: str | None = None


@dataclass(frozen=True, slots=True)
class SessionStatus:
    session: str
    fingerprint: str | None
    linked: bool
    queued: int
    queued_seqs: tuple[int, ...]
    oldest_queued_s: float | None
    commands: dict[str, int]
    device: str | None
    battery: int | None
    last_heard: float | None
    acked_through: int
    mirrored: int
    mirror_version: int
    idle_s: float
    age_s: float
    control: str | None
    pid: int
    ending: str | None


@dataclass(frozen=True, slots=True)
class AcceptCounts:
    """The phones' port: sockets nobody has authenticated yet (``station.accept``)."""

    unproven: int
    sources: int
    limit_total: int
    limit_per_source: int
    accepted: int
    refused_per_source: int
    refused_total: int
    evicted: int
    pre_hello_timeouts: int
    proven: int


@dataclass(frozen=True, slots=True)
class StatusReply:
    name: str
    pid: int
    port: int
    uptime_s: float
    offer_open: bool
    pair_uri: str | None
    pair_code: str | None
    code_paused_s: float
    code_pairing: str
    ui: str | None
    screens: int
    kiosk_browser: int | None
    sessions: tuple[SessionStatus, ...]
    link: str | None = None
    label: str | None = None
    expires_in: float | None = None
    addresses: tuple[str, ...] = ()  # where phones reach the station now
    mdns: bool = False  # announced on mDNS
    accept: AcceptCounts | None = None


@dataclass(frozen=True, slots=True)
class LaunchLink:
    link: str
    label: str
    expires_in: float


@dataclass(frozen=True, slots=True)
class RouteReply:
    session: str
    control: str


@dataclass(frozen=True, slots=True)
class EndedSession:
    session: str
    undelivered: int
    undelivered_seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LogoutReply:
    ended: tuple[EndedSession, ...]


# -- a session worker ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    KIND: ClassVar[str] = "send"
    text: str
    chat: str | None = None
    id: str | None = None  # a retry with the same id queues nothing again
    ttl: float | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    """Until every seq is applied on the phone (or settled otherwise), or ``timeout``."""

    KIND: ClassVar[str] = "wait"
    seqs: tuple[int, ...]
    timeout: float


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    KIND: ClassVar[str] = "status"


@dataclass(frozen=True, slots=True)
class SendReply:
    seq: int
    depth: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class WaitReply:
    states: dict[str, str]  # seq -> fate


@dataclass(frozen=True, slots=True)
class WorkerStatusReply:
    linked: bool
    queued: int
    chats: int
    messages: int


# -- a running phone link -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Info:
    KIND: ClassVar[str] = "info"


@dataclass(frozen=True, slots=True)
class Unlink:
    KIND: ClassVar[str] = "unlink"
    wait: float = 10.0


@dataclass(frozen=True, slots=True)
class Decide:
    """The medic's word on a command kept apart: apply it after all, or discard it."""

    KIND: ClassVar[str] = "decide"
    seq: int
    confirm: bool


@dataclass(frozen=True, slots=True)
class Changed:
    """Another process wrote to the phone's store (``medic-phone say``, ``confirm``,
    another link of the same phone): push the change to the mirror now."""

    KIND: ClassVar[str] = "changed"


@dataclass(frozen=True, slots=True)
class LogoutDeadline:
    logout_at: float
    reason: str


@dataclass(frozen=True, slots=True)
class InfoReply:
    pid: int
    station: str
    session: str | None
    linked: bool
    logout_pending: bool
    policy: LogoutDeadline | None
    last_contact: float | None
    queued: int


@dataclass(frozen=True, slots=True)
class UnlinkReply:
    reached: bool
    paired: bool = True
    already_ended: bool = False
    reason: str | None = None
    station: str | None = None
    waited_s: float | None = None
    last_contact: float | None = None
    policy: LogoutDeadline | None = None


@dataclass(frozen=True, slots=True)
class DecideReply:
    seq: int
    state: str


@dataclass(frozen=True, slots=True)
class Noted:
    """The running link took note (a ``changed``: it pushes in its own time)."""


STATION_REQUESTS = Registry("op", (Status, Open, Route, Logout))
WORKER_REQUESTS = Registry("op", (Send, Wait, WorkerStatus))
LINK_REQUESTS = Registry("op", (Info, Unlink, Decide, Changed))


def encode_reply(reply: object) -> bytes:
    if isinstance(reply, Failure):
        return dumps({"ok": False, **to_json(reply)})
    return dumps({"ok": True, **to_json(reply)})


def decode_reply(data: bytes, expected: type[R]) -> R | Failure:
    """``expected`` or ``Failure`` from one reply line; ``WireError`` otherwise."""
    value = loads(data)
    ok = value.pop("ok", None)
    if ok is True:
        return from_json(expected, value)
    if ok is False:
        return from_json(Failure, value)
    raise WireError("a reply without ok")
