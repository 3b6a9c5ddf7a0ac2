"""The clear framing of the handshake flights: message types, the hello, lengths.

Every message before the session keys exist starts with one type byte. The phone's
first message on a transport (a *hello*) also carries, in clear, the wire version and
the id the station needs to route it to the right worker: an offer id, or a session id
(a code hello carries none). Those clear bytes go into the Noise prologue, so an
attacker who rewrites them breaks the handshake.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from tunnel.errors import MalformedRecord, UsageError

# Version 2: offers spent only by whoever authenticates, code slots, refusals that can
# carry MACs, named resume gaps. Nothing of version 1 is accepted.
WIRE_VERSION = 2
OFFER_ID_LEN = 8
SESSION_ID_LEN = 16
SECRET_LEN = 32
MAX_HANDSHAKE_MESSAGE = 1024

PAIR_URI_PROTOCOL = "Noise_NKpsk0_25519_ChaChaPoly_BLAKE2b"
PSK_PROTOCOL = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b"
PROLOGUE = b"fieldstation/2\x00"


class MessageType(IntEnum):
    PAIR_URI = 0x01
    PAIR_CODE = 0x02
    RESUME = 0x03
    CODE_NOISE = 0x04
    CODE_REPLY = 0x10
    ACCEPT = 0x11
    REFUSE = 0x7F


@dataclass(frozen=True, slots=True)
class Hello:
    """The clear part of a phone's first message: enough to route it, nothing more."""

    kind: MessageType
    version: int
    routing_id: bytes  # offer id (URI), session id (resume), or b"" (code)
    body: bytes

    @property
    def prologue(self) -> bytes:
        return PROLOGUE + bytes([self.kind, self.version]) + self.routing_id


ROUTING_LEN = {
    MessageType.PAIR_URI: OFFER_ID_LEN,
    MessageType.PAIR_CODE: 0,
    MessageType.RESUME: SESSION_ID_LEN,
}


def encode_hello(kind: MessageType, routing_id: bytes, body: bytes) -> bytes:
    if kind not in ROUTING_LEN or len(routing_id) != ROUTING_LEN[kind]:
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
    if kind not in ROUTING_LEN:
        raise MalformedRecord("not a hello")
    version = data[1]
    n = ROUTING_LEN[kind]
    if len(data) < 2 + n + 1:
        raise MalformedRecord("hello too short")
    return Hello(kind, version, bytes(data[2 : 2 + n]), bytes(data[2 + n :]))


def encode_message(kind: MessageType, body: bytes) -> bytes:
    return bytes([kind]) + body
