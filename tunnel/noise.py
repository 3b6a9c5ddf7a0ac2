"""The Noise Protocol Framework (revision 34): 25519, ChaChaPoly, BLAKE2b, on PyNaCl.

Handshake patterns are data: each name maps to its pre-message tokens and message
token lists, and psk modifiers are applied by parsing the name, so every pattern of the
specification (fundamental, deferred and psk variants) runs through one interpreter.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence

from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
    crypto_scalarmult,
    crypto_scalarmult_base,
)
from nacl.exceptions import CryptoError
from nacl.exceptions import RuntimeError as NaclRuntimeError

from tunnel.entropy import X25519, random_bytes
from tunnel.errors import AuthenticationFailed, HandshakeFailed, UsageError

DHLEN = 32
HASHLEN = 64
KEYLEN = 32
TAGLEN = 16
MAX_MESSAGE_LEN = 65535
MAX_NONCE = (1 << 64) - 1  # reserved: never used to encrypt
_ZEROS32 = bytes(32)


class KeyPair:
    """An X25519 key pair."""

    __slots__ = ("private", "public")

    def __init__(self, private: bytes, public: bytes) -> None:
        self.private = private
        self.public = public

    @classmethod
    def generate(cls) -> KeyPair:
        # What crypto_box_keypair does (random bytes, then the base point multiplication),
        # with the bytes drawn where the wire test vectors can fix them.
        return cls.from_private(random_bytes(DHLEN, X25519))

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        if len(private) != DHLEN:
            raise UsageError("an X25519 private key is 32 bytes")
        return cls(private, crypto_scalarmult_base(private))

    def __repr__(self) -> str:  # never print key material
        return f"KeyPair(public={self.public[:4].hex()}...)"


def _dh(keypair: KeyPair, public: bytes) -> bytes:
    if len(public) != DHLEN:
        raise HandshakeFailed("bad public key")
    try:
        return crypto_scalarmult(keypair.private, public)
    except (CryptoError, NaclRuntimeError):
        # libsodium refuses low-order points (an all-zero shared secret).
        raise HandshakeFailed("bad public key") from None


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2b).digest()


def _hkdf(chaining_key: bytes, ikm: bytes, outputs: int) -> tuple[bytes, ...]:
    temp = _hmac(chaining_key, ikm)
    out1 = _hmac(temp, b"\x01")
    out2 = _hmac(temp, out1 + b"\x02")
    if outputs == 2:
        return out1, out2
    return out1, out2, _hmac(temp, out2 + b"\x03")


def _nonce(n: int) -> bytes:
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


class CipherState:
    """A key and a nonce counter; the counter advances only on success."""

    __slots__ = ("_key", "n")

    def __init__(self, key: bytes | None = None, nonce: int = 0) -> None:
        if key is not None and len(key) != KEYLEN:
            raise UsageError("a cipher key is 32 bytes")
        self._key = key
        self.n = nonce

    @property
    def key(self) -> bytes | None:
        return self._key

    def has_key(self) -> bool:
        return self._key is not None

    def set_nonce(self, n: int) -> None:
        self.n = n

    def encrypt_at(self, n: int, ad: bytes, plaintext: bytes) -> bytes:
        if self._key is None:
            raise UsageError("no key")
        if n >= MAX_NONCE:
            raise UsageError("nonce exhausted: rekey or start a new session")
        return crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, ad, _nonce(n), self._key)

    def decrypt_at(self, n: int, ad: bytes, ciphertext: bytes) -> bytes:
        if self._key is None:
            raise UsageError("no key")
        if n >= MAX_NONCE:
            raise AuthenticationFailed("nonce exhausted")
        try:
            return crypto_aead_chacha20poly1305_ietf_decrypt(ciphertext, ad, _nonce(n), self._key)
        except CryptoError:
            raise AuthenticationFailed("authentication failed") from None

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self._key is None:
            return plaintext
        out = self.encrypt_at(self.n, ad, plaintext)
        self.n += 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self._key is None:
            return ciphertext
        out = self.decrypt_at(self.n, ad, ciphertext)
        self.n += 1
        return out

    def _rekey_value(self) -> bytes:
        if self._key is None:
            raise UsageError("no key")
        return crypto_aead_chacha20poly1305_ietf_encrypt(
            _ZEROS32, b"", _nonce(MAX_NONCE), self._key
        )[:KEYLEN]

    def rekey(self) -> None:
        self._key = self._rekey_value()

    def rekeyed(self) -> CipherState:
        return CipherState(self._rekey_value(), self.n)


class SymmetricState:
    __slots__ = ("cipher", "ck", "h")

    def __init__(self, protocol_name: str) -> None:
        name = protocol_name.encode("ascii")
        self.h = name + bytes(HASHLEN - len(name)) if len(name) <= HASHLEN else _hash(name)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = _hkdf(self.ck, ikm, 2)
        self.cipher = CipherState(temp_k[:KEYLEN])

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self.ck, temp_h, temp_k = _hkdf(self.ck, ikm, 3)
        self.mix_hash(temp_h)
        self.cipher = CipherState(temp_k[:KEYLEN])

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        k1, k2 = _hkdf(self.ck, b"", 2)
        return CipherState(k1[:KEYLEN]), CipherState(k2[:KEYLEN])


# -- patterns as data ------------------------------------------------------------------
# name -> (initiator pre-message, responder pre-message, messages); messages alternate,
# initiator first.
Pattern = tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, ...], ...]]

PATTERNS: dict[str, Pattern] = {
    "N": ((), ("s",), (("e", "es"),)),
    "K": (("s",), ("s",), (("e", "es", "ss"),)),
    "X": ((), ("s",), (("e", "es", "s", "ss"),)),
    "NN": ((), (), (("e",), ("e", "ee"))),
    "NK": ((), ("s",), (("e", "es"), ("e", "ee"))),
    "NX": ((), (), (("e",), ("e", "ee", "s", "es"))),
    "KN": (("s",), (), (("e",), ("e", "ee", "se"))),
    "KK": (("s",), ("s",), (("e", "es", "ss"), ("e", "ee", "se"))),
    "KX": (("s",), (), (("e",), ("e", "ee", "se", "s", "es"))),
    "XN": ((), (), (("e",), ("e", "ee"), ("s", "se"))),
    "XK": ((), ("s",), (("e", "es"), ("e", "ee"), ("s", "se"))),
    "XX": ((), (), (("e",), ("e", "ee", "s", "es"), ("s", "se"))),
    "IN": ((), (), (("e", "s"), ("e", "ee", "se"))),
    "IK": ((), ("s",), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
    "IX": ((), (), (("e", "s"), ("e", "ee", "se", "s", "es"))),
    # Deferred patterns (Noise spec section 18).
    "NK1": ((), ("s",), (("e",), ("e", "ee", "es"))),
    "NX1": ((), (), (("e",), ("e", "ee", "s"), ("es",))),
    "X1N": ((), (), (("e",), ("e", "ee"), ("s",), ("se",))),
    "X1K": ((), ("s",), (("e", "es"), ("e", "ee"), ("s",), ("se",))),
    "XK1": ((), ("s",), (("e",), ("e", "ee", "es"), ("s", "se"))),
    "X1K1": ((), ("s",), (("e",), ("e", "ee", "es"), ("s",), ("se",))),
    "X1X": ((), (), (("e",), ("e", "ee", "s", "es"), ("s",), ("se",))),
    "XX1": ((), (), (("e",), ("e", "ee", "s"), ("es", "s", "se"))),
    "X1X1": ((), (), (("e",), ("e", "ee", "s"), ("es", "s"), ("se",))),
    "K1N": (("s",), (), (("e",), ("e", "ee"), ("se",))),
    "K1K": (("s",), ("s",), (("e", "es"), ("e", "ee"), ("se",))),
    "KK1": (("s",), ("s",), (("e",), ("e", "ee", "se", "es"))),
    "K1K1": (("s",), ("s",), (("e",), ("e", "ee", "es"), ("se",))),
    "K1X": (("s",), (), (("e",), ("e", "ee", "s", "es"), ("se",))),
    "KX1": (("s",), (), (("e",), ("e", "ee", "se", "s"), ("es",))),
    "K1X1": (("s",), (), (("e",), ("e", "ee", "s"), ("se", "es"))),
    "I1N": ((), (), (("e", "s"), ("e", "ee"), ("se",))),
    "I1K": ((), ("s",), (("e", "es", "s"), ("e", "ee"), ("se",))),
    "IK1": ((), ("s",), (("e", "s"), ("e", "ee", "se", "es"))),
    "I1K1": ((), ("s",), (("e", "s"), ("e", "ee", "es"), ("se",))),
    "I1X": ((), (), (("e", "s"), ("e", "ee", "s", "es"), ("se",))),
    "IX1": ((), (), (("e", "s"), ("e", "ee", "se", "s"), ("es",))),
    "I1X1": ((), (), (("e", "s"), ("e", "ee", "s"), ("se", "es"))),
}

_NAME = re.compile(
    r"^Noise_(?P<pattern>[NKXI1]+)(?P<mods>(?:psk\d)(?:\+psk\d)*)?_25519_ChaChaPoly_BLAKE2b$"
)


def resolve_pattern(protocol_name: str) -> Pattern:
    """The token lists of a protocol name, psk modifiers applied."""
    match = _NAME.match(protocol_name)
    if match is None or match["pattern"] not in PATTERNS:
        raise UsageError(f"unsupported protocol {protocol_name!r}")
    pre_i, pre_r, messages = PATTERNS[match["pattern"]]
    out = [list(m) for m in messages]
    for mod in (match["mods"] or "").split("+"):
        if not mod:
            continue
        index = int(mod[3:])
        if index == 0:
            out[0].insert(0, "psk")
        elif index <= len(out):
            out[index - 1].append("psk")
        else:
            raise UsageError(f"{mod} does not fit {match['pattern']}")
    return pre_i, pre_r, tuple(tuple(m) for m in out)


class HandshakeState:
    """One side of a Noise handshake."""

    def __init__(
        self,
        protocol_name: str,
        *,
        initiator: bool,
        prologue: bytes = b"",
        s: KeyPair | None = None,
        e: KeyPair | None = None,
        rs: bytes | None = None,
        re: bytes | None = None,
        psks: Sequence[bytes] = (),
    ) -> None:
        pre_i, pre_r, self._messages = resolve_pattern(protocol_name)
        self._initiator = initiator
        self._s, self._e, self._rs, self._re = s, e, rs, re
        self._psks = list(psks)
        self._has_psk = "psk" in protocol_name
        if any(len(p) != 32 for p in self._psks):
            raise UsageError("a psk is 32 bytes")
        self._ss = SymmetricState(protocol_name)
        self._ss.mix_hash(prologue)
        for tokens, ours in ((pre_i, initiator), (pre_r, not initiator)):
            for token in tokens:
                key = (self._s.public if self._s else None) if ours else self._rs
                if token != "s" or key is None:
                    raise UsageError("a pre-message key is missing")
                self._ss.mix_hash(key)
        self._index = 0
        self._split: tuple[CipherState, CipherState] | None = None
        self._extra: bytes | None = None

    @property
    def complete(self) -> bool:
        return self._split is not None

    @property
    def handshake_hash(self) -> bytes:
        return self._ss.h

    @property
    def remote_static(self) -> bytes | None:
        return self._rs

    @property
    def remote_ephemeral(self) -> bytes | None:
        return self._re

    def _my_turn(self) -> bool:
        return (self._index % 2 == 0) == self._initiator

    def _next_psk(self) -> bytes:
        if not self._psks:
            raise UsageError("the pattern needs a psk that was not given")
        return self._psks.pop(0)

    def _token_dh(self, token: str) -> bytes:
        # For "es": the initiator's e with the responder's s; mirrored on the responder.
        local_char, remote_char = (token[0], token[1]) if self._initiator else (token[1], token[0])
        local = self._e if local_char == "e" else self._s
        remote = self._re if remote_char == "e" else self._rs
        if local is None or remote is None:
            raise UsageError(f"a key for {token!r} is missing")
        return _dh(local, remote)

    def write_message(self, payload: bytes | Callable[[bytes], bytes] = b"") -> bytes:
        """Write the next message. A callable payload is given the handshake hash as it
        stands just before the payload is encrypted (for signing it)."""
        if self.complete or self._index >= len(self._messages):
            raise UsageError("the handshake is complete")
        if not self._my_turn():
            raise UsageError("it is the peer's turn to write")
        out = bytearray()
        for token in self._messages[self._index]:
            if token == "e":
                if self._e is None:
                    self._e = KeyPair.generate()
                out += self._e.public
                self._ss.mix_hash(self._e.public)
                if self._has_psk:
                    self._ss.mix_key(self._e.public)
            elif token == "s":
                if self._s is None:
                    raise UsageError("no static key to send")
                out += self._ss.encrypt_and_hash(self._s.public)
            elif token == "psk":
                self._ss.mix_key_and_hash(self._next_psk())
            else:
                self._ss.mix_key(self._token_dh(token))
        body = payload(self._ss.h) if callable(payload) else payload
        out += self._ss.encrypt_and_hash(body)
        if len(out) > MAX_MESSAGE_LEN:
            raise UsageError("handshake message too long")
        self._advance()
        return bytes(out)

    def read_message(
        self, message: bytes, *, observe_hash: Callable[[bytes], None] | None = None
    ) -> bytes:
        """Read the peer's next message. ``observe_hash`` sees the handshake hash just
        before the payload is decrypted (to check a signature over it)."""
        if self.complete or self._index >= len(self._messages):
            raise UsageError("the handshake is complete")
        if self._my_turn():
            raise UsageError("it is our turn to write")
        if len(message) > MAX_MESSAGE_LEN:
            raise HandshakeFailed("handshake message too long")
        view = memoryview(message)
        try:
            for token in self._messages[self._index]:
                if token == "e":
                    if len(view) < DHLEN:
                        raise HandshakeFailed("handshake message too short")
                    self._re = bytes(view[:DHLEN])
                    view = view[DHLEN:]
                    self._ss.mix_hash(self._re)
                    if self._has_psk:
                        self._ss.mix_key(self._re)
                elif token == "s":
                    size = DHLEN + (TAGLEN if self._ss.cipher.has_key() else 0)
                    if len(view) < size:
                        raise HandshakeFailed("handshake message too short")
                    self._rs = self._ss.decrypt_and_hash(bytes(view[:size]))
                    view = view[size:]
                elif token == "psk":
                    self._ss.mix_key_and_hash(self._next_psk())
                else:
                    self._ss.mix_key(self._token_dh(token))
            if observe_hash is not None:
                observe_hash(self._ss.h)
            if self._ss.cipher.has_key() and len(view) < TAGLEN:
                raise HandshakeFailed("handshake message too short")
            payload = self._ss.decrypt_and_hash(bytes(view))
        except AuthenticationFailed:
            raise HandshakeFailed("handshake message failed authentication") from None
        self._advance()
        return payload

    def _advance(self) -> None:
        self._index += 1
        if self._index == len(self._messages):
            self._split = self._ss.split()
            self._extra = _hkdf(self._ss.ck, b"", 3)[2][:KEYLEN]

    def split(self) -> tuple[CipherState, CipherState]:
        """(initiator-to-responder, responder-to-initiator) transport ciphers."""
        if self._split is None:
            raise UsageError("the handshake is not complete")
        return self._split

    def extra_secret(self) -> bytes:
        """A third secret from the final chaining key, for resumption: the first 32 bytes
        of ``HKDF(ck, "", 3)``'s third output (Split() uses the first two)."""
        if self._extra is None:
            raise UsageError("the handshake is not complete")
        return self._extra
