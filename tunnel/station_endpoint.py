"""The station worker's end of the tunnel: its open offers, then the paired session.

* Pairing: ``OpenOffers`` says what is open. A URI hello is answered only if its Noise
  message authenticates under the offer's psk; a code hello gets one SPAKE2 reply per
  open code, and its guess is checked only against codes still open. Only a pairing
  that authenticates spends an offer; a wrong guess burns the codes it touched and
  pauses code pairing; anything else leaves every offer as it was.
* Resume: keyed by the confirmed secret or by any pending one (the phone may run
  several handshakes at once; the first it confirms wins and the others are forgotten).
  A phone cursor behind what that phone acknowledged is a gap: refused, authenticated,
  with the range named. Sequence numbers are never renumbered here.
* Logout: the refusal every later resume gets (``ended_refusal``) is made as the session
  ends, with a MAC under every secret the station would still have accepted, so the
  supervisor can answer with it once this process is gone.
"""

from __future__ import annotations

from collections import deque

from tunnel.conn import Conn
from tunnel.endpoint import Endpoint
from tunnel.entropy import SESSION_ID, random_bytes
from tunnel.errors import PeerError, ResumeRefused
from tunnel.events import CodePaused, OfferRotated, Paired, PairingFailed, ResumeGap
from tunnel.flights import SESSION_ID_LEN, WIRE_VERSION, Hello, MessageType, parse_hello
from tunnel.open_offers import OFFER_GRACE, CodeBackoff, OfferMaker, OpenOffers
from tunnel.refusal import (
    MAX_BODY,
    MAX_RANGES,
    WRONG_CODE_MESSAGE,
    RefusalBody,
    RefuseCode,
    authenticated_refusal,
    code_paused_message,
    encode_refusal,
    gap_message,
    seq_ranges,
)
from tunnel.settings import Settings
from tunnel.states import SessionEvent, SessionState, TransportEvent, TransportState
from tunnel.station_handshake import (
    PhonePaired,
    StationCodePairing,
    StationOffer,
    StationResume,
    StationUriPairing,
)

# SPAKE2 costs the station ~8 ms per code slot: code hellos beyond this rate are refused
# as busy before any of that work, so a flood cannot starve pairing by QR.
CODE_HELLOS_PER_S = 8.0
CODE_HELLO_BURST = 8.0


class StationEndpoint(Endpoint[StationCodePairing]):
    _SEEN_EPHEMERALS = 256
    MAX_PENDING = 8  # unconfirmed resumes whose secret is still accepted

    def __init__(
        self,
        settings: Settings,
        *,
        station: str,
        offer: StationOffer,
        now: float = 0.0,
        make_offer: OfferMaker | None = None,
        offer_ttl: float | None = None,
        offer_grace: float = OFFER_GRACE,
        backoff: CodeBackoff | None = None,
    ) -> None:
        super().__init__(settings)
        self.station = station
        self.offers = OpenOffers(
            offer, now, make_offer=make_offer, ttl=offer_ttl, grace=offer_grace, backoff=backoff
        )
        self._secret = b""  # confirmed resumption secret
        self._pending: deque[bytes] = deque()  # from resumes not confirmed yet
        self._seen: deque[bytes] = deque(maxlen=self._SEEN_EPHEMERALS)
        # CONFIRMING's data: the transport and the session id the phone must confirm.
        self._pairing: tuple[int, bytes] | None = None
        self._code_tokens = CODE_HELLO_BURST
        self._tokens_at = now
        self.fingerprint: str | None = None
        self.phone_key: bytes | None = None
        self.ended_refusal: bytes | None = None
        # Set by the application before it logs out: its signed wipe receipt, which the
        # ended-session refusal then carries to a phone that was away (opaque here).
        self.ended_receipt: bytes | None = None
        self.refused_hellos = 0  # a count, never a line per refusal

    @property
    def offer_open(self) -> bool:
        return self.offers.is_open and self._unpaired()

    def _unpaired(self) -> bool:
        # Not CONFIRMING: a pairing that authenticated closed every offer.
        return self.state is SessionState.PAIRING

    # -- time --------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadline = super().next_deadline()
        if self._unpaired():
            offers = self.offers.next_deadline()
            if offers is not None:
                deadline = offers if deadline is None else min(deadline, offers)
        return deadline

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        if self._unpaired():
            previous = self.offers.current
            rotated = self.offers.handle_timer(now)
            if rotated is not None:
                prev_id = previous.offer.offer_id if previous is not None else None
                self._out.events.append(OfferRotated(rotated.offer_id, rotated.code, prev_id))

    # -- hellos ------------------------------------------------------------------------

    def _refuse(self, c: Conn[StationCodePairing], code: RefuseCode, reason: str) -> None:
        self._send_raw_refusal(c, encode_refusal(code, reason), reason)

    def _send_raw_refusal(self, c: Conn[StationCodePairing], data: bytes, reason: str) -> None:
        self.refused_hellos += 1
        self._out.data.append((c.id, data))
        self._close_conn(c, reason)

    def _on_handshake(self, c: Conn[StationCodePairing], data: bytes, now: float) -> None:
        c.last_received = now
        if c.driver is not None:  # a code pairing we answered: this is the guess
            self._code_guess(c, c.driver, data, now)
            return
        try:
            hello = parse_hello(data)
        except PeerError:
            self._refuse(c, RefuseCode.MALFORMED, "malformed hello")
            return
        if hello.version != WIRE_VERSION:
            self._refuse(c, RefuseCode.VERSION, f"unsupported version {hello.version}")
        elif hello.kind is MessageType.RESUME:
            self._resume(c, hello, now)
        elif not self._unpaired() or not self.offers.is_open:
            self._refuse(c, RefuseCode.OFFER_USED, "offer already used")
        elif hello.kind is MessageType.PAIR_URI:
            self._pair_uri(c, hello, now)
        else:
            self._pair_code(c, hello, now)

    def _pair_uri(self, c: Conn[StationCodePairing], hello: Hello, now: float) -> None:
        offer = self.offers.uri_offer(hello.routing_id, now)
        if offer is None:
            self._refuse(c, RefuseCode.OFFER_UNKNOWN, "unknown or expired offer: scan the QR code")
            return
        session_id = random_bytes(SESSION_ID_LEN, SESSION_ID)
        try:
            reply, paired = StationUriPairing.receive_hello(hello, offer, session_id, self.station)
        except PeerError:
            # Not someone who holds this offer's secret: the offer stays open.
            self._refuse(c, RefuseCode.HANDSHAKE_FAILED, "pairing failed: not this offer's secret")
            return
        self._commit(c, session_id, reply, paired, now)

    def _pair_code(self, c: Conn[StationCodePairing], hello: Hello, now: float) -> None:
        paused = self.offers.paused_for(now)
        if paused > 0:
            self._refuse(c, RefuseCode.CODE_PAUSED, code_paused_message(paused))
            return
        if not self._take_code_token(now):
            self._refuse(c, RefuseCode.BUSY, "busy: too many code attempts; try again")
            return
        driver = StationCodePairing(random_bytes(SESSION_ID_LEN, SESSION_ID), self.station)
        try:
            reply = driver.receive_hello(hello, self.offers.open_codes(now))
        except PeerError:
            self._refuse(c, RefuseCode.MALFORMED, "malformed code hello")
            return
        c.driver = driver
        self._out.data.append((c.id, reply))
        c.last_sent = now

    def _take_code_token(self, now: float) -> bool:
        elapsed = max(0.0, now - self._tokens_at)
        self._tokens_at = now
        self._code_tokens = min(CODE_HELLO_BURST, self._code_tokens + elapsed * CODE_HELLOS_PER_S)
        if self._code_tokens < 1.0:
            return False
        self._code_tokens -= 1.0
        return True

    def _code_guess(
        self, c: Conn[StationCodePairing], driver: StationCodePairing, data: bytes, now: float
    ) -> None:
        if not self._unpaired():
            # Someone else paired meanwhile: this guess was never checked, and calling
            # it wrong would misinform a medic (and count as a guess it was not).
            self._refuse(c, RefuseCode.OFFER_USED, "offer already used")
            return
        paused = self.offers.paused_for(now)
        if paused > 0:
            self._refuse(c, RefuseCode.CODE_PAUSED, code_paused_message(paused))
            return
        try:
            _, attempt = driver.receive(data)
            guess = attempt.evaluate(lambda serial: self.offers.code_is_open(serial, now))
        except PeerError:
            self._refuse(c, RefuseCode.MALFORMED, "malformed code attempt")
            return
        if guess.accepted is not None:
            self._commit(c, driver.session_id, *guess.accepted, now)
            return
        if guess.evaluated:
            # A complete guess: its codes are burned and code pairing pauses.
            pause = self.offers.code_failed(guess.evaluated, now)
            current = self.offers.current
            code = (current.code or "") if current is not None else ""
            self._out.events.append(PairingFailed(WRONG_CODE_MESSAGE))
            self._out.events.append(CodePaused(pause, self.offers.backoff.streak, code))
        self._refuse(c, RefuseCode.WRONG_CODE, WRONG_CODE_MESSAGE)

    def _commit(
        self,
        c: Conn[StationCodePairing],
        session_id: bytes,
        reply: bytes,
        paired: PhonePaired,
        now: float,
    ) -> None:
        # Someone who holds an offer's secret (or a code) completed its first message:
        # every offer closes; the phone's first record confirms the pairing.
        self.offers.commit()
        self._fire(SessionEvent.AUTHENTICATED)
        self._pairing = (c.id, session_id)
        self._out.data.append((c.id, reply))
        c.last_sent = now
        self._open_records(c, paired.keys)
        c.paired = paired
        c.candidate_secret = paired.keys.next_secret
        c.handle(TransportEvent.KEYS_AGREED)

    # -- resume ------------------------------------------------------------------------

    def _resume(self, c: Conn[StationCodePairing], hello: Hello, now: float) -> None:
        if self.state is SessionState.ENDED:
            if self.ended_refusal is not None and hello.routing_id == self.session_id:
                self._send_raw_refusal(c, self.ended_refusal, "session ended")
            else:
                self._refuse(c, RefuseCode.SESSION_ENDED, "session ended")
            return
        if self.session_id is None or hello.routing_id != self.session_id:
            self._refuse(c, RefuseCode.SESSION_UNKNOWN, "unknown session")
            return
        ephemeral = StationResume.ephemeral_of(hello)
        if ephemeral in self._seen:
            self._refuse(c, RefuseCode.RESUME_REFUSED, "replayed resume")
            return
        self._seen.append(ephemeral)
        candidates = [self._secret, *self._pending]
        try:
            attempt = StationResume.open(hello, candidates)
        except (ResumeRefused, PeerError):
            self._refuse(c, RefuseCode.RESUME_REFUSED, "resume refused")
            return
        secret = candidates[attempt.index]
        gap = self.channel.gap(attempt.peer_cursor)
        if gap is not None:
            self._refuse_gap(c, gap, secret, ephemeral)
            return
        if attempt.peer_cursor >= self.channel.next_seq:
            self._refuse(c, RefuseCode.RESUME_REFUSED, "resume refused: cursor ahead of our sends")
            return
        reply, result = attempt.accept(self.channel.delivered)
        if attempt.index > 0:
            # The phone holds a pending secret, so it saw that accept: the confirmed
            # secret and every other pending one are dead from now on.
            self._secret = secret
            self._pending.clear()
        self._pending.append(result.keys.next_secret)
        while len(self._pending) > self.MAX_PENDING:
            self._pending.popleft()
        self._open_records(c, result.keys)
        c.candidate_secret = result.keys.next_secret
        c.peer_cursor = result.peer_cursor
        c.resumed = True
        c.handle(TransportEvent.KEYS_AGREED)
        self._out.data.append((c.id, reply))
        c.last_sent = now

    def _refuse_gap(
        self, c: Conn[StationCodePairing], gap: tuple[int, int], secret: bytes, binding: bytes
    ) -> None:
        assert self.session_id is not None
        reason = gap_message(*gap)
        self._out.events.append(ResumeGap(*gap))
        data = authenticated_refusal(
            RefuseCode.RESUME_GAP,
            reason,
            session_id=self.session_id,
            secrets=[secret],
            body=RefusalBody(gap=gap),
            binding=binding,
        )
        self._send_raw_refusal(c, data, "resume gap")

    def _confirmed(self, c: Conn[StationCodePairing], now: float) -> None:
        # The phone's first record proves it completed the handshake and holds the new
        # secret: commit it, forget the other pending ones, and make this the link.
        self._secret = c.candidate_secret
        self._pending.clear()
        for other in list(self._conns.values()):
            if other is not c and other.state is TransportState.OPEN:
                self._close_conn(other, "superseded")
        if c.paired is not None:
            assert self._pairing is not None and self._pairing[0] == c.id
            self.session_id = self._pairing[1]
            self._pairing = None
            self.fingerprint = c.paired.fingerprint
            self.phone_key = c.paired.phone_key
            self._out.events.append(Paired(self.session_id, self.station, self.fingerprint))
            c.paired = None
        # A cursor older than what this phone acknowledged since its hello is stale, not
        # a gap (that was checked on the hello): it has those, and said so.
        self._activate(c, max(c.peer_cursor, self.channel.acked), resumed=c.resumed, now=now)

    def _transport_gone(self, c: Conn[StationCodePairing], reason: str, now: float) -> None:
        if (
            self.state is SessionState.CONFIRMING
            and self._pairing is not None
            and self._pairing[0] == c.id
        ):
            # A pairing that authenticated but never completed: its offer is spent.
            self._fire(SessionEvent.ABANDONED)
            self._pairing = None
            self._out.events.append(PairingFailed(reason))
            fresh = self.offers.reopen(now)
            if fresh is not None:
                self._out.events.append(OfferRotated(fresh.offer_id, fresh.code, None))
        super()._transport_gone(c, reason, now)

    # -- logout ------------------------------------------------------------------------

    def _end(
        self, reason: str, event: SessionEvent, *, by_peer: bool, confirmed: bool = False
    ) -> None:
        if self.session_id is not None and self.ended_refusal is None:
            undelivered = seq_ranges(seq for seq, _ in self._queue.items())
            if len(undelivered) > MAX_RANGES:
                # Cannot happen: seqs are never renumbered, so the queue is one range.
                undelivered = ((undelivered[0][0], undelivered[-1][1]),)
            body = RefusalBody(reason=reason, undelivered=undelivered, receipt=self.ended_receipt)
            if len(body.encode()) > MAX_BODY:
                # The receipt holds the same ranges, signed: keep it, drop our copy.
                body = RefusalBody(reason=reason, receipt=self.ended_receipt)
            if len(body.encode()) > MAX_BODY:
                body = RefusalBody(reason=reason, undelivered=undelivered)
            self.ended_refusal = authenticated_refusal(
                RefuseCode.SESSION_ENDED,
                "session ended",
                session_id=self.session_id,
                secrets=[self._secret, *self._pending],
                body=body,
            )
        super()._end(reason, event, by_peer=by_peer, confirmed=confirmed)
        # Nothing may resume now: the secrets go; only their MACs stay, in the refusal.
        self._secret = b""
        self._pending.clear()
