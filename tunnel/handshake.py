"""The handshake flights that open a transport, before any record flows: phone side.

Flights (phone = initiator, station = responder; see docs/PROTOCOL.md for the bytes)::

    pair by URI    PAIR_URI(v, offer_id, NKpsk0 m1[identity])  ->
                   <-  ACCEPT(NKpsk0 m2[session_id, station name])
    pair by code   PAIR_CODE(v, slots x SPAKE2 A)  ->
                   <-  CODE_REPLY(one SPAKE2 B per open code)
                   CODE_NOISE(per slot: NNpsk0 m1[identity], psk = that slot's key)  ->
                   <-  ACCEPT(slot, NNpsk0 m2[session_id, station name])
    resume         RESUME(v, session_id, NNpsk0 m1[cursor], psk = resumption secret)  ->
                   <-  ACCEPT(NNpsk0 m2[cursor])
    refusal        <-  REFUSE(code, reason, body, MACs)   (the transport closes after it)

The drivers here are pure: each takes the peer's message and returns the next one. The
station's live in ``tunnel.station_handshake``; the clear framing in ``tunnel.flights``
and ``tunnel.refusal``; the payloads in ``tunnel.payloads``. Their names are re-exported
here, where callers have always found them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunnel.errors import HandshakeFailed, MalformedRecord, UsageError
from tunnel.flights import (
    MAX_HANDSHAKE_MESSAGE,
    OFFER_ID_LEN,
    PAIR_URI_PROTOCOL,
    PSK_PROTOCOL,
    SECRET_LEN,
    SESSION_ID_LEN,
    WIRE_VERSION,
    Hello,
    MessageType,
    encode_hello,
    encode_message,
    parse_hello,
)
from tunnel.identity import PhoneIdentity
from tunnel.noise import HandshakeState
from tunnel.pake import CodeExchange
from tunnel.payloads import (
    CODE_SLOTS,
    CURSOR,
    Keys,
    code_prologue,
    encode_code_hello,
    encode_slots,
    keys_of,
    next_resumption_secret,
    parse_message,
    parse_slots,
    read_accept,
    read_cursor,
    write_identity_message,
)
from tunnel.refusal import (
    RefuseCode,
    Refused,
    authenticated_refusal,
    encode_refusal,
    parse_refusal,
)
from tunnel.station_handshake import (
    PhonePaired,
    ResumeResult,
    StationCodePairing,
    StationOffer,
    StationResume,
    StationUriPairing,
)


@dataclass(frozen=True, slots=True)
class PairingResult:
    keys: Keys
    session_id: bytes
    station: str


class PhonePairByUri:
    """Phone side of pairing with the offer from a ``fieldstation://`` URI."""

    def __init__(
        self, identity: PhoneIdentity, offer_id: bytes, offer_key: bytes, psk: bytes
    ) -> None:
        self._identity = identity
        self._offer_id = offer_id
        self._hs: HandshakeState | None = None
        self._offer_key = offer_key
        self._psk = psk

    def first_message(self) -> bytes:
        hello = Hello(MessageType.PAIR_URI, WIRE_VERSION, self._offer_id, b"")
        self._hs = HandshakeState(
            PAIR_URI_PROTOCOL,
            initiator=True,
            prologue=hello.prologue,
            rs=self._offer_key,
            psks=[self._psk],
        )
        body = write_identity_message(self._hs, self._identity)
        return encode_hello(MessageType.PAIR_URI, self._offer_id, body)

    def receive(self, data: bytes) -> tuple[bytes | None, PairingResult | None]:
        if self._hs is None:
            raise UsageError("first_message() not called")
        payload = self._hs.read_message(parse_message(data, MessageType.ACCEPT))
        session_id, station = read_accept(payload)
        return None, PairingResult(keys_of(self._hs, initiator=True), session_id, station)


class PhonePairByCode:
    """Phone side of pairing with a short code: one SPAKE2 exchange per code slot, then
    NNpsk0 keyed by each slot's key. Only the slot whose code matches can complete."""

    def __init__(self, identity: PhoneIdentity, code: str) -> None:
        self._identity = identity
        self._exchanges = [CodeExchange(code, initiator=True) for _ in range(CODE_SLOTS)]
        self._messages: list[bytes] = []
        self._hello_prologue = b""
        self._hs: dict[int, HandshakeState] = {}

    def first_message(self) -> bytes:
        self._messages = [exchange.start() for exchange in self._exchanges]
        body = encode_code_hello(self._messages)
        self._hello_prologue = Hello(MessageType.PAIR_CODE, WIRE_VERSION, b"", body).prologue
        return encode_hello(MessageType.PAIR_CODE, b"", body)

    def receive(self, data: bytes) -> tuple[bytes | None, PairingResult | None]:
        if not self._messages:
            raise UsageError("first_message() not called")
        if not self._hs:
            noise: list[tuple[int, bytes]] = []
            for slot, reply in parse_slots(
                parse_message(data, MessageType.CODE_REPLY), sized=False
            ):
                psk = self._exchanges[slot].finish(reply)
                prologue = code_prologue(self._hello_prologue, slot, self._messages[slot], reply)
                hs = HandshakeState(PSK_PROTOCOL, initiator=True, prologue=prologue, psks=[psk])
                self._hs[slot] = hs
                noise.append((slot, write_identity_message(hs, self._identity)))
            return encode_message(MessageType.CODE_NOISE, encode_slots(noise, sized=True)), None
        body = parse_message(data, MessageType.ACCEPT)
        chosen = self._hs.get(body[0]) if body else None
        if chosen is None:
            raise MalformedRecord("accept for a slot we did not offer")
        session_id, station = read_accept(chosen.read_message(body[1:]))
        return None, PairingResult(keys_of(chosen, initiator=True), session_id, station)


class PhoneResume:
    """Phone side of a resume: NNpsk0 keyed by the one-use resumption secret.

    A refusal is checked against the same secret: only then may it end the session."""

    def __init__(self, session_id: bytes, secret: bytes, cursor: int) -> None:
        self._session_id = session_id
        self._secret = secret
        self._cursor = cursor
        self._hs: HandshakeState | None = None
        self._ephemeral = b""

    def first_message(self) -> bytes:
        hello = Hello(MessageType.RESUME, WIRE_VERSION, self._session_id, b"")
        self._hs = HandshakeState(
            PSK_PROTOCOL, initiator=True, prologue=hello.prologue, psks=[self._secret]
        )
        body = self._hs.write_message(CURSOR.pack(self._cursor))
        self._ephemeral = body[:32]
        return encode_hello(MessageType.RESUME, self._session_id, body)

    def receive(self, data: bytes) -> tuple[bytes | None, ResumeResult | None]:
        if self._hs is None:
            raise UsageError("first_message() not called")
        try:
            body = parse_message(data, MessageType.ACCEPT)
        except Refused as refusal:
            refusal.verify(self._session_id, self._secret, self._ephemeral)
            raise
        payload = self._hs.read_message(body)
        return None, ResumeResult(keys_of(self._hs, initiator=True), read_cursor(payload))


__all__ = [
    "CODE_SLOTS",
    "MAX_HANDSHAKE_MESSAGE",
    "OFFER_ID_LEN",
    "PAIR_URI_PROTOCOL",
    "PSK_PROTOCOL",
    "SECRET_LEN",
    "SESSION_ID_LEN",
    "WIRE_VERSION",
    "HandshakeFailed",
    "Hello",
    "Keys",
    "MessageType",
    "PairingResult",
    "PhonePairByCode",
    "PhonePairByUri",
    "PhonePaired",
    "PhoneResume",
    "RefuseCode",
    "Refused",
    "ResumeResult",
    "StationCodePairing",
    "StationOffer",
    "StationResume",
    "StationUriPairing",
    "authenticated_refusal",
    "encode_hello",
    "encode_message",
    "encode_refusal",
    "next_resumption_secret",
    "parse_hello",
    "parse_message",
    "parse_refusal",
]
