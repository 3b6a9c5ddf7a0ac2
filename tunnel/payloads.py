"""What the handshake messages carry: payloads, code slots, and the keys left behind.

Shared by the phone's drivers (``tunnel.handshake``) and the station's
(``tunnel.station_handshake``), so both ends read the same bytes the same way.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from tunnel.errors import HandshakeFailed, MalformedRecord, UsageError
from tunnel.flights import MAX_HANDSHAKE_MESSAGE, SECRET_LEN, SESSION_ID_LEN, MessageType
from tunnel.identity import PhoneIdentity, verify_handshake
from tunnel.noise import CipherState, HandshakeState
from tunnel.pake import MESSAGE_LEN as PAKE_LEN
from tunnel.refusal import parse_refusal

CURSOR = struct.Struct(">Q")
IDENTITY_LEN = 32 + 64
# A code attempt carries one SPAKE2 exchange per code the station may hold open: the
# current one and the previous one during its grace after a rotation.
CODE_SLOTS = 2
_RESUME_PERSON = b"fs-resume-next"
_U16 = struct.Struct(">H")


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


def identity_payload(identity: PhoneIdentity, handshake_hash: bytes) -> bytes:
    return identity.public_key + identity.sign_handshake(handshake_hash)


def read_identity(payload: bytes, handshake_hash: bytes) -> tuple[bytes, str]:
    if len(payload) != IDENTITY_LEN:
        raise HandshakeFailed("identity payload of the wrong size")
    public_key, signature = payload[:32], payload[32:]
    return public_key, verify_handshake(public_key, handshake_hash, signature)


def write_identity_message(hs: HandshakeState, identity: PhoneIdentity) -> bytes:
    # The phone signs the handshake hash as it stands when its payload is encrypted:
    # it already covers the prologue, the psk and the phone's fresh ephemeral key.
    return hs.write_message(lambda h: identity_payload(identity, h))


MAX_ACCEPT_NAME = 64  # bytes of the station's name in ACCEPT


def accept_payload(session_id: bytes, station: str) -> bytes:
    # Cut at a character boundary: a name cut inside a character is not UTF-8, and the
    # phone would fail a pairing whose offer is already spent.
    name = station.encode("utf-8")[:MAX_ACCEPT_NAME].decode("utf-8", "ignore")
    return session_id + name.encode("utf-8")


def read_accept(payload: bytes) -> tuple[bytes, str]:
    if len(payload) < SESSION_ID_LEN:
        raise HandshakeFailed("accept payload too short")
    try:
        name = payload[SESSION_ID_LEN:].decode("utf-8")
    except UnicodeDecodeError:
        raise HandshakeFailed("accept payload not UTF-8") from None
    return payload[:SESSION_ID_LEN], name


def read_cursor(payload: bytes) -> int:
    if len(payload) != CURSOR.size:
        raise HandshakeFailed("resume payload of the wrong size")
    (cursor,) = CURSOR.unpack(payload)
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


def keys_of(hs: HandshakeState, *, initiator: bool) -> Keys:
    i2r, r2i = hs.split()
    send, receive = (i2r, r2i) if initiator else (r2i, i2r)
    return Keys(send, receive, hs.handshake_hash, next_resumption_secret(hs.extra_secret()))


# -- code slots ----------------------------------------------------------------------
#
#   PAIR_CODE body   count (u8, 1..2) · count x SPAKE2 message A (33)
#   CODE_REPLY body  count (u8, 1..2) · count x (slot (u8) · SPAKE2 message B (33))
#   CODE_NOISE body  count (u8, 1..2) · count x (slot (u8) · length (u16) · NNpsk0 m1)
#   ACCEPT (code)    slot (u8) · NNpsk0 m2
#
# Slot i of the reply is the station's i-th open code (0: current, 1: previous).


def code_prologue(hello_prologue: bytes, slot: int, a: bytes, b: bytes) -> bytes:
    """Each slot's Noise handshake is bound to its own SPAKE2 transcript."""
    return hello_prologue + bytes([slot]) + a + b


def encode_code_hello(messages: list[bytes]) -> bytes:
    if not 1 <= len(messages) <= CODE_SLOTS or any(len(m) != PAKE_LEN for m in messages):
        raise UsageError("a code hello has 1-2 SPAKE2 messages")
    return bytes([len(messages)]) + b"".join(messages)


def parse_code_hello(body: bytes) -> list[bytes]:
    if not body or not 1 <= body[0] <= CODE_SLOTS or len(body) != 1 + body[0] * PAKE_LEN:
        raise MalformedRecord("malformed code hello")
    return [body[1 + i * PAKE_LEN : 1 + (i + 1) * PAKE_LEN] for i in range(body[0])]


def encode_slots(items: list[tuple[int, bytes]], *, sized: bool) -> bytes:
    out = bytearray([len(items)])
    for slot, data in items:
        out.append(slot)
        if sized:
            out += _U16.pack(len(data))
        out += data
    return bytes(out)


def parse_slots(body: bytes, *, sized: bool) -> list[tuple[int, bytes]]:
    """CODE_REPLY (fixed 33-byte items) or CODE_NOISE (sized items), slots distinct."""
    if not body or not 1 <= body[0] <= CODE_SLOTS:
        raise MalformedRecord("malformed code slots")
    items: list[tuple[int, bytes]] = []
    at = 1
    for _ in range(body[0]):
        if at + (3 if sized else 1) > len(body):
            raise MalformedRecord("malformed code slots")
        slot = body[at]
        if sized:
            (length,) = _U16.unpack_from(body, at + 1)
            at += 3
        else:
            length = PAKE_LEN
            at += 1
        data = body[at : at + length]
        at += length
        if len(data) != length or slot >= CODE_SLOTS or any(s == slot for s, _ in items):
            raise MalformedRecord("malformed code slots")
        items.append((slot, data))
    if at != len(body):
        raise MalformedRecord("malformed code slots")
    return items
