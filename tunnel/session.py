"""The tunnel endpoint: one logical session that outlives many transports.

Sans-I/O in the manner of ``websockets``' protocol objects and ``aioquic``'s timers:
the caller feeds transport events, bytes and ``now``; it takes out bytes to send
(tagged with the transport they belong to), transports to close, events, and the next
deadline at which ``handle_timer`` must be called. No sockets, no clock, no sleeps.

A *transport* (one WebSocket, in production) is named by an integer the caller picks.
The phone may race several at once (one per address of the station) and keeps the first
whose handshake completes; the station may briefly hold two when a phone resumes on a
new transport before the old one is known to be dead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from tunnel.channel import ReliableChannel
from tunnel.errors import (
    LinkTimeout,
    OversizedRecord,
    PeerError,
    SessionClosed,
    UsageError,
)
from tunnel.events import (
    Acked,
    AttemptFailed,
    Event,
    LinkDown,
    LinkUp,
    LogoutRequested,
    MessageReceived,
    NoticeReceived,
    Paired,
    PairingFailed,
    ResumeGap,
    SessionEnded,
    Settings,
    StateChanged,
)
from tunnel.frames import (
    DATA_OVERHEAD,
    MAX_RUN,
    RUN_ITEM_OVERHEAD,
    RUN_OVERHEAD,
    Ack,
    Close,
    CloseCode,
    Data,
    DataRun,
    Frame,
    Notice,
    Ping,
    Pong,
    decode_frame,
    encode_frame,
)
from tunnel.handshake import (
    SECRET_LEN,
    Keys,
    PairingResult,
    PhonePairByCode,
    PhonePairByUri,
    PhonePaired,
    PhoneResume,
    ResumeResult,
)
from tunnel.identity import PhoneIdentity
from tunnel.queue import OutageQueue, QueueStorage
from tunnel.records import OVERHEAD as RECORD_OVERHEAD
from tunnel.records import RecordReceiver, RecordSender
from tunnel.refusal import FINAL_CODES, RefusalBody, RefuseCode, Refused

if TYPE_CHECKING:
    from tunnel.station_endpoint import StationEndpoint


class ConnState(Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"  # keys agreed; on the station, not yet confirmed by the phone
    ACTIVE = "active"  # the session's link: data flows here
    CLOSED = "closed"


# Transitions as data (cf. h11's _state.py): anything else is a bug in this module.
_TRANSITIONS: dict[ConnState, frozenset[ConnState]] = {
    ConnState.HANDSHAKE: frozenset({ConnState.OPEN, ConnState.ACTIVE, ConnState.CLOSED}),
    ConnState.OPEN: frozenset({ConnState.ACTIVE, ConnState.CLOSED}),
    ConnState.ACTIVE: frozenset({ConnState.CLOSED}),
    ConnState.CLOSED: frozenset(),
}


@dataclass(slots=True)
class _Conn:
    id: int
    opened_at: float
    state: ConnState = ConnState.HANDSHAKE
    driver: object | None = None
    sender: RecordSender | None = None
    receiver: RecordReceiver | None = None
    last_received: float = 0.0
    last_sent: float = 0.0
    ping_token: int = 0
    # Station: what this transport's resume would commit once the phone confirms it.
    candidate_secret: bytes = b""
    peer_cursor: int = 0
    resumed: bool = False
    paired: PhonePaired | None = None

    def move(self, new: ConnState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise UsageError(f"transport {self.id}: {self.state.value} -> {new.value}")
        self.state = new


@dataclass(slots=True)
class _Outbox:
    data: list[tuple[int, bytes]] = field(default_factory=list)
    closes: list[tuple[int, str]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class Endpoint:
    """What the phone and the station share: records, the channel, liveness, logout."""

    # Whether our own sends may be renumbered after a restart (see ReliableChannel).
    RENUMBERS_OWN_SENDS = False

    def __init__(self, settings: Settings, queue: OutageQueue | None = None) -> None:
        self.settings = settings
        self._queue = queue or OutageQueue(
            max_count=settings.queue_max_count, max_bytes=settings.queue_max_bytes
        )
        self.channel = ReliableChannel(
            self._queue, window=settings.window, may_renumber=self.RENUMBERS_OWN_SENDS
        )
        self._conns: dict[int, _Conn] = {}
        self._active: _Conn | None = None
        self._out = _Outbox()
        self._acked_cursor = 0  # what we may acknowledge (durable, on the phone)
        self._ack_sent = 0
        self._ack_due: float | None = None
        self.session_id: bytes | None = None
        self.ended: str | None = None
        self.link_count = 0  # transports that became the session's link
        # Our logout, waiting for the peer's Close in answer (close(confirm=True)):
        # the reason, and when the Close last went out on a link.
        self._logout: str | None = None
        self._logout_sent: float | None = None
        # Answer a peer's Close at once (True), or let the application say its last
        # words first: it gets LogoutRequested and then calls close() (the station
        # sends the wipe receipt that way).
        self.answer_close = True
        self.logout_requested: str | None = None

    # -- what the caller feeds in ----------------------------------------------------

    def connection_made(self, conn: int, now: float) -> None:
        if conn in self._conns:
            raise UsageError(f"transport {conn} already known")
        self._conns[conn] = _Conn(conn, now, last_received=now, last_sent=now)

    def receive(self, conn: int, data: bytes, now: float) -> None:
        c = self._conns.get(conn)
        if c is None or c.state is ConnState.CLOSED:
            return
        try:
            if len(data) > self.settings.max_record:
                raise OversizedRecord("message larger than the maximum record")
            if c.state is ConnState.HANDSHAKE:
                self._on_handshake(c, data, now)
            else:
                self._on_record(c, data, now)
        except PeerError as exc:
            self._peer_failed(c, exc, now)
        self._flush(now)

    def connection_lost(self, conn: int, now: float) -> None:
        c = self._conns.pop(conn, None)
        if c is None:
            return
        was_live = c.state is not ConnState.CLOSED
        if c.state is not ConnState.CLOSED:
            c.move(ConnState.CLOSED)
        if was_live:
            self._transport_gone(c, "connection lost", now)

    def handle_timer(self, now: float) -> None:
        for c in list(self._conns.values()):
            if c.state is ConnState.CLOSED:
                continue
            if c.state is ConnState.HANDSHAKE:
                if now >= c.opened_at + self.settings.handshake_timeout:
                    self._peer_failed(c, LinkTimeout("handshake timed out"), now)
                continue
            if now >= c.last_received + self.settings.link_timeout:
                self._peer_failed(c, LinkTimeout("no sign of life"), now)
                continue
            if (
                c is self._active
                and self._logout_sent is not None
                and now >= self._logout_sent + self.settings.link_timeout
            ):
                # The peer never answered our Close on this link: try another one.
                self._peer_failed(c, LinkTimeout("logout not acknowledged"), now)
                continue
            if now >= c.last_sent + self.settings.ping_interval:
                c.ping_token += 1
                self._send_frame(c, Ping(self._acked_cursor, c.ping_token), now)
        self._flush(now)

    # -- what the application does -----------------------------------------------------

    def send(self, payload: bytes, now: float) -> int:
        """Queue a message for the peer; it goes now if the link is up, else on resume.

        Raises ``QueueFull`` (nothing is dropped) and ``SessionClosed`` after logout.
        """
        if self.ended is not None:
            raise SessionClosed("the session has ended", reason=self.ended)
        if self._logout is not None:
            raise SessionClosed("the session is logging out", reason=self._logout)
        if len(payload) > self.max_payload:
            raise UsageError(
                f"a message of {len(payload)} bytes does not fit in one record"
                f" (at most {self.max_payload}): split it"
            )
        seq = self.channel.submit(payload)
        self._flush(now)
        return seq

    def acknowledge(self, seq: int, now: float) -> None:
        """Manual-ack mode: the application has durably applied everything through ``seq``.

        The ack goes at once: the application batched already (one commit, one ack)."""
        if seq > self.channel.delivered:
            raise UsageError("acknowledging a message that was never delivered")
        if seq > self._acked_cursor:
            self._acked_cursor = seq
            self._ack_due = now
        self._flush(now)

    def input_idle(self, now: float) -> None:
        """The caller has fed everything its transports had buffered: acknowledge now.

        A burst read in one go is acknowledged by one frame, and a lone message at
        once, instead of after ``ack_delay`` (which stays as the fallback for callers
        that never say so)."""
        if self._ack_due is not None:
            self._ack_due = now
            self._flush(now)

    def notify(self, payload: bytes, now: float) -> bool:
        """Send a notice (latest-state, unsequenced) if the link is up; False if not.

        Nothing is queued: the caller sends its current state again on ``LinkUp``."""
        if self._active is None or self.ended is not None:
            return False
        if len(payload) > self.max_payload:
            raise UsageError("a notice must fit in one record")
        self._send_frame(self._active, Notice(self._acked_cursor, payload), now)
        self._flush(now)
        return True

    def close(
        self,
        reason: str,
        now: float,
        *,
        code: CloseCode = CloseCode.LOGOUT,
        confirm: bool = False,
    ) -> None:
        """Log out: tell the peer if we can, and end the session for good.

        With ``confirm``, the session ends only when the peer answers our Close with its
        own: until then the logout is pending, the Close goes again on every new link,
        and ``SessionEnded(confirmed=True)`` says the peer knows. Without it, the
        session ends at once (the station's way: its worker is about to exit)."""
        if self.ended is not None:
            return
        if confirm:
            self._logout = self._logout or reason
            if self._active is not None and self._logout_sent is None:
                self._send_close(self._active, code, now)
            self._flush(now)
            return
        if self._active is not None:
            self._send_close(self._active, code, now, reason=reason)
        self._end(reason, by_peer=False)

    def _send_close(self, c: _Conn, code: int, now: float, *, reason: str = "") -> None:
        if self._acked_cursor > self._ack_sent:
            # Let the peer count what we did receive before it reports losses.
            self._send_frame(c, Ack(self._acked_cursor), now)
        self._send_frame(c, Close(code, reason or self._logout or "logout"), now)
        if self._logout is not None:
            self._logout_sent = now

    @property
    def logout_pending(self) -> str | None:
        """Our confirmed logout's reason while the peer has not answered it."""
        return self._logout if self.ended is None else None

    # -- what the caller takes out ------------------------------------------------------

    @property
    def has_output(self) -> bool:
        """Whether events, bytes or close requests wait to be taken."""
        return bool(self._out.data or self._out.events or self._out.closes)

    def data_to_send(self) -> list[tuple[int, bytes]]:
        out, self._out.data = self._out.data, []
        return out

    def close_requests(self) -> list[tuple[int, str]]:
        out, self._out.closes = self._out.closes, []
        return out

    def events(self) -> list[Event]:
        out, self._out.events = self._out.events, []
        return out

    def next_deadline(self) -> float | None:
        deadlines: list[float] = []
        if self._ack_due is not None:
            deadlines.append(self._ack_due)
        for c in self._conns.values():
            if c.state is ConnState.CLOSED:
                continue
            if c.state is ConnState.HANDSHAKE:
                deadlines.append(c.opened_at + self.settings.handshake_timeout)
            else:
                deadlines.append(c.last_received + self.settings.link_timeout)
                deadlines.append(c.last_sent + self.settings.ping_interval)
        if self._logout_sent is not None:
            deadlines.append(self._logout_sent + self.settings.link_timeout)
        return min(deadlines, default=None)

    @property
    def max_payload(self) -> int:
        """The largest message ``send`` takes: a record less its header, tag and frame."""
        return self.settings.max_record - RECORD_OVERHEAD - DATA_OVERHEAD

    @property
    def linked(self) -> bool:
        return self._active is not None

    @property
    def undelivered(self) -> int:
        """Messages we sent that the peer has not acknowledged (queued or in flight)."""
        return self._queue.depth

    @property
    def queue(self) -> OutageQueue:
        return self._queue

    # -- records ---------------------------------------------------------------------

    def _on_record(self, c: _Conn, data: bytes, now: float) -> None:
        assert c.receiver is not None
        frame = decode_frame(c.receiver.open(data))
        c.last_received = now
        if c.state is ConnState.OPEN:
            self._confirmed(c, now)
        if c is not self._active:
            return
        self._on_frame(c, frame, now)

    def _on_frame(self, c: _Conn, frame: Frame, now: float) -> None:
        newly = 0 if isinstance(frame, Close) else self.channel.on_ack(frame.ack)
        if newly:
            self._out.events.append(Acked(self.channel.acked))
        if isinstance(frame, Data):
            self._on_data(frame.seq, frame.payload, now)
        elif isinstance(frame, DataRun):
            for i, payload in enumerate(frame.payloads):
                self._on_data(frame.first_seq + i, payload, now)
        elif isinstance(frame, Ping):
            self._send_frame(c, Pong(self._acked_cursor, frame.token), now)
        elif isinstance(frame, Notice):
            self._out.events.append(NoticeReceived(frame.payload))
        elif isinstance(frame, Close):
            if self._logout is not None:
                # The answer to our logout (or the peer's own: the session is over
                # either way, and the peer knows it).
                self._close_conn(c, "logout")
                self._end(self._logout, by_peer=False, confirmed=True)
                return
            if not self.answer_close:
                if self.logout_requested is None:
                    self.logout_requested = frame.reason or "logout"
                    self._out.events.append(LogoutRequested(self.logout_requested))
                return
            # Answer, so a peer that asked to be logged out learns that we did.
            self._send_frame(c, Close(CloseCode.LOGOUT, "logged out"), now)
            self._close_conn(c, "logout")
            self._end(frame.reason or "logout", by_peer=True)

    def _on_data(self, seq: int, payload: bytes, now: float) -> None:
        if self.channel.on_data(seq, payload):
            self._out.events.append(MessageReceived(seq, payload))
            if self.settings.auto_ack:
                self._acked_cursor = self.channel.delivered
                self._arm_ack(now)

    def _send_frame(self, c: _Conn, frame: Frame, now: float) -> None:
        assert c.sender is not None
        self._out.data.append((c.id, c.sender.seal(encode_frame(frame))))
        c.last_sent = now
        self._ack_sent = max(self._ack_sent, getattr(frame, "ack", 0))

    def _send_runs(self, c: _Conn, sendable: list[tuple[int, bytes]], now: float) -> None:
        """A backlog goes as runs of consecutive messages, each filling one record."""
        budget = self.max_payload + DATA_OVERHEAD - RUN_OVERHEAD
        run: list[bytes] = []
        first = sendable[0][0]
        size = 0
        for seq, payload in sendable:
            cost = RUN_ITEM_OVERHEAD + len(payload)
            if run and (size + cost > budget or len(run) == MAX_RUN):
                self._send_frame(c, self._run_frame(first, run), now)
                run, first, size = [], seq, 0
            run.append(payload)
            size += cost
        self._send_frame(c, self._run_frame(first, run), now)

    def _run_frame(self, first: int, payloads: list[bytes]) -> Data | DataRun:
        if len(payloads) == 1:
            return Data(first, self._acked_cursor, payloads[0])
        return DataRun(first, self._acked_cursor, tuple(payloads))

    def _arm_ack(self, now: float) -> None:
        # Ack at once when a quarter window is waiting, else after a short delay so
        # that a burst is acknowledged by one frame or by the data flowing back.
        if self._acked_cursor - self._ack_sent >= max(1, self.settings.window // 4):
            self._ack_due = now
        elif self._ack_due is None:
            self._ack_due = now + self.settings.ack_delay

    def _flush(self, now: float) -> None:
        c = self._active
        if c is None or self.ended is not None:
            # No link: the next activation acknowledges everything anyway.
            self._ack_due = None
            return
        sendable = self.channel.take_sendable()
        if len(sendable) == 1:
            seq, payload = sendable[0]
            self._send_frame(c, Data(seq, self._acked_cursor, payload), now)
        elif sendable:
            self._send_runs(c, sendable, now)
        if self._ack_due is not None and self._ack_due <= now:
            self._ack_due = None
            if self._acked_cursor > self._ack_sent:
                self._send_frame(c, Ack(self._acked_cursor), now)

    # -- transports ------------------------------------------------------------------

    def _open_records(self, c: _Conn, keys: Keys) -> None:
        s = self.settings
        c.sender = RecordSender(keys.send, max_record=s.max_record, rekey_interval=s.rekey_interval)
        c.receiver = RecordReceiver(
            keys.receive, max_record=s.max_record, rekey_interval=s.rekey_interval
        )

    def _activate(self, c: _Conn, peer_cursor: int, *, resumed: bool, now: float) -> None:
        previous = self._active
        if previous is not None and previous is not c:
            self._close_conn(previous, "superseded")
            self._out.events.append(LinkDown(previous.id, "superseded"))
        c.move(ConnState.ACTIVE)
        self._active = c
        self.link_count += 1
        self.channel.rewind(peer_cursor)
        self._ack_sent = 0  # the new transport has heard no ack from us yet
        self._out.events.append(LinkUp(c.id, resumed))
        self._send_frame(c, Ack(self._acked_cursor), now)
        self._logout_sent = None
        if self._logout is not None:
            self._send_close(c, CloseCode.LOGOUT, now)  # a logout still owed to the peer

    def _peer_failed(self, c: _Conn, exc: Exception, now: float) -> None:
        reason = getattr(exc, "close_reason", "protocol error")
        was_handshake = c.state is ConnState.HANDSHAKE
        self._close_conn(c, reason)
        self._transport_gone(c, reason, now, during_handshake=was_handshake)

    def _close_conn(self, c: _Conn, reason: str) -> None:
        if c.state is not ConnState.CLOSED:
            c.move(ConnState.CLOSED)
            self._out.closes.append((c.id, reason))

    def _transport_gone(
        self, c: _Conn, reason: str, now: float, *, during_handshake: bool = False
    ) -> None:
        if c is self._active:
            self._active = None
            self._out.events.append(LinkDown(c.id, reason))

    def _confirmed(self, c: _Conn, now: float) -> None:
        raise UsageError("only the station has unconfirmed transports")

    def _on_handshake(self, c: _Conn, data: bytes, now: float) -> None:
        raise NotImplementedError

    def _end(self, reason: str, *, by_peer: bool, confirmed: bool = False) -> None:
        self.ended = reason
        self._logout = self._logout_sent = None
        for c in list(self._conns.values()):
            self._close_conn(c, "session ended")
        self._active = None
        self._out.events.append(SessionEnded(reason, by_peer, self._queue.depth, confirmed))


# -- the phone ---------------------------------------------------------------------


_STATE = struct.Struct(">B16s32sQQ")
_LEN = struct.Struct(">H")
MAX_SAVED_ADDRESSES = 8


@dataclass(frozen=True, slots=True)
class PhoneState:
    """What the phone persists to resume after its own restart.

    ``addresses`` are where the station was last reached (``host:port``, most recent
    first): a phone restarted after a crash tries them beside whatever mDNS says, so a
    rogue that hides the station on mDNS cannot keep the phone from it.
    """

    session_id: bytes
    secret: bytes
    next_seq: int
    delivered: int
    station: str
    addresses: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        name = self.station.encode("utf-8")
        if not self.addresses:
            head = _STATE.pack(1, self.session_id, self.secret, self.next_seq, self.delivered)
            return head + name
        head = _STATE.pack(2, self.session_id, self.secret, self.next_seq, self.delivered)
        where = "\n".join(self.addresses[:MAX_SAVED_ADDRESSES]).encode("ascii")
        return head + _LEN.pack(len(name)) + name + where

    @classmethod
    def from_bytes(cls, data: bytes) -> PhoneState:
        if len(data) < _STATE.size or data[0] not in (1, 2):
            raise UsageError("not a saved phone session state")
        version, session_id, secret, next_seq, delivered = _STATE.unpack_from(data)
        rest = data[_STATE.size :]
        if version == 1:
            return cls(session_id, secret, next_seq, delivered, rest.decode("utf-8"))
        if len(rest) < _LEN.size:
            raise UsageError("not a saved phone session state")
        (size,) = _LEN.unpack_from(rest)
        station = rest[_LEN.size : _LEN.size + size].decode("utf-8")
        where = rest[_LEN.size + size :].decode("ascii", "replace")
        addresses = tuple(a for a in where.split("\n") if a)
        return cls(session_id, secret, next_seq, delivered, station, addresses)


class PhoneEndpoint(Endpoint):
    """The phone: opens every transport, pairs once, then resumes until logout."""

    # The phone's pushes are idempotent mirror state: after the phone's own restart
    # from an older saved state they may take new numbers. Commands never do.
    RENUMBERS_OWN_SENDS = True

    def __init__(
        self,
        settings: Settings,
        *,
        identity: PhoneIdentity | None = None,
        uri_offer: tuple[bytes, bytes, bytes] | None = None,  # offer id, key, psk
        code: str | None = None,
        state: PhoneState | None = None,
        queue_storage: QueueStorage | None = None,
        parallel: bool = False,
    ) -> None:
        """``parallel``: the caller races several transports (every address of the
        station) and decides itself when pairing is over (``give_up``); a failed
        attempt is then an ``AttemptFailed``, not the end of pairing."""
        queue = OutageQueue(
            max_count=settings.queue_max_count,
            max_bytes=settings.queue_max_bytes,
            storage=queue_storage,
        )
        super().__init__(settings, queue)
        self._identity = identity
        self._uri_offer = uri_offer
        self._code = code
        self._secret = b""
        self._parallel = parallel
        self.station = ""
        self.addresses: tuple[str, ...] = ()  # where the station was last reached
        self.ended_details: RefusalBody | None = None  # from an authenticated SESSION_ENDED
        if state is not None:
            self.session_id = state.session_id
            self._secret = state.secret
            self.station = state.station
            self.addresses = state.addresses
            self.channel = ReliableChannel(
                self._queue,
                window=settings.window,
                next_seq=state.next_seq,
                delivered=state.delivered,
                may_renumber=True,
            )
            self._acked_cursor = state.delivered
        elif identity is None or (uri_offer is None) == (code is None):
            raise UsageError("pairing needs an identity and exactly one of an offer or a code")

    def export_state(self) -> PhoneState:
        if self.session_id is None:
            raise UsageError("not paired yet")
        return PhoneState(
            self.session_id,
            self._secret,
            self.channel.next_seq,
            self._acked_cursor,
            self.station,
            self.addresses,
        )

    def give_up(self, reason: str, now: float) -> None:
        """Pairing is over without a session (the caller's offer can no longer be valid,
        or every station refused): tell the application once, and end."""
        if self.session_id is not None or self.ended is not None:
            return
        self._out.events.append(PairingFailed(reason))
        self._end(f"pairing failed: {reason}", by_peer=False)
        self._flush(now)

    @property
    def wants_transport(self) -> bool:
        """Whether the caller should open a transport now (after its backoff)."""
        return self.ended is None and not any(
            c.state is not ConnState.CLOSED for c in self._conns.values()
        )

    def connection_made(self, conn: int, now: float) -> None:
        super().connection_made(conn, now)
        c = self._conns[conn]
        if self.ended is not None:
            self._close_conn(c, "session ended")
            return
        driver: PhonePairByUri | PhonePairByCode | PhoneResume
        if self.session_id is not None:
            driver = PhoneResume(self.session_id, self._secret, self._acked_cursor)
        elif self._uri_offer is not None:
            assert self._identity is not None
            driver = PhonePairByUri(self._identity, *self._uri_offer)
        else:
            assert self._identity is not None and self._code is not None
            driver = PhonePairByCode(self._identity, self._code)
        c.driver = driver
        self._out.data.append((conn, driver.first_message()))
        c.last_sent = now

    def _on_handshake(self, c: _Conn, data: bytes, now: float) -> None:
        driver = c.driver
        assert isinstance(driver, PhonePairByUri | PhonePairByCode | PhoneResume)
        try:
            reply, result = driver.receive(data)
        except Refused as refusal:
            self._refused(c, refusal)
            return
        c.last_received = now
        if reply is not None:
            self._out.data.append((c.id, reply))
            c.last_sent = now
        if result is None:
            return
        # The first completed handshake wins; the others are dropped before they can
        # complete too (a TCP connect proves nothing: only the handshake does).
        for other in list(self._conns.values()):
            if other is not c and other.state is ConnState.HANDSHAKE:
                self._close_conn(other, "another address answered first")
        self._open_records(c, result.keys)
        self._secret = result.keys.next_secret
        if isinstance(result, PairingResult):
            self.session_id = result.session_id
            self.station = result.station
            self._uri_offer = None
            self._code = None
            self._out.events.append(Paired(result.session_id, result.station, None))
            self._out.events.append(StateChanged())
            self._activate(c, 0, resumed=False, now=now)
        else:
            assert isinstance(result, ResumeResult)
            self._out.events.append(StateChanged())
            self._activate(c, result.peer_cursor, resumed=True, now=now)

    def _refused(self, c: _Conn, refusal: Refused) -> None:
        self._close_conn(c, "refused")
        if self._parallel and self.session_id is None:
            # Clear text: advisory. The caller races other addresses and decides.
            self._out.events.append(AttemptFailed(c.id, refusal.reason, int(refusal.code)))
            return
        if self.session_id is None:
            self._out.events.append(PairingFailed(refusal.reason))
            self._end(f"pairing refused: {refusal.reason}", by_peer=True)
            return
        if refusal.authenticated and refusal.code in FINAL_CODES:
            # Only the station's worker holds our resumption secret: this is the truth.
            gap = refusal.details.gap
            if refusal.code is RefuseCode.RESUME_GAP and gap is not None:
                self._out.events.append(ResumeGap(*gap))
                self._end(f"resume refused: {refusal.reason}", by_peer=True)
            else:
                why = refusal.details.reason or refusal.reason
                self.ended_details = refusal.details  # e.g. the wipe receipt it carries
                self._end(f"session ended at the station ({why})", by_peer=True)
            return
        # Clear text: anyone on the LAN can send one. Advisory; keep trying.
        if self._parallel:
            self._out.events.append(AttemptFailed(c.id, refusal.reason, int(refusal.code)))
        else:
            self._out.events.append(LinkDown(c.id, f"refused: {refusal.reason}"))

    def _transport_gone(
        self, c: _Conn, reason: str, now: float, *, during_handshake: bool = False
    ) -> None:
        if self._parallel and c is not self._active:
            if self.ended is None:
                self._out.events.append(AttemptFailed(c.id, reason))
            return
        if self.session_id is None and self.ended is None:
            # An offer is single use: a pairing cut short cannot be tried again.
            self._out.events.append(PairingFailed(reason))
            self._end(f"pairing failed: {reason}", by_peer=False)
            return
        super()._transport_gone(c, reason, now, during_handshake=during_handshake)


def __getattr__(name: str) -> object:
    # StationEndpoint moved to its own module; old imports from here keep working.
    if name == "StationEndpoint":
        from tunnel.station_endpoint import StationEndpoint

        return StationEndpoint
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SECRET_LEN",
    "ConnState",
    "Endpoint",
    "PhoneEndpoint",
    "PhoneState",
    "Settings",
    "StationEndpoint",
]
