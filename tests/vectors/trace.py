"""A Noise handshake written out step by step, for implementers who compute by hand.

Noise libraries seldom expose the handshake hash ``h`` just before a payload is
encrypted (the phone signs it) or the chaining key ``ck`` after ``Split()`` (the resume
secret comes from it). This replays a two-message handshake with the same primitives
as ``tunnel.noise`` and records ``h``, ``ck`` and the cipher key after every token. The
generator checks that the replay yields exactly the bytes the real endpoints sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tests.vectors.fixed import JSON, hx
from tunnel.errors import UsageError
from tunnel.noise import KEYLEN, KeyPair, SymmetricState, _dh, _hkdf, resolve_pattern
from tunnel.payloads import next_resumption_secret

Payload = bytes | Callable[[bytes], bytes]


@dataclass
class HandshakeTrace:
    steps: list[JSON] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    h_before_payload: list[bytes] = field(default_factory=list)
    h: bytes = b""
    ck: bytes = b""
    i2r: bytes = b""  # Split()'s first key: phone -> station
    r2i: bytes = b""  # Split()'s second key: station -> phone
    extra64: bytes = b""
    extra: bytes = b""
    next_secret: bytes = b""

    def summary(self) -> JSON:
        return {
            "h_final": hx(self.h),
            "ck_final": hx(self.ck),
            "split_k1_phone_to_station": hx(self.i2r),
            "split_k2_station_to_phone": hx(self.r2i),
            "extra_hkdf_output3_64": hx(self.extra64),
            "extra": hx(self.extra),
            "next_resumption_secret": hx(self.next_secret),
        }


class _Tracer:
    def __init__(self, protocol: str, prologue: bytes) -> None:
        self.ss = SymmetricState(protocol)
        self.trace = HandshakeTrace()
        self._step("InitializeSymmetric(protocol_name)", protocol_name=protocol)
        self.ss.mix_hash(prologue)
        self._step("MixHash(prologue)", prologue=hx(prologue))

    def _step(self, op: str, **values: str) -> None:
        cipher = self.ss.cipher.key
        self.trace.steps.append(
            {
                "op": op,
                **values,
                "h": hx(self.ss.h),
                "ck": hx(self.ss.ck),
                "k": hx(cipher) if cipher is not None else None,
            }
        )

    def mix_hash(self, what: str, data: bytes) -> None:
        self.ss.mix_hash(data)
        self._step(f"MixHash({what})", data=hx(data))

    def mix_key(self, what: str, data: bytes) -> None:
        self.ss.mix_key(data)
        self._step(f"MixKey({what})", data=hx(data))

    def mix_key_and_hash(self, data: bytes) -> None:
        self.ss.mix_key_and_hash(data)
        self._step("MixKeyAndHash(psk)", psk=hx(data))

    def encrypt_and_hash(self, message: int, plaintext: bytes) -> bytes:
        self.trace.h_before_payload.append(self.ss.h)
        nonce = self.ss.cipher.n
        ad = self.ss.h
        out = self.ss.encrypt_and_hash(plaintext)
        self._step(
            f"EncryptAndHash(payload {message})",
            plaintext=hx(plaintext),
            ad=hx(ad),
            nonce=str(nonce),
            ciphertext=hx(out),
        )
        return out


def trace_handshake(
    protocol: str,
    prologue: bytes,
    psk: bytes,
    *,
    phone_e: KeyPair,
    station_e: KeyPair,
    station_static: KeyPair | None,
    payloads: tuple[Payload, Payload],
) -> HandshakeTrace:
    """Replay the two-message handshake (``NKpsk0`` or ``NNpsk0``) token by token."""
    pre_i, pre_r, messages = resolve_pattern(protocol)
    if pre_i or len(messages) != 2 or (pre_r and station_static is None):
        raise UsageError("a two-message pattern with at most a responder pre-message")
    t = _Tracer(protocol, prologue)
    if pre_r:
        assert station_static is not None
        t.mix_hash("rs: the offer's public key", station_static.public)
    ephemerals = (phone_e, station_e)
    for index, tokens in enumerate(messages):
        out = bytearray()
        own = ephemerals[index % 2]
        for token in tokens:
            if token == "psk":
                t.mix_key_and_hash(psk)
            elif token == "e":
                out += own.public
                who = "phone" if index % 2 == 0 else "station"
                t.mix_hash(f"e: the {who}'s ephemeral public key", own.public)
                t.mix_key(f"e: the {who}'s ephemeral public key (psk handshake)", own.public)
            elif token == "ee":
                t.mix_key("ee: DH(phone e, station e)", _dh(phone_e, station_e.public))
            elif token == "es":
                assert station_static is not None
                t.mix_key("es: DH(phone e, station s)", _dh(phone_e, station_static.public))
            else:
                raise UsageError(f"token {token!r} is not used by this protocol")
        given = payloads[index]
        plaintext = given(t.ss.h) if callable(given) else given
        t.trace.payloads.append(plaintext)
        out += t.encrypt_and_hash(index + 1, plaintext)
        t.trace.messages.append(bytes(out))
    k1, k2 = _hkdf(t.ss.ck, b"", 2)
    extra = _hkdf(t.ss.ck, b"", 3)[2]
    trace = t.trace
    trace.h, trace.ck = t.ss.h, t.ss.ck
    trace.i2r, trace.r2i = k1[:KEYLEN], k2[:KEYLEN]
    trace.extra64, trace.extra = extra, extra[:KEYLEN]
    trace.next_secret = next_resumption_secret(trace.extra)
    return trace
