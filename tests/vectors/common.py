"""What the vector scenarios share: the fixed times, names and keys, and checks."""

from __future__ import annotations

from nacl.signing import SigningKey

from tests.vectors.fixed import JSON, hx, label_bytes
from tunnel.events import Event
from tunnel.flights import PROLOGUE, Hello, MessageType
from tunnel.identity import PhoneIdentity
from tunnel.settings import Settings

T0 = 1_800_000_000.0  # the scenarios' clock starts here (unix seconds)
STATION_NAME = "Clinic Ä-1"  # not ASCII: the URI escapes it, ACCEPT carries UTF-8
ADDRESSES = (("192.0.2.10", 8765), ("2001:db8::a", 8765))
OFFER_TTL = 30.0
PHONE_SETTINGS = Settings(auto_ack=False)  # the phone acks after it applied (durably)
STATION_SETTINGS = Settings()


class VectorError(AssertionError):
    """The real code and the written-out computation disagree: the vectors are wrong."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise VectorError(what)


def phone_identity() -> PhoneIdentity:
    return PhoneIdentity.from_seed(label_bytes("phone identity: Ed25519 seed", 32))


def identity_json(identity: PhoneIdentity) -> JSON:
    return {
        "seed": hx(identity.seed),
        "public_key": hx(identity.public_key),
        "fingerprint": identity.fingerprint,
    }


def receipt_signing_key() -> SigningKey:
    return SigningKey(label_bytes("station: the session's receipt key seed", 32))


def prologue(kind: MessageType, routing_id: bytes) -> bytes:
    check(PROLOGUE == b"fieldstation/2\x00", "the prologue prefix moved")
    return Hello(kind, 2, routing_id, b"").prologue


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]
