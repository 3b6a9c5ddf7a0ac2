"""The tunnel endpoint: one logical session that outlives many transports.

Sans-I/O in the manner of ``websockets``' protocol objects and ``aioquic``'s timers:
the caller feeds transport events, bytes and ``now``; it takes out bytes to send
(tagged with the transport they belong to), transports to close, events, and the next
deadline at which ``handle_timer`` must be called. No sockets, no clock, no sleeps.

This module holds what both sides share: transports and liveness, the session's state
(whose rules are the tables in ``tunnel.states``) and logout. What flows on the link once
it is up is ``tunnel.data_path``'s. The phone's side is ``tunnel.phone_endpoint``, the
station's ``tunnel.station_endpoint``: each says how its handshakes run and what a
finished one means for the session.

The phone may race several transports at once (one per address of the station) and keeps
the first whose handshake completes; the station may briefly hold two when a phone
resumes on a new transport before the old one is known to be dead.
"""

from __future__ import annotations

from tunnel.channel import ReliableChannel
from tunnel.conn import Conn, Driver
from tunnel.data_path import DataPath
from tunnel.errors import LinkTimeout, OversizedRecord, PeerError, SessionClosed, UsageError
from tunnel.events import LinkDown, LinkUp, LogoutRequested, SessionEnded
from tunnel.frames import Ack, Close, CloseCode, Ping, decode_frame
from tunnel.handshake import Keys
from tunnel.queue import OutageQueue
from tunnel.records import RecordReceiver, RecordSender
from tunnel.settings import Settings
from tunnel.states import (
    SENDING_STATES,
    SESSION_TRANSITIONS,
    SessionEvent,
    SessionState,
    TransportEvent,
    TransportState,
    transition,
)

_E = SessionEvent


class Endpoint(DataPath[Driver]):
    """What the phone and the station share: transports, liveness, the session's state and
    logout. ``Driver`` is the handshake driver type the side keeps on its transports."""

    # Whether our own sends may be renumbered after a restart (see ReliableChannel).
    RENUMBERS_OWN_SENDS = False

    def __init__(self, settings: Settings, queue: OutageQueue | None = None) -> None:
        queue = queue or OutageQueue(
            max_count=settings.queue_max_count, max_bytes=settings.queue_max_bytes
        )
        channel = ReliableChannel(
            queue, window=settings.window, may_renumber=self.RENUMBERS_OWN_SENDS
        )
        super().__init__(settings, queue, channel)
        self._conns: dict[int, Conn[Driver]] = {}
        self._state = SessionState.PAIRING
        self.session_id: bytes | None = None
        self.link_count = 0  # transports that became the session's link
        # Data of the states (tunnel.states): why the session ended; our logout's reason
        # and when its Close last went on a link; the peer's, once it asked.
        self._ended: str | None = None
        self._logout = ""
        self._logout_sent: float | None = None
        self.logout_requested: str | None = None
        # Answer a peer's Close at once (True), or let the application say its last
        # words first: it gets LogoutRequested and then calls close() (the station
        # sends the wipe receipt that way).
        self.answer_close = True

    # -- the session's state ------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    def _fire(self, event: SessionEvent) -> None:
        self._state = transition(SESSION_TRANSITIONS, self._state, event, "session")

    @property
    def ended(self) -> str | None:
        """Why the session ended, once it has (it then never resumes)."""
        return self._ended

    @property
    def logout_pending(self) -> str | None:
        """Our confirmed logout's reason while the peer has not answered it."""
        return self._logout if self._state is SessionState.LOGGING_OUT else None

    @property
    def linked(self) -> bool:
        return self._active is not None

    # -- what the caller feeds in ----------------------------------------------------

    def connection_made(self, conn: int, now: float) -> None:
        if conn in self._conns:
            raise UsageError(f"transport {conn} already known")
        self._conns[conn] = Conn(conn, now, last_received=now, last_sent=now)

    def receive(self, conn: int, data: bytes, now: float) -> None:
        c = self._conns.get(conn)
        if c is None or not c.live:
            return
        try:
            if len(data) > self.settings.max_record:
                raise OversizedRecord("message larger than the maximum record")
            if c.state is TransportState.HANDSHAKE:
                self._on_handshake(c, data, now)
            else:
                self._on_record(c, data, now)
        except PeerError as exc:
            self._peer_failed(c, exc, now)
        self._flush(now)

    def connection_lost(self, conn: int, now: float) -> None:
        c = self._conns.pop(conn, None)
        if c is None or not c.live:
            return
        c.handle(TransportEvent.CLOSED)
        self._transport_gone(c, "connection lost", now)

    def handle_timer(self, now: float) -> None:
        s = self.settings
        for c in list(self._conns.values()):
            if not c.live:
                continue
            if c.state is TransportState.HANDSHAKE:
                if now >= c.opened_at + s.handshake_timeout:
                    self._peer_failed(c, LinkTimeout("handshake timed out"), now)
                continue
            if now >= c.last_received + s.link_timeout:
                self._peer_failed(c, LinkTimeout("no sign of life"), now)
                continue
            if (
                c is self._active
                and self._logout_sent is not None
                and now >= self._logout_sent + s.link_timeout
            ):
                # The peer never answered our Close on this link: try another one.
                self._peer_failed(c, LinkTimeout("logout not acknowledged"), now)
                continue
            if now >= c.last_sent + s.ping_interval:
                c.ping_token += 1
                self._send_frame(c, Ping(self._acked_cursor, c.ping_token), now)
        self._flush(now)

    def next_deadline(self) -> float | None:
        # The pump asks after every drain (once per command sent): no list, no min().
        s = self.settings
        earliest = self._ack_due
        for c in self._conns.values():
            if c.state is TransportState.HANDSHAKE:
                due = c.opened_at + s.handshake_timeout
            elif c.state is not TransportState.CLOSED:  # live
                due = c.last_received + s.link_timeout
                ping = c.last_sent + s.ping_interval
                if ping < due:
                    due = ping
            else:
                continue
            if earliest is None or due < earliest:
                earliest = due
        if self._logout_sent is not None:
            due = self._logout_sent + s.link_timeout
            if earliest is None or due < earliest:
                earliest = due
        return earliest

    # -- what the application does -----------------------------------------------------

    def send(self, payload: bytes, now: float) -> int:
        """Queue a message for the peer; it goes now if the link is up, else on resume.

        Raises ``QueueFull`` (nothing is dropped) and ``SessionClosed`` after logout.
        """
        if self._state not in SENDING_STATES:
            if self._state is SessionState.LOGGING_OUT:
                raise SessionClosed("the session is logging out", reason=self._logout)
            raise SessionClosed("the session has ended", reason=self._ended or "closed")
        return self._submit(payload, now)

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
        and ``SessionEnded(confirmed=True)`` says the peer knows. It needs a session the
        peer knows of (``ImpossibleTransition`` while pairing: close without it to stop
        pairing). Without it, the session ends at once (the station's way: its worker is
        about to exit)."""
        if self._state is SessionState.ENDED:
            return
        if confirm:
            self._fire(_E.LOGOUT)
            self._logout = self._logout or reason
            if self._active is not None and self._logout_sent is None:
                self._send_close(self._active, code, now)
            self._flush(now)
            return
        if self._active is not None:
            self._send_close(self._active, code, now, reason=reason)
        self._end(reason, _E.CLOSE, by_peer=False)

    # -- records ---------------------------------------------------------------------

    def _on_record(self, c: Conn[Driver], data: bytes, now: float) -> None:
        if c.receiver is None:
            raise UsageError(f"transport {c.id} is {c.state.value} without keys")
        frame = decode_frame(c.receiver.open(data))
        c.last_received = now
        if c.state is TransportState.OPEN:
            self._confirmed(c, now)
        if c is not self._active:
            return
        if isinstance(frame, Close):
            self._on_close(c, frame, now)
        else:
            self._on_frame(c, frame, now)

    def _on_close(self, c: Conn[Driver], frame: Close, now: float) -> None:
        if self._state is SessionState.LOGGING_OUT:
            # The answer to our logout (or the peer's own: the session is over either
            # way, and the peer knows it).
            self._close_conn(c, "logout")
            self._end(self._logout, _E.LOGOUT_CONFIRMED, by_peer=False, confirmed=True)
        elif self._state is SessionState.LOGOUT_REQUESTED:
            return  # asked already: our Close follows the application's last words
        elif not self.answer_close:
            self.logout_requested = frame.reason or "logout"
            self._fire(_E.PEER_ASKS_LOGOUT)
            self._out.events.append(LogoutRequested(self.logout_requested))
        else:
            # Answer, so a peer that asked to be logged out learns that we did.
            self._send_frame(c, Close(CloseCode.LOGOUT, "logged out"), now)
            self._close_conn(c, "logout")
            self._end(frame.reason or "logout", _E.PEER_ENDED, by_peer=True)

    def _send_close(self, c: Conn[Driver], code: int, now: float, *, reason: str = "") -> None:
        if self._acked_cursor > self._ack_sent:
            # Let the peer count what we did receive before it reports losses.
            self._send_frame(c, Ack(self._acked_cursor), now)
        self._send_frame(c, Close(code, reason or self._logout or "logout"), now)
        if self._state is SessionState.LOGGING_OUT:
            self._logout_sent = now

    # -- transports ------------------------------------------------------------------

    def _open_records(self, c: Conn[Driver], keys: Keys) -> None:
        s = self.settings
        c.sender = RecordSender(keys.send, max_record=s.max_record, rekey_interval=s.rekey_interval)
        c.receiver = RecordReceiver(
            keys.receive, max_record=s.max_record, rekey_interval=s.rekey_interval
        )

    def _activate(self, c: Conn[Driver], peer_cursor: int, *, resumed: bool, now: float) -> None:
        previous = self._active
        if previous is not None and previous is not c:
            self._close_conn(previous, "superseded")
            self._link_down(previous, "superseded")
        c.handle(TransportEvent.BECAME_LINK)
        self._fire(_E.LINK_UP)
        self._active = c
        self.link_count += 1
        self.channel.rewind(peer_cursor)
        self._ack_sent = 0  # the new transport has heard no ack from us yet
        self._out.events.append(LinkUp(c.id, resumed))
        self._send_frame(c, Ack(self._acked_cursor), now)
        self._logout_sent = None
        if self._state is SessionState.LOGGING_OUT:
            self._send_close(c, CloseCode.LOGOUT, now)  # a logout still owed to the peer

    def _peer_failed(self, c: Conn[Driver], exc: Exception, now: float) -> None:
        reason = getattr(exc, "close_reason", "protocol error")
        self._close_conn(c, reason)
        self._transport_gone(c, reason, now)

    def _close_conn(self, c: Conn[Driver], reason: str) -> None:
        if c.live:
            c.handle(TransportEvent.CLOSED)
            self._out.closes.append((c.id, reason))

    def _transport_gone(self, c: Conn[Driver], reason: str, now: float) -> None:
        """A transport closed (failed, timed out or lost); the sides add what it meant."""
        if c is self._active:
            self._link_down(c, reason)

    def _link_down(self, c: Conn[Driver], reason: str) -> None:
        self._fire(_E.LINK_DOWN)
        self._active = None
        self._out.events.append(LinkDown(c.id, reason))

    def _confirmed(self, c: Conn[Driver], now: float) -> None:
        raise UsageError("only the station has unconfirmed transports")

    def _on_handshake(self, c: Conn[Driver], data: bytes, now: float) -> None:
        raise NotImplementedError

    def _end(
        self, reason: str, event: SessionEvent, *, by_peer: bool, confirmed: bool = False
    ) -> None:
        self._fire(event)
        self._ended = reason
        self._logout_sent = None
        for c in list(self._conns.values()):
            self._close_conn(c, "session ended")
        self._active = None
        self._out.events.append(SessionEnded(reason, by_peer, self._queue.depth, confirmed))
