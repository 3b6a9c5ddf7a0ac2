"""A phone written from docs/PROTOCOL.md alone, on other libraries than the project's.

Noise: the ``noiseprotocol`` package (its own X25519/ChaChaPoly/BLAKE2b on the
``cryptography`` backend), with ``h`` and ``ck`` computed alongside as the document's
"What you need from your Noise library" says. SPAKE2: libsodium's Ed25519 arithmetic
(``nacl.bindings``), not the ``spake2`` package. Records: ``cryptography``'s
ChaCha20-Poly1305. Identity: ``cryptography``'s Ed25519. It imports nothing from
``tunnel``, ``wire``, ``station`` or ``medic_phone`` (a test checks that), so where it
agrees with the station, the document said enough.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl import bindings as sodium
from noise.connection import Keypair, NoiseConnection

NK = "Noise_NKpsk0_25519_ChaChaPoly_BLAKE2b"
NN = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b"
PAIR_URI, PAIR_CODE, RESUME, CODE_NOISE = 0x01, 0x02, 0x03, 0x04
CODE_REPLY, ACCEPT, REFUSE = 0x10, 0x11, 0x7F
DATA, ACK, PING, PONG, CLOSE, DATA_RUN, NOTICE = 1, 2, 3, 4, 5, 6, 7
L = 2**252 + 27742317777372353535851937790883648493
M = bytes.fromhex("15cfd18e385952982b6a8f8c7854963b58e34388c8e6dae891db756481a02312")
N = bytes.fromhex("f04f2e7eb734b2a8f8b472eaf9c3c632576ac64aea650b496a8a20ff00e583c3")
REKEY_EVERY = 65536


class Refusal(Exception):
    def __init__(self, data: bytes) -> None:
        self.code, self.flags, n = data[1], data[2], data[3]
        self.reason = data[4 : 4 + n].decode("ascii", "replace")
        self.raw_reason = data[4 : 4 + n]
        (body_len,) = struct.unpack_from(">H", data, 4 + n)
        self.body = data[6 + n : 6 + n + body_len]
        count = data[6 + n + body_len]
        at = 7 + n + body_len
        self.macs = [data[at + 32 * i : at + 32 * (i + 1)] for i in range(count)]
        self.ephemeral = b""  # a resume's: what a bound refusal's MAC covers
        super().__init__(f"refused {self.code}: {self.reason}")

    def items(self) -> dict[int, bytes]:
        """The body's items by type (type u8 · length u16 · value)."""
        out, at = {}, 0
        while at < len(self.body):
            kind, (length,) = self.body[at], struct.unpack_from(">H", self.body, at + 1)
            out[kind] = self.body[at + 3 : at + 3 + length]
            at += 3 + length
        return out

    def authentic(self, session_id: bytes, secret: bytes, ephemeral: bytes) -> bool:
        binding = ephemeral if self.flags & 1 else b""
        data = (
            session_id
            + bytes([self.code, self.flags])
            + binding
            + bytes([len(self.raw_reason)])
            + self.raw_reason
            + struct.pack(">H", len(self.body))
            + self.body
        )
        mac = blake2b_256(data, key=secret, person=b"fs2-refuse-mac")
        return any(hmac.compare_digest(mac, m) for m in self.macs)


def blake2b_256(data: bytes, *, key: bytes = b"", person: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32, key=key, person=person).digest()


def b64url(text: str) -> bytes:
    if "=" in text:
        raise ValueError("padding is never written")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- the pairing URI -------------------------------------------------------------------


@dataclass
class Offer:
    version: int
    name: str
    addresses: list[tuple[str, int]]
    offer_id: bytes
    key: bytes
    secret: bytes
    expires: int

    @property
    def psk(self) -> bytes:
        return blake2b_256(self.offer_id + self.key, key=self.secret, person=b"fs-offer-psk")


def parse_uri(uri: str) -> Offer:
    parts = urlsplit(uri)
    assert parts.scheme.lower() == "fieldstation" and parts.netloc == "pair"
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
    addresses = []
    for a in query["a"]:
        host, _, port = a.rpartition(":")
        addresses.append((host.strip("[]"), int(port)))
    offer = Offer(
        int(query["v"][0]),
        query["n"][0],
        addresses,
        b64url(query["id"][0]),
        b64url(query["k"][0]),
        b64url(query["s"][0]),
        int(query["x"][0]),
    )
    assert offer.version == 2 and len(offer.offer_id) == 8 and len(offer.key) == 32
    assert len(offer.secret) == 16
    return offer


# -- SPAKE2 on libsodium's Ed25519 -----------------------------------------------------


def normalize_code(typed: str) -> str:
    digits = typed.replace(" ", "").replace("-", "")
    assert len(digits) == 8 and digits.isdigit() and digits.isascii()
    return f"{digits[:4]}-{digits[4:]}"


def _scalar_from_be(data: bytes) -> bytes:
    """A big-endian number of up to 64 bytes, mod L, as libsodium's 32 LE bytes."""
    return sodium.crypto_core_ed25519_scalar_reduce(data[::-1].ljust(64, b"\x00"))


def password_scalar(password: bytes) -> bytes:
    prk = hmac.new(bytes(32), password, hashlib.sha256).digest()  # HKDF-Extract, empty salt
    okm, block = b"", b""
    for i in range(1, 3):  # HKDF-Expand to 48 bytes
        block = hmac.new(prk, block + b"SPAKE2 pw" + bytes([i]), hashlib.sha256).digest()
        okm += block
    return _scalar_from_be(okm[:48])


class Spake2A:
    """Side A (the phone). ``entropy``: 64 bytes read as a big-endian number mod L."""

    def __init__(self, code: str, entropy: bytes) -> None:
        self.password = normalize_code(code).encode("ascii")
        self.w = password_scalar(self.password)
        self.x = _scalar_from_be(entropy)
        big_x = sodium.crypto_scalarmult_ed25519_base_noclamp(self.x)
        self.t = sodium.crypto_core_ed25519_add(
            big_x, sodium.crypto_scalarmult_ed25519_noclamp(self.w, M)
        )
        self.message = b"A" + self.t

    def finish(self, message_b: bytes) -> bytes:
        """The Noise psk of this slot."""
        assert len(message_b) == 33 and message_b[:1] == b"B"
        s = message_b[1:]
        assert sodium.crypto_core_ed25519_is_valid_point(s) and s != self.t
        unblinded = sodium.crypto_core_ed25519_sub(
            s, sodium.crypto_scalarmult_ed25519_noclamp(self.w, N)
        )
        k = sodium.crypto_scalarmult_ed25519_noclamp(self.x, unblinded)
        sha = hashlib.sha256
        transcript = (
            sha(self.password).digest()
            + sha(b"fieldstation-phone").digest()
            + sha(b"fieldstation-station").digest()
            + self.t
            + s
            + k
        )
        return blake2b_256(sha(transcript).digest(), person=b"fs-code-psk")


# -- Noise, with h and ck computed by hand ---------------------------------------------


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2b).digest()


def hkdf(ck: bytes, ikm: bytes, n: int) -> list[bytes]:
    temp = _hmac(ck, ikm)
    out = [_hmac(temp, b"\x01")]
    for i in range(2, n + 1):
        out.append(_hmac(temp, out[-1] + bytes([i])))
    return out


def x25519(private: bytes, public: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    return X25519PrivateKey.from_private_bytes(private).exchange(
        X25519PublicKey.from_public_bytes(public)
    )


def x25519_public(private: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return (
        X25519PrivateKey.from_private_bytes(private)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


class Handshake:
    """One two-message handshake on noiseprotocol; ``h_sig`` and ``ck`` by hand."""

    def __init__(
        self, protocol: str, prologue: bytes, psk: bytes, ephemeral: bytes, rs: bytes | None
    ) -> None:
        self.protocol, self.psk, self.e, self.rs = protocol, psk, ephemeral, rs
        self.e_pub = x25519_public(ephemeral)
        self.noise = NoiseConnection.from_name(protocol.encode())
        self.noise.set_as_initiator()
        self.noise.set_psks(psk=psk)
        self.noise.set_prologue(prologue)
        if rs is not None:
            self.noise.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, rs)
        self.noise.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral)
        with warnings.catch_warnings():  # "a fixed ephemeral is for testing": we chose it
            warnings.simplefilter("ignore")
            self.noise.start_handshake()
        h0 = protocol.encode().ljust(64, b"\x00")
        h = hashlib.blake2b(h0 + prologue).digest()
        if rs is not None:
            h = hashlib.blake2b(h + rs).digest()
        ck, temp_h, _ = hkdf(h0, psk, 3)
        h = hashlib.blake2b(h + temp_h).digest()
        self.h_sig = hashlib.blake2b(h + self.e_pub).digest()
        ck = hkdf(ck, self.e_pub, 2)[0]
        if rs is not None:
            ck = hkdf(ck, x25519(ephemeral, rs), 2)[0]
        self._ck = ck
        self.ck = b""
        self.k1 = self.k2 = self.next_secret = b""

    def message1(self, payload: bytes) -> bytes:
        return bytes(self.noise.write_message(payload))

    def read2(self, message: bytes) -> bytes:
        payload = bytes(self.noise.read_message(message))
        re = message[:32]
        ck = hkdf(self._ck, re, 2)[0]
        self.ck = hkdf(ck, x25519(self.e, re), 2)[0]
        k1, k2, extra = hkdf(self.ck, b"", 3)
        self.k1, self.k2 = k1[:32], k2[:32]
        # Our ck must give the keys the library split into: else our h_sig was luck.
        assert self.noise.noise_protocol.cipher_state_encrypt.k == self.k1
        assert self.noise.noise_protocol.cipher_state_decrypt.k == self.k2
        self.extra = extra[:32]
        self.next_secret = blake2b_256(self.extra, person=b"fs-resume-next")
        return payload


# -- records and frames ----------------------------------------------------------------


def _nonce(counter: int) -> bytes:
    return bytes(4) + counter.to_bytes(8, "little")


def rekey(key: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(bytes(4) + b"\xff" * 8, bytes(32), b"")[:32]


class Direction:
    def __init__(self, key: bytes) -> None:
        self.key = key
        self.counter = 0

    def _key_for(self, counter: int) -> bytes:
        if counter and counter % REKEY_EVERY == 0:
            self.key = rekey(self.key)
        return self.key

    def seal(self, frame: bytes) -> bytes:
        header = self.counter.to_bytes(8, "big")
        key = self._key_for(self.counter)
        self.counter += 1
        return header + ChaCha20Poly1305(key).encrypt(_nonce(self.counter - 1), frame, header)

    def open(self, record: bytes) -> bytes:
        header = record[:8]
        counter = int.from_bytes(header, "big")
        assert counter == self.counter, f"record {counter}, expected {self.counter}"
        key = self.key if not (counter and counter % REKEY_EVERY == 0) else rekey(self.key)
        frame = ChaCha20Poly1305(key).decrypt(_nonce(counter), record[8:], header)
        self.key, self.counter = key, counter + 1
        return frame


def decode_frame(frame: bytes) -> tuple[int, dict[str, Any]]:
    kind = frame[0]
    if kind == DATA:
        seq, ack = struct.unpack_from(">QQ", frame, 1)
        return kind, {"seq": seq, "ack": ack, "payloads": [frame[17:]]}
    if kind == DATA_RUN:
        seq, ack, count = struct.unpack_from(">QQH", frame, 1)
        at, payloads = 19, []
        for _ in range(count):
            (n,) = struct.unpack_from(">I", frame, at)
            payloads.append(frame[at + 4 : at + 4 + n])
            at += 4 + n
        assert at == len(frame)
        return kind, {"seq": seq, "ack": ack, "payloads": payloads}
    if kind == ACK:
        return kind, {"ack": struct.unpack_from(">Q", frame, 1)[0]}
    if kind in (PING, PONG):
        ack, token = struct.unpack_from(">QQ", frame, 1)
        return kind, {"ack": ack, "token": token}
    if kind == NOTICE:
        return kind, {"ack": struct.unpack_from(">Q", frame, 1)[0], "payload": frame[9:]}
    if kind == CLOSE:
        return kind, {"code": frame[1], "reason": frame[2:].decode("ascii")}
    raise ValueError(f"unknown frame type {kind}")


def ack_frame(cursor: int) -> bytes:
    return bytes([ACK]) + cursor.to_bytes(8, "big")


def data_frame(seq: int, ack: int, payload: bytes) -> bytes:
    return bytes([DATA]) + struct.pack(">QQ", seq, ack) + payload


# -- the phone's durable state, and its handshakes -------------------------------------


@dataclass
class PhoneState:
    seed: bytes
    session_id: bytes = b""
    secret: bytes = b""
    station: str = ""
    applied: dict[int, str] = field(default_factory=dict)  # seq -> command text
    cursor: int = 0
    duplicates: int = 0
    receipt_key: bytes = b""
    receipt: dict[str, Any] | None = None

    @property
    def public_key(self) -> bytes:
        return (
            Ed25519PrivateKey.from_private_bytes(self.seed)
            .public_key()
            .public_bytes(Encoding.Raw, PublicFormat.Raw)
        )

    @property
    def fingerprint(self) -> str:
        digest = blake2b_256(self.public_key, person=b"fs-fingerprint")
        text = base64.b32encode(digest).decode("ascii").lower()[:20]
        return "-".join(text[i : i + 4] for i in range(0, 20, 4))

    def identity(self, h_sig: bytes) -> bytes:
        signed = b"fieldstation identity v1\x00" + h_sig
        return self.public_key + Ed25519PrivateKey.from_private_bytes(self.seed).sign(signed)

    def accepted(self, payload: bytes) -> None:
        self.session_id, self.station = payload[:16], payload[16:].decode("utf-8")

    def apply(self, seq: int, payload: bytes) -> None:
        """Durably apply a command (here: keep it), once."""
        if seq <= self.cursor:
            self.duplicates += 1
            return
        assert seq == self.cursor + 1, f"command {seq} after {self.cursor}"
        message = json.loads(payload)
        assert message["type"] == "command"
        self.applied[seq] = message["text"]
        self.cursor = seq


def prologue(kind: int, routing_id: bytes) -> bytes:
    return b"fieldstation/2\x00" + bytes([kind, 2]) + routing_id


def uri_hello(state: PhoneState, offer: Offer, ephemeral: bytes) -> tuple[bytes, Handshake]:
    hs = Handshake(NK, prologue(PAIR_URI, offer.offer_id), offer.psk, ephemeral, offer.key)
    message = hs.message1(state.identity(hs.h_sig))
    return bytes([PAIR_URI, 2]) + offer.offer_id + message, hs


def code_hello(code: str, entropies: list[bytes]) -> tuple[bytes, list[Spake2A]]:
    slots = [Spake2A(code, e) for e in entropies]
    return bytes([PAIR_CODE, 2, len(slots)]) + b"".join(s.message for s in slots), slots


def code_noise(
    state: PhoneState, hello: bytes, slots: list[Spake2A], reply: bytes, ephemerals: list[bytes]
) -> tuple[bytes, dict[int, Handshake]]:
    if reply[0] == REFUSE:
        raise Refusal(reply)
    assert reply[0] == CODE_REPLY
    count, at = reply[1], 2
    out, handshakes = bytearray([CODE_NOISE, count]), {}
    for index in range(count):
        slot, message_b = reply[at], reply[at + 1 : at + 34]
        at += 34
        psk = slots[slot].finish(message_b)
        pro = hello_prologue_of(hello) + bytes([slot]) + slots[slot].message + message_b
        hs = Handshake(NN, pro, psk, ephemerals[index], None)
        message = hs.message1(state.identity(hs.h_sig))
        out += bytes([slot]) + len(message).to_bytes(2, "big") + message
        handshakes[slot] = hs
    assert at == len(reply)
    return bytes(out), handshakes


def hello_prologue_of(hello: bytes) -> bytes:
    return prologue(hello[0], b"")  # a code hello has no routing id


def resume_hello(state: PhoneState, ephemeral: bytes) -> tuple[bytes, Handshake]:
    hs = Handshake(NN, prologue(RESUME, state.session_id), state.secret, ephemeral, None)
    message = hs.message1(state.cursor.to_bytes(8, "big"))
    return bytes([RESUME, 2]) + state.session_id + message, hs


def read_accept(reply: bytes, hs: Handshake | dict[int, Handshake]) -> tuple[Handshake, bytes]:
    if reply[0] == REFUSE:
        raise Refusal(reply)
    assert reply[0] == ACCEPT
    if isinstance(hs, dict):
        chosen = hs[reply[1]]
        return chosen, chosen.read2(reply[2:])
    return hs, hs.read2(reply[1:])
