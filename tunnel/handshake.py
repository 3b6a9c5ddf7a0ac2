"""The handshake flights that open a transport, before any record flows.

Every pre-session message starts with one type byte. The phone's first message on a
transport (a *hello*) also carries, in clear, the protocol version and the id the
station needs to route it to the right worker: an offer id, or a session id. Those
clear bytes go into the Noise prologue, so an attacker who rewrites them breaks the
handshake.

Flights (phone = initiator, station = responder)::

    pair by URI    PAIR_URI(v, offer_id, NKpsk0 m1[identity])  ->
                   <-  ACCEPT(NKpsk0 m2[session_id, station name])
    pair by code   PAIR_CODE(v, SPAKE2 A)  ->
                   <-  CODE_REPLY(SPAKE2 B)
                   CODE_NOISE(NNpsk0 m1[identity], psk = SPAKE2 key)  ->
                   <-  ACCEPT(NNpsk0 m2[session_id, station name])
    resume         RESUME(v, session_id, NNpsk0 m1[cursor], psk = resumption secret)  ->
                   <-  ACCEPT(NNpsk0 m2[cursor])
    refusal        <-  REFUSE(code, reason)   (clear text; the transport closes after it)

The drivers here are pure: each takes the peer's message and returns the next one.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum

from tunnel.errors import (
    HandshakeFailed,
    MalformedRecord,
    PairingError,
    ResumeRefused,
    UsageError,
)
from tunnel.identity import PhoneIdentity, verify_handshake
from tunnel.noise import CipherState, HandshakeState, KeyPair
from tunnel.pake import CodeExchange

WIRE_VERSION = 1
OFFER_ID_LEN = 8
SESSION_ID_LEN = 16
SECRET_LEN = 32
MAX_HANDSHAKE_MESSAGE = 1024

PAIR_URI_PROTOCOL = "Noise_NKpsk0_25519_ChaChaPoly_BLAKE2b"
PSK_PROTOCOL = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b"
_PROLOGUE = b"fieldstation/1\x00"
_RESUME_PERSON = b"fs-resume-next"


class MessageType(IntEnum):
    PAIR_URI = 0x01
    PAIR_CODE = 0x02
    RESUME = 0x03
    CODE_NOISE = 0x04
    CODE_REPLY = 0x10
    ACCEPT = 0x11
    REFUSE = 0x7F


class RefuseCode(IntEnum):
    """Why a station refused a transport before any session keys existed."""

    MALFORMED = 1
    VERSION = 2
    OFFER_UNKNOWN = 3
    OFFER_EXPIRED = 4
    OFFER_USED = 5
    HANDSHAKE_FAILED = 6
    SESSION_UNKNOWN = 7
    RESUME_REFUSED = 8
    SESSION_ENDED = 9
    BUSY = 10


@dataclass(frozen=True, slots=True)
class Hello:
    """The clear part of a phone's first message: enough to route it, nothing more."""

    kind: MessageType
    version: int
    routing_id: bytes  # offer id (URI), session id (resume), or b"" (code)
    body: bytes

    @property
    def prologue(self) -> bytes:
        return _PROLOGUE + bytes([self.kind, self.version]) + self.routing_id


_ROUTING_LEN = {
    MessageType.PAIR_URI: OFFER_ID_LEN,
    MessageType.PAIR_CODE: 0,
    MessageType.RESUME: SESSION_ID_LEN,
}


def encode_hello(kind: MessageType, routing_id: bytes, body: bytes) -> bytes:
    if kind not in _ROUTING_LEN or len(routing_id) != _ROUTING_LEN[kind]:
        raise UsageError("not a hello kind, or a routing id of the wrong length")
    return bytes([kind, WIRE_VERSION]) + routing_id + body


def parse_hello(data: bytes) -> Hello:
    """Parse a phone's first message. Used by the supervisor, which holds no keys."""
    if len(data) > MAX_HANDSHAKE_MESSAGE:
        raise MalformedRecord("handshake message too large")
    if len(data) < 2:
        raise MalformedRecord("handshake message too short")
    try:
        kind = MessageType(data[0])
    except ValueError:
        raise MalformedRecord("not a hello") from None
    if kind not in _ROUTING_LEN:
        raise MalformedRecord("not a hello")
    version = data[1]
    n = _ROUTING_LEN[kind]
    if len(data) < 2 + n + 1:
        raise MalformedRecord("hello too short")
    return Hello(kind, version, bytes(data[2 : 2 + n]), bytes(data[2 + n :]))


def encode_message(kind: MessageType, body: bytes) -> bytes:
    return bytes([kind]) + body


def parse_message(data: bytes, expected: MessageType) -> bytes:
    """The body of a follow-up handshake message of the expected type.

    A REFUSE instead raises ``Refused`` so the caller learns the station's reason.
    """
    if len(data) > MAX_HANDSHAKE_MESSAGE:
        raise MalformedRecord("handshake message too large")
    if not data:
        raise MalformedRecord("empty handshake message")
    if data[0] == MessageType.REFUSE:
        raise parse_refusal(data)
    if data[0] != expected:
        raise MalformedRecord("unexpected handshake message")
    return bytes(data[1:])


class Refused(PairingError):
    """The station refused this transport (clear text, so only advisory)."""

    def __init__(self, code: RefuseCode, reason: str) -> None:
        super().__init__(f"station refused: {reason}")
        self.code = code
        self.reason = reason


def encode_refusal(code: RefuseCode, reason: str) -> bytes:
    text = reason.encode("ascii", "replace")[:120]
    return bytes([MessageType.REFUSE, code]) + text


def parse_refusal(data: bytes) -> Refused:
    if len(data) < 2 or data[0] != MessageType.REFUSE:
        raise MalformedRecord("not a refusal")
    try:
        code = RefuseCode(data[1])
    except ValueError:
        code = RefuseCode.MALFORMED
    return Refused(code, data[2:122].decode("ascii", "replace"))


# -- payloads --------------------------------------------------------------------------

_CURSOR = struct.Struct(">Q")
_IDENTITY_LEN = 32 + 64


def _identity_payload(identity: PhoneIdentity, handshake_hash: bytes) -> bytes:
    return identity.public_key + identity.sign_handshake(handshake_hash)


def _read_identity(payload: bytes, handshake_hash: bytes) -> tuple[bytes, str]:
    if len(payload) != _IDENTITY_LEN:
        raise HandshakeFailed("identity payload of the wrong size")
    public_key, signature = payload[:32], payload[32:]
    return public_key, verify_handshake(public_key, handshake_hash, signature)


def _accept_payload(session_id: bytes, station: str) -> bytes:
    return session_id + station.encode("utf-8")[:64]


def _read_accept(payload: bytes) -> tuple[bytes, str]:
    if len(payload) < SESSION_ID_LEN:
        raise HandshakeFailed("accept payload too short")
    try:
        name = payload[SESSION_ID_LEN:].decode("utf-8")
    except UnicodeDecodeError:
        raise HandshakeFailed("accept payload not UTF-8") from None
    return payload[:SESSION_ID_LEN], name


def _read_cursor(payload: bytes) -> int:
    if len(payload) != _CURSOR.size:
        raise HandshakeFailed("resume payload of the wrong size")
    (cursor,) = _CURSOR.unpack(payload)
    return int(cursor)


def next_resumption_secret(extra_secret: bytes) -> bytes:
    """The one-use secret for the next resume, from this handshake's extra Noise secret.

    Each handshake (pairing or resume) yields a fresh one, so every resume ratchets it.
    """
    return hashlib.blake2b(extra_secret, digest_size=SECRET_LEN, person=_RESUME_PERSON).digest()


@dataclass(frozen=True, slots=True)
class Keys:
    """What a completed handshake leaves behind for the record layer and the next resume."""

    send: CipherState
    receive: CipherState
    handshake_hash: bytes
    next_secret: bytes


def _keys(hs: HandshakeState, *, initiator: bool) -> Keys:
    i2r, r2i = hs.split()
    send, receive = (i2r, r2i) if initiator else (r2i, i2r)
    return Keys(send, receive, hs.handshake_hash, next_resumption_secret(hs.extra_secret()))


def _write_identity_message(hs: HandshakeState, identity: PhoneIdentity) -> bytes:
    # The phone signs the handshake hash as it stands when its payload is encrypted:
    # it already covers the prologue, the psk and the phone's fresh ephemeral key.
    return hs.write_message(lambda h: _identity_payload(identity, h))


# -- phone side ------------------------------------------------------------------------


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
        body = _write_identity_message(self._hs, self._identity)
        return encode_hello(MessageType.PAIR_URI, self._offer_id, body)

    def receive(self, data: bytes) -> tuple[bytes | None, PairingResult | None]:
        if self._hs is None:
            raise UsageError("first_message() not called")
        payload = self._hs.read_message(parse_message(data, MessageType.ACCEPT))
        session_id, station = _read_accept(payload)
        return None, PairingResult(_keys(self._hs, initiator=True), session_id, station)


class PhonePairByCode:
    """Phone side of pairing with a short code: SPAKE2, then NNpsk0 keyed by its key."""

    def __init__(self, identity: PhoneIdentity, code: str) -> None:
        self._identity = identity
        self._exchange = CodeExchange(code, initiator=True)
        self._hs: HandshakeState | None = None
        self._prologue = b""

    def first_message(self) -> bytes:
        body = self._exchange.start()
        self._prologue = Hello(MessageType.PAIR_CODE, WIRE_VERSION, b"", body).prologue + body
        return encode_hello(MessageType.PAIR_CODE, b"", body)

    def receive(self, data: bytes) -> tuple[bytes | None, PairingResult | None]:
        if self._hs is None:
            reply = parse_message(data, MessageType.CODE_REPLY)
            psk = self._exchange.finish(reply)
            self._hs = HandshakeState(
                PSK_PROTOCOL, initiator=True, prologue=self._prologue + reply, psks=[psk]
            )
            body = _write_identity_message(self._hs, self._identity)
            return encode_message(MessageType.CODE_NOISE, body), None
        payload = self._hs.read_message(parse_message(data, MessageType.ACCEPT))
        session_id, station = _read_accept(payload)
        return None, PairingResult(_keys(self._hs, initiator=True), session_id, station)


@dataclass(frozen=True, slots=True)
class ResumeResult:
    keys: Keys
    peer_cursor: int


class PhoneResume:
    """Phone side of a resume: NNpsk0 keyed by the one-use resumption secret."""

    def __init__(self, session_id: bytes, secret: bytes, cursor: int) -> None:
        self._session_id = session_id
        self._secret = secret
        self._cursor = cursor
        self._hs: HandshakeState | None = None

    def first_message(self) -> bytes:
        hello = Hello(MessageType.RESUME, WIRE_VERSION, self._session_id, b"")
        self._hs = HandshakeState(
            PSK_PROTOCOL, initiator=True, prologue=hello.prologue, psks=[self._secret]
        )
        body = self._hs.write_message(_CURSOR.pack(self._cursor))
        return encode_hello(MessageType.RESUME, self._session_id, body)

    def receive(self, data: bytes) -> tuple[bytes | None, ResumeResult | None]:
        if self._hs is None:
            raise UsageError("first_message() not called")
        payload = self._hs.read_message(parse_message(data, MessageType.ACCEPT))
        return None, ResumeResult(_keys(self._hs, initiator=True), _read_cursor(payload))


# -- station side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StationOffer:
    """The secrets of the one pairing offer a station worker holds open."""

    offer_id: bytes
    keypair: KeyPair
    psk: bytes  # from the URI's one-time secret
    code: str  # the short code


@dataclass(frozen=True, slots=True)
class PhonePaired:
    keys: Keys
    phone_key: bytes
    fingerprint: str


class StationPairing:
    """Station side of pairing: accepts exactly one attempt, by URI or by code."""

    def __init__(self, offer: StationOffer, session_id: bytes, station: str) -> None:
        self._offer = offer
        self._session_id = session_id
        self._station = station
        self._exchange: CodeExchange | None = None
        self._prologue = b""
        self._psk = b""

    @property
    def session_id(self) -> bytes:
        return self._session_id

    def receive_hello(self, hello: Hello) -> tuple[bytes, PhonePaired | None]:
        if hello.kind is MessageType.PAIR_URI:
            if hello.routing_id != self._offer.offer_id:
                raise PairingError("unknown offer")
            hs = HandshakeState(
                PAIR_URI_PROTOCOL,
                initiator=False,
                prologue=hello.prologue,
                s=self._offer.keypair,
                psks=[self._offer.psk],
            )
            return self._accept(hs, hello.body)
        if hello.kind is MessageType.PAIR_CODE:
            self._exchange = CodeExchange(self._offer.code, initiator=False)
            reply = self._exchange.start()
            psk = self._exchange.finish(hello.body)
            self._prologue = hello.prologue + hello.body + reply
            self._psk = psk
            return encode_message(MessageType.CODE_REPLY, reply), None
        raise UsageError("not a pairing hello")

    def receive(self, data: bytes) -> tuple[bytes, PhonePaired]:
        if self._exchange is None:
            raise MalformedRecord("unexpected handshake message")
        body = parse_message(data, MessageType.CODE_NOISE)
        hs = HandshakeState(
            PSK_PROTOCOL, initiator=False, prologue=self._prologue, psks=[self._psk]
        )
        reply, paired = self._accept(hs, body)
        assert paired is not None
        return reply, paired

    def _accept(self, hs: HandshakeState, body: bytes) -> tuple[bytes, PhonePaired]:
        # The hash the phone signed is the one before its payload was decrypted.
        signed_hash: list[bytes] = []
        payload = hs.read_message(body, observe_hash=signed_hash.append)
        phone_key, fingerprint = _read_identity(payload, signed_hash[0])
        reply = hs.write_message(_accept_payload(self._session_id, self._station))
        return encode_message(MessageType.ACCEPT, reply), PhonePaired(
            _keys(hs, initiator=False), phone_key, fingerprint
        )


class StationResume:
    """Station side of a resume. Tries the confirmed secret, then the pending one."""

    def __init__(self, secrets: list[bytes], cursor: int) -> None:
        self._secrets = secrets
        self._cursor = cursor

    def receive_hello(self, hello: Hello) -> tuple[bytes, ResumeResult, int]:
        """Return the reply, the result and the index of the secret that worked."""
        for index, secret in enumerate(self._secrets):
            hs = HandshakeState(
                PSK_PROTOCOL, initiator=False, prologue=hello.prologue, psks=[secret]
            )
            try:
                payload = hs.read_message(hello.body)
            except HandshakeFailed:
                continue
            peer_cursor = _read_cursor(payload)
            reply = hs.write_message(_CURSOR.pack(self._cursor))
            result = ResumeResult(_keys(hs, initiator=False), peer_cursor)
            return encode_message(MessageType.ACCEPT, reply), result, index
        raise ResumeRefused("stale or unknown resumption secret")

    @staticmethod
    def ephemeral_of(hello: Hello) -> bytes:
        """The phone's ephemeral key in a resume hello: a replay repeats it exactly."""
        return hello.body[:32]
