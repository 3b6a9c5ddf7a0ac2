"""Bounds on sockets nobody has authenticated yet, counted from the TCP accept.

One LAN client must not be able to use up the station's sockets or descriptors. Every
accepted connection is counted (per source address and in total) until it proves
itself: on the phones' port, until the station's worker accepts its Noise handshake;
on the kiosk pages' ports, until its request is answered. Half-open connections (TCP
up, no WebSocket handshake yet) count from the first moment, and every counted
connection has a short deadline to say its hello. Over a limit, the new connection is
closed at once, before any WebSocket or HTTP parsing; when the total is full, the
oldest unproven connection of the source holding the most is dropped instead, so a
phone from a quiet address still gets in. Nothing is logged per refusal: counts are
kept and reported (``station status``), and at most one summary line a minute goes
to the log.

Descriptors: the total is also bounded by ``RLIMIT_NOFILE`` less a reserve for the
control socket, the kiosk pages, each live session and a burst of accepts, so the
process never runs out (an exhausted accept stalls every listener for a second and
logs an error per attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from websockets.asyncio.server import ServerConnection

log = logging.getLogger(__name__)

PER_SOURCE = 8  # unproven sockets from one address (a phone races a few at most)
MAX_UNPROVEN = 256
PRE_HELLO = 3.0  # seconds from accept to a routed hello (or an answered request)
ACCEPT_BACKLOG = 64  # the listen queue, and the accept burst the reserve covers
RESERVE_BASE = 48  # descriptors for the control socket, stdio, zeroconf, kiosk, ...
RESERVE_PER_SESSION = 6  # a worker's pipes and its phone's sockets
SUMMARY_EVERY = 60.0
PENALTY_HALF_LIFE = 30.0  # seconds for a source's record of refusals to halve
PENALTY_MARGIN = 2.0  # how much worse a source must look to lose a socket to another
MAX_PENALISED = 4096  # sources remembered (oldest forgotten first)


def raise_descriptor_limit() -> tuple[int, int]:
    """Use the hard ``RLIMIT_NOFILE`` as the soft one (a common daemon start step)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    return soft, hard


def open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def unproven_budget(nofile: int, in_use: int, max_sessions: int) -> int:
    """How many unproven sockets the descriptor limit leaves room for (at least 4)."""
    reserve = RESERVE_BASE + RESERVE_PER_SESSION * max_sessions + ACCEPT_BACKLOG
    return max(4, min(MAX_UNPROVEN, nofile - in_use - reserve))


@dataclass(slots=True)
class Ticket:
    source: str
    opened: float
    proven: bool = False
    released: bool = False
    routed: bool = False  # its hello reached a worker
    evict: Any = None  # called to drop this connection when the total is full


@dataclass(slots=True)
class AcceptStats:
    accepted: int = 0
    refused_source: int = 0
    refused_total: int = 0
    evicted: int = 0
    timed_out: int = 0
    proven: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "refused_per_source": self.refused_source,
            "refused_total": self.refused_total,
            "evicted": self.evicted,
            "pre_hello_timeouts": self.timed_out,
            "proven": self.proven,
        }


@dataclass
class AcceptGate:
    """The counts and the decision; the connection class below applies it."""

    name: str
    total: int = MAX_UNPROVEN
    per_source: int = PER_SOURCE
    pre_hello: float = PRE_HELLO
    # One source for everyone (the kiosk pages: the browser and any local user are all
    # 127.0.0.1): when full, the oldest unproven connection makes way. A real client
    # proves itself within milliseconds, so it is never the oldest for long.
    shared_source: bool = False
    stats: AcceptStats = field(default_factory=AcceptStats)
    _by_source: dict[str, OrderedDict[int, Ticket]] = field(default_factory=dict)
    # How often each source was refused, evicted or timed out lately (decaying).
    _penalties: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)
    _count: int = 0
    _last_summary: float = 0.0
    _summarised: int = 0

    @property
    def unproven(self) -> int:
        return self._count

    def admit(self, source: str, now: float) -> Ticket | None:
        held = self._by_source.get(source)
        if self.shared_source and held is not None and len(held) >= self.per_source:
            self._evict(held, now)
        elif held is not None and len(held) >= self.per_source:
            self.stats.refused_source += 1
            self._penalise(source, now)
            self._maybe_summarise(now)
            return None
        if self._count >= self.total and not self._make_room(source, now):
            self.stats.refused_total += 1
            self._penalise(source, now)
            self._maybe_summarise(now)
            return None
        ticket = Ticket(source, now)
        self._by_source.setdefault(source, OrderedDict())[id(ticket)] = ticket
        self._count += 1
        self.stats.accepted += 1
        return ticket

    def _make_room(self, source: str, now: float) -> bool:
        """The total is full: drop the oldest unproven socket of the worst source, if
        that source is worse than the newcomer's: it holds more than the newcomer would,
        or it has been refused, evicted or timed out clearly more often lately. Any
        number of addresses that hammer the station soon look worse than a phone."""
        if self.shared_source:
            oldest = min(self._tickets(), key=lambda t: t.opened, default=None)
            if oldest is None:
                return False
            self._evict(self._by_source[oldest.source], now)
            return True
        mine = len(self._by_source.get(source, ()))
        my_score = self._score(source, now)
        worst = max(
            self._by_source.items(),
            key=lambda kv: (self._score(kv[0], now), len(kv[1])),
            default=None,
        )
        if worst is None:
            return False
        victim, tickets = worst
        if len(tickets) > mine + 1 or self._score(victim, now) > my_score + PENALTY_MARGIN:
            self._evict(tickets, now)
            return True
        heaviest = max(self._by_source.values(), key=len)
        if len(heaviest) > mine + 1:
            self._evict(heaviest, now)
            return True
        return False

    def _tickets(self) -> list[Ticket]:
        return [t for held in self._by_source.values() for t in held.values()]

    def _evict(self, held: OrderedDict[int, Ticket], now: float) -> None:
        # The oldest that has not even said its hello goes first.
        unrouted = [t for t in held.values() if not t.routed]
        oldest = unrouted[0] if unrouted else next(iter(held.values()))
        self._forget(oldest)
        self.stats.evicted += 1
        self._penalise(oldest.source, now)
        if oldest.evict is not None:
            oldest.evict()

    def _score(self, source: str, now: float) -> float:
        entry = self._penalties.get(source)
        if entry is None:
            return 0.0
        score, at = entry
        return float(score * 0.5 ** ((now - at) / PENALTY_HALF_LIFE))

    def _penalise(self, source: str, now: float) -> None:
        if not self.shared_source:
            self._penalties[source] = (self._score(source, now) + 1.0, now)
            self._penalties.move_to_end(source)
            while len(self._penalties) > MAX_PENALISED:
                self._penalties.popitem(last=False)

    def timed_out(self, ticket: Ticket, now: float) -> None:
        self.stats.timed_out += 1
        self._penalise(ticket.source, now)

    def prove(self, ticket: Ticket) -> None:
        """The connection proved itself: it no longer counts against the limits."""
        if not ticket.proven and not ticket.released:
            ticket.proven = True
            self.stats.proven += 1
            self._forget(ticket)

    def release(self, ticket: Ticket) -> None:
        if not ticket.released:
            ticket.released = True
            if not ticket.proven:
                self._forget(ticket)

    def _forget(self, ticket: Ticket) -> None:
        held = self._by_source.get(ticket.source)
        if held is not None and held.pop(id(ticket), None) is not None:
            self._count -= 1
            if not held:
                del self._by_source[ticket.source]

    def _maybe_summarise(self, now: float) -> None:
        refused = self.stats.refused_source + self.stats.refused_total
        if now - self._last_summary >= SUMMARY_EVERY:
            log.warning(
                "%s: %d connection(s) refused by the accept limits in the last %.0f s"
                " (%d sources hold %d unproven sockets)",
                self.name,
                refused - self._summarised,
                now - self._last_summary if self._last_summary else 0.0,
                len(self._by_source),
                self._count,
            )
            self._last_summary = now
            self._summarised = refused

    def status(self) -> dict[str, Any]:
        return {
            "unproven": self._count,
            "sources": len(self._by_source),
            "limit_total": self.total,
            "limit_per_source": self.per_source,
            **self.stats.as_dict(),
        }


class GatedConnection(ServerConnection):
    """A websockets connection that applies an ``AcceptGate`` at the TCP accept.

    Subclassed per server by ``gated_connection`` (websockets builds connections from
    a class). ``proven_at_handshake``: the connection stops counting once its opening
    handshake is answered (the kiosk pages, whose token is checked there); otherwise
    the server calls ``prove`` (the phones' port, once a worker accepted the Noise
    handshake).
    """

    gate: ClassVar[AcceptGate]
    proven_at_handshake: ClassVar[bool] = False
    ticket: Ticket | None = None
    _refused = False
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        ticket = self.gate.admit(source, time.monotonic())
        if ticket is None:
            # Before any websockets state exists: nothing parsed, nothing logged.
            self._refused = True
            transport.abort()
            return
        ticket.evict = transport.abort
        self.ticket = ticket
        super().connection_made(transport)
        self._deadline = self.loop.call_later(self.gate.pre_hello, self._pre_hello_expired)

    def _pre_hello_expired(self) -> None:
        ticket = self.ticket
        if ticket is None or ticket.proven or ticket.released or ticket.routed:
            return  # a routed hello is under its worker's handshake deadline now
        self.gate.timed_out(ticket, time.monotonic())
        self.transport.abort()

    def hello_routed(self) -> None:
        """The server routed this socket's hello to a worker in time."""
        if self.ticket is not None:
            self.ticket.routed = True

    def prove(self) -> None:
        if self.ticket is not None:
            self.gate.prove(self.ticket)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        await super().handshake(*args, **kwargs)
        if self.proven_at_handshake:
            self.prove()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        if self._deadline is not None:
            self._deadline.cancel()
        if self.ticket is not None:
            self.gate.release(self.ticket)
        super().connection_lost(exc)


def gated_connection(gate: AcceptGate, *, proven_at_handshake: bool) -> type[GatedConnection]:
    return type(
        f"GatedConnection_{gate.name}",
        (GatedConnection,),
        {"gate": gate, "proven_at_handshake": proven_at_handshake},
    )


KIOSK_UNPROVEN = 64  # connections to one kiosk page's port that have not been answered


def kiosk_gate(name: str) -> AcceptGate:
    """The kiosk pages' ports: loopback only, so one shared source; a short deadline."""
    return AcceptGate(name, KIOSK_UNPROVEN, KIOSK_UNPROVEN, PRE_HELLO, shared_source=True)


LISTEN_QUEUE = 1024  # the kernel's queue of connections not accepted yet


def deepen_listen_queue(sockets: Iterable[Any]) -> None:
    """A long kernel queue in front of a short accept batch. asyncio accepts up to its
    ``backlog`` connections per wake-up, each holding a descriptor until the gate has
    closed it, so that number stays small (``ACCEPT_BACKLOG``); but the kernel queue is
    the same number unless raised again, and under a flood of connects a full queue
    drops a phone's SYN, which costs it a second (its retransmit)."""
    for sock in sockets:  # asyncio's TransportSocket wrappers: listen on a duplicate
        with (
            contextlib.suppress(OSError),
            socket.fromfd(sock.fileno(), sock.family, sock.type) as dup,
        ):
            dup.listen(LISTEN_QUEUE)


def serve_options(gate: AcceptGate, *, proven_at_handshake: bool) -> dict[str, Any]:
    """``serve()`` keywords that put ``gate`` in front of a websockets server."""
    return {
        "create_connection": gated_connection(gate, proven_at_handshake=proven_at_handshake),
        "open_timeout": gate.pre_hello,
        "backlog": ACCEPT_BACKLOG,
    }


_accept_errors = {"count": 0, "logged_at": 0.0}


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Out of descriptors at accept: one line a minute with a count, not one a try."""
    message = str(context.get("message", ""))
    if "accept" not in message:
        loop.default_exception_handler(context)
        return
    _accept_errors["count"] += 1
    now = time.monotonic()
    if now - _accept_errors["logged_at"] >= 60.0:
        log.warning("%s (%d time(s) since the last report)", message, _accept_errors["count"])
        _accept_errors["count"] = 0
        _accept_errors["logged_at"] = now
