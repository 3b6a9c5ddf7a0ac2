"""The phone's end of the tunnel: it opens every transport, pairs once, then resumes.

* Pairing: by the offer in a ``fieldstation://`` URI or by a short code, on one
  transport or (``parallel``) on one per address of the station at once; the first
  handshake that completes wins and the others are dropped before they can. A pairing
  cut short is over: offers are single use.
* Resume: with the one-use secret of the last handshake; each completed one ratchets it
  (``StateChanged``: persist ``export_state()`` before anything goes out).
* Refusals: clear text is advisory (anyone on the LAN can send one); only a refusal
  authenticated under our resumption secret may end the session.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tunnel.channel import ReliableChannel
from tunnel.conn import Conn
from tunnel.drivers import PhoneHandshake
from tunnel.endpoint import Endpoint
from tunnel.errors import UsageError
from tunnel.events import AttemptFailed, LinkDown, Paired, PairingFailed, ResumeGap, StateChanged
from tunnel.handshake import (
    PairingResult,
    PhonePairByCode,
    PhonePairByUri,
    PhoneResume,
    ResumeResult,
)
from tunnel.identity import PhoneIdentity
from tunnel.queue import OutageQueue
from tunnel.refusal import FINAL_CODES, RefusalBody, RefuseCode, Refused
from tunnel.settings import Settings
from tunnel.states import SessionEvent, SessionState, TransportState

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


class PhoneEndpoint(Endpoint[PhoneHandshake]):
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
        parallel: bool = False,
    ) -> None:
        """``parallel``: the caller races several transports (every address of the
        station) and decides itself when pairing is over (``give_up``); a failed
        attempt is then an ``AttemptFailed``, not the end of pairing."""
        queue = OutageQueue(
            max_count=settings.queue_max_count,
            max_bytes=settings.queue_max_bytes,
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
            self._fire(SessionEvent.RESTORED)
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
        if self.state is not SessionState.PAIRING:
            return
        self._out.events.append(PairingFailed(reason))
        self._end(f"pairing failed: {reason}", SessionEvent.PAIRING_FAILED, by_peer=False)
        self._flush(now)

    @property
    def wants_transport(self) -> bool:
        """Whether the caller should open a transport now (after its backoff)."""
        return self.state is not SessionState.ENDED and not any(
            c.live for c in self._conns.values()
        )

    def connection_made(self, conn: int, now: float) -> None:
        super().connection_made(conn, now)
        c = self._conns[conn]
        if self.state is SessionState.ENDED:
            self._close_conn(c, "session ended")
            return
        c.driver = driver = self._driver()
        self._out.data.append((conn, driver.first_message()))
        c.last_sent = now

    def _driver(self) -> PhoneHandshake:
        """A resume once paired (also while logging out: the Close is owed), else the
        pairing the caller gave us."""
        if self.session_id is not None:
            return PhoneResume(self.session_id, self._secret, self._acked_cursor)
        if self._identity is None:
            raise UsageError("pairing needs the phone's identity")
        if self._uri_offer is not None:
            return PhonePairByUri(self._identity, *self._uri_offer)
        if self._code is not None:
            return PhonePairByCode(self._identity, self._code)
        raise UsageError("pairing needs an offer or a code")

    def _on_handshake(self, c: Conn[PhoneHandshake], data: bytes, now: float) -> None:
        if c.driver is None:
            raise UsageError(f"transport {c.id} has no handshake")  # connection_made sets it
        try:
            reply, result = c.driver.receive(data)
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
            if other is not c and other.state is TransportState.HANDSHAKE:
                self._close_conn(other, "another address answered first")
        self._open_records(c, result.keys)
        self._secret = result.keys.next_secret
        match result:
            case PairingResult():
                self.session_id = result.session_id
                self.station = result.station
                self._uri_offer = None
                self._code = None
                self._out.events.append(Paired(result.session_id, result.station, None))
                self._out.events.append(StateChanged())
                self._activate(c, 0, resumed=False, now=now)
            case ResumeResult():
                self._out.events.append(StateChanged())
                self._activate(c, result.peer_cursor, resumed=True, now=now)

    def _refused(self, c: Conn[PhoneHandshake], refusal: Refused) -> None:
        self._close_conn(c, "refused")
        pairing = self.state is SessionState.PAIRING
        if self._parallel and pairing:
            # Clear text: advisory. The caller races other addresses and decides.
            self._out.events.append(AttemptFailed(c.id, refusal.reason, int(refusal.code)))
            return
        if pairing:
            self._out.events.append(PairingFailed(refusal.reason))
            self._end(
                f"pairing refused: {refusal.reason}", SessionEvent.PAIRING_FAILED, by_peer=True
            )
            return
        if refusal.authenticated and refusal.code in FINAL_CODES:
            # Only the station's worker holds our resumption secret: this is the truth.
            gap = refusal.details.gap
            if refusal.code is RefuseCode.RESUME_GAP and gap is not None:
                self._out.events.append(ResumeGap(*gap))
                reason = f"resume refused: {refusal.reason}"
            else:
                why = refusal.details.reason or refusal.reason
                self.ended_details = refusal.details  # e.g. the wipe receipt it carries
                reason = f"session ended at the station ({why})"
            self._end(reason, SessionEvent.PEER_ENDED, by_peer=True)
            return
        # Clear text: anyone on the LAN can send one. Advisory; keep trying.
        if self._parallel:
            self._out.events.append(AttemptFailed(c.id, refusal.reason, int(refusal.code)))
        else:
            self._out.events.append(LinkDown(c.id, f"refused: {refusal.reason}"))

    def _transport_gone(self, c: Conn[PhoneHandshake], reason: str, now: float) -> None:
        if self._parallel and c is not self._active:
            if self.state is not SessionState.ENDED:
                self._out.events.append(AttemptFailed(c.id, reason))
            return
        if self.state is SessionState.PAIRING:
            # An offer is single use: a pairing cut short cannot be tried again.
            self._out.events.append(PairingFailed(reason))
            self._end(f"pairing failed: {reason}", SessionEvent.PAIRING_FAILED, by_peer=False)
            return
        super()._transport_gone(c, reason, now)
