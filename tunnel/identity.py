"""The phone's identity: an Ed25519 key that signs each handshake it makes.

The signature covers the handshake hash, so it proves the phone took part in *this*
handshake and cannot be replayed into another; the station learns a stable,
human-comparable fingerprint.
"""

from __future__ import annotations

import base64
import hashlib

from nacl.exceptions import BadSignatureError
from nacl.exceptions import ValueError as NaclValueError
from nacl.signing import SigningKey, VerifyKey

from tunnel.errors import HandshakeFailed, UsageError

_DOMAIN = b"fieldstation identity v1\x00"
SEED_LEN = 32


def fingerprint(public_key: bytes) -> str:
    """BLAKE2b-256 of the key, base32, 20 characters in groups of four."""
    digest = hashlib.blake2b(public_key, digest_size=32, person=b"fs-fingerprint").digest()
    text = base64.b32encode(digest).decode("ascii").lower()[:20]
    return "-".join(text[i : i + 4] for i in range(0, 20, 4))


class PhoneIdentity:
    __slots__ = ("_key",)

    def __init__(self, key: SigningKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> PhoneIdentity:
        return cls(SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> PhoneIdentity:
        if len(seed) != SEED_LEN:
            raise UsageError("an Ed25519 seed is 32 bytes")
        return cls(SigningKey(seed))

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign_handshake(self, handshake_hash: bytes) -> bytes:
        return bytes(self._key.sign(_DOMAIN + handshake_hash).signature)

    def __repr__(self) -> str:
        return f"PhoneIdentity({self.fingerprint})"


def verify_handshake(public_key: bytes, handshake_hash: bytes, signature: bytes) -> str:
    """Check the phone's signature over the handshake hash; return its fingerprint."""
    try:
        VerifyKey(public_key).verify(_DOMAIN + handshake_hash, signature)
    except (BadSignatureError, NaclValueError, ValueError, TypeError):
        raise HandshakeFailed("phone identity signature does not verify") from None
    return fingerprint(public_key)
