"""Short-code pairing: SPAKE2 (the ``spake2`` package), whose key becomes the Noise psk.

A code is 8 random digits written "4821-0937"; that text, dash included, is the SPAKE2
password (the phone is side A, the station side B). SPAKE2 gives each side a 32-byte
key that matches only if the codes matched, and a passive eavesdropper learns nothing
that helps an offline guess; an active attacker gets one online guess per open code
per attempt (a wrong guess burns the code and pauses code pairing: see
``tunnel.open_offers``). The psk is ``BLAKE2b-256(key, person="fs-code-psk")``; key
confirmation happens inside the Noise ``NNpsk0`` handshake that follows. Every
parameter an implementation in another language needs is in docs/PROTOCOL.md.
"""

from __future__ import annotations

import hashlib
import secrets

from tunnel.entropy import SPAKE2, random_bytes
from tunnel.errors import HandshakeFailed, OfferFormatError, UsageError

CODE_DIGITS = 8
MESSAGE_LEN = 33  # one side byte + an Ed25519 group element
_ID_PHONE = b"fieldstation-phone"
_ID_STATION = b"fieldstation-station"
_PSK_PERSON = b"fs-code-psk"


def generate_code() -> str:
    digits = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
    return f"{digits[:4]}-{digits[4:]}"


def normalize_code(text: str) -> str:
    """The canonical form of a typed code ("1234 5678", "12345678" -> "1234-5678")."""
    digits = "".join(ch for ch in text if ch not in " -")
    if not digits.isascii() or not digits.isdigit():
        raise OfferFormatError("a pairing code is digits only (spaces and dashes allowed)")
    if len(digits) != CODE_DIGITS:
        raise OfferFormatError(f"a pairing code has {CODE_DIGITS} digits, not {len(digits)}")
    return f"{digits[:4]}-{digits[4:]}"


def _entropy(size: int) -> bytes:
    return random_bytes(size, SPAKE2)


class CodeExchange:
    """One side of SPAKE2 over a short code. The phone is side A, the station side B."""

    def __init__(self, code: str, *, initiator: bool) -> None:
        # Imported here, not at the top: spake2 loads ``cryptography`` (~12 MB resident),
        # which a process that never pairs by code (the supervisor, a worker paired by
        # QR) has no use for.
        from spake2 import SPAKE2_A, SPAKE2_B

        password = normalize_code(code).encode("ascii")
        side = SPAKE2_A if initiator else SPAKE2_B
        self._spake = side(password, idA=_ID_PHONE, idB=_ID_STATION, entropy_f=_entropy)
        self._started = False
        self._finished = False

    def start(self) -> bytes:
        if self._started:
            raise UsageError("start() may be called once")
        self._started = True
        return bytes(self._spake.start())

    def finish(self, peer_message: bytes) -> bytes:
        """The 32-byte Noise psk; HandshakeFailed when the peer's message is malformed."""
        if not self._started or self._finished:
            raise UsageError("finish() needs start() first and may be called once")
        self._finished = True
        if len(peer_message) != MESSAGE_LEN:
            raise HandshakeFailed("PAKE message of the wrong size")
        from spake2.spake2 import SPAKEError

        try:
            key = bytes(self._spake.finish(peer_message))
        except (SPAKEError, ValueError, AssertionError, TypeError):
            raise HandshakeFailed("malformed PAKE message") from None
        # Labelled so that this key is only ever usable as our Noise psk.
        return hashlib.blake2b(key, digest_size=32, person=_PSK_PERSON).digest()
