"""Refusals: why a station turned a transport away, and when a phone may believe it.

    REFUSE = 0x7f · code (u8) · flags (u8) · reason length (u8, <= 120) · reason (ASCII)
             · body length (u16, <= 600) · body · MAC count (u8, <= 9) · count x MAC (32)

A refusal without a MAC is clear text: anyone on the LAN can send one, so a phone
treats it as advisory and keeps trying. A refusal that ends a session (the session
ended, or the phone's store lost commands: a resume gap) carries MACs under the
session's resumption secrets, one per secret the station would still accept, so only
the real station's worker can make one:

    MAC = BLAKE2b-256(key = resumption secret, person = "fs2-refuse-mac",
                      session id (16) · code · flags · binding · reason length · reason
                      · body length (u16) · body)

``binding`` is the phone's resume ephemeral (32 bytes) when ``flags`` bit 0 is set: a
live answer to that one hello, which cannot be replayed to another. A refusal the
station precomputes when a session ends (the supervisor keeps it and answers with it
after the worker is gone) is unbound: it is true for every later hello.

The body is a list of items ``type (u8) · length (u16) · value``; unknown types are
skipped, so later versions can add some. Item 4 carries the session's signed wipe
receipt, opaque here.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from tunnel.errors import MalformedRecord, PairingError, UsageError
from tunnel.flights import SECRET_LEN, SESSION_ID_LEN, MessageType

MAX_REASON = 120
MAX_BODY = 600  # room for a signed wipe receipt (item 4) beside the reason and ranges
MAX_MACS = 9  # the confirmed secret and up to 8 pending ones
MAC_LEN = 32
BINDING_LEN = 32
FLAG_BOUND = 0x01
MAX_RANGES = 16
_MAC_PERSON = b"fs2-refuse-mac"
_U16 = struct.Struct(">H")
_RANGE = struct.Struct(">QQ")


class RefuseCode(IntEnum):
    """Why a station refused a transport. The numbers are on the wire."""

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
    WRONG_CODE = 11
    CODE_PAUSED = 12
    RESUME_GAP = 13


# Codes that end a session for the phone, but only when authenticated.
FINAL_CODES = frozenset({RefuseCode.SESSION_ENDED, RefuseCode.RESUME_GAP})


WRONG_CODE_MESSAGE = "wrong or expired code"


def code_paused_message(seconds: float) -> str:
    return f"code pairing paused for {max(1, round(seconds))} s after wrong codes; scan the QR code"


def gap_message(first: int, last: int) -> str:
    seqs = f"seq {first}" if first == last else f"seqs {first}-{last}"
    return f"{seqs} were acknowledged by this phone before but are not in its store"


class BodyItem(IntEnum):
    REASON = 1  # UTF-8: why the session ended ("explicit", "inactivity", ...)
    UNDELIVERED = 2  # ranges (first u64 · last u64) of commands the phone never acknowledged
    GAP = 3  # one range: acknowledged by this phone before, absent from its store now
    RECEIPT = 4  # the signed, content-free wipe receipt: signature (64) · canonical JSON


SeqRanges = tuple[tuple[int, int], ...]


def seq_ranges(seqs: Iterable[int]) -> SeqRanges:
    """Sorted sequence numbers as inclusive ranges: [3, 4, 5, 9] -> ((3, 5), (9, 9))."""
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class RefusalBody:
    """What an authenticated refusal says beyond its code: numbers, never content."""

    reason: str | None = None
    undelivered: SeqRanges = ()
    gap: tuple[int, int] | None = None
    receipt: bytes | None = None  # opaque here; the application signs and checks it

    def encode(self) -> bytes:
        items: list[bytes] = []
        if self.reason is not None:
            items.append(_item(BodyItem.REASON, self.reason.encode("utf-8")[:MAX_REASON]))
        if self.undelivered:
            if len(self.undelivered) > MAX_RANGES:
                raise UsageError(f"more than {MAX_RANGES} undelivered ranges")
            value = b"".join(_RANGE.pack(a, b) for a, b in self.undelivered)
            items.append(_item(BodyItem.UNDELIVERED, value))
        if self.gap is not None:
            items.append(_item(BodyItem.GAP, _RANGE.pack(*self.gap)))
        if self.receipt is not None:
            items.append(_item(BodyItem.RECEIPT, self.receipt))
        return b"".join(items)

    @classmethod
    def decode(cls, data: bytes) -> RefusalBody:
        reason: str | None = None
        undelivered: SeqRanges = ()
        gap: tuple[int, int] | None = None
        receipt: bytes | None = None
        at = 0
        while at < len(data):
            if at + 3 > len(data):
                raise MalformedRecord("refusal body item cut short")
            kind = data[at]
            (length,) = _U16.unpack_from(data, at + 1)
            value = data[at + 3 : at + 3 + length]
            if len(value) != length:
                raise MalformedRecord("refusal body item cut short")
            at += 3 + length
            if kind == BodyItem.REASON:
                reason = value.decode("utf-8", "replace")
            elif kind == BodyItem.RECEIPT:
                receipt = bytes(value)
            elif kind in (BodyItem.UNDELIVERED, BodyItem.GAP):
                if length % _RANGE.size or length // _RANGE.size > MAX_RANGES:
                    raise MalformedRecord("refusal body ranges of the wrong size")
                ranges = tuple(_RANGE.unpack_from(value, i) for i in range(0, length, _RANGE.size))
                if kind == BodyItem.UNDELIVERED:
                    undelivered = ranges
                elif len(ranges) == 1:
                    gap = ranges[0]
                else:
                    raise MalformedRecord("a gap is one range")
        return cls(reason, undelivered, gap, receipt)


def _item(kind: BodyItem, value: bytes) -> bytes:
    return bytes([kind]) + _U16.pack(len(value)) + value


class Refused(PairingError):
    """The station refused this transport. Advisory unless ``authenticated``."""

    def __init__(
        self,
        code: RefuseCode,
        reason: str,
        *,
        flags: int = 0,
        body: bytes = b"",
        macs: tuple[bytes, ...] = (),
        raw_reason: bytes | None = None,
    ) -> None:
        super().__init__(f"station refused: {reason}")
        self.code = code
        self.reason = reason
        self.flags = flags
        self.body = body
        self.macs = macs
        self._raw_reason = raw_reason if raw_reason is not None else _reason_bytes(reason)
        self.authenticated = False
        self.details = RefusalBody()

    def verify(self, session_id: bytes, secret: bytes, binding: bytes) -> bool:
        """Check the MACs under our resumption secret; on success the body is believed."""
        if not self.macs or not secret:
            return False
        bound = binding if self.flags & FLAG_BOUND else b""
        expected = refusal_mac(
            secret, session_id, self.code, self.flags, bound, self._raw_reason, self.body
        )
        if not any(hmac.compare_digest(mac, expected) for mac in self.macs):
            return False
        try:
            self.details = RefusalBody.decode(self.body)
        except MalformedRecord:
            self.details = RefusalBody()  # authentic but unreadable: the code still holds
        self.authenticated = True
        return True


def _reason_bytes(reason: str) -> bytes:
    return reason.encode("ascii", "replace")[:MAX_REASON]


def refusal_mac(
    secret: bytes,
    session_id: bytes,
    code: int,
    flags: int,
    binding: bytes,
    reason: bytes,
    body: bytes,
) -> bytes:
    """The MAC of one refusal under one resumption secret (see the module docstring)."""
    if len(secret) != SECRET_LEN or len(session_id) != SESSION_ID_LEN:
        raise UsageError("a refusal MAC needs a 32-byte secret and a 16-byte session id")
    data = (
        session_id
        + bytes([code, flags])
        + binding
        + bytes([len(reason)])
        + reason
        + _U16.pack(len(body))
        + body
    )
    return hashlib.blake2b(data, digest_size=MAC_LEN, key=secret, person=_MAC_PERSON).digest()


def encode_refusal(code: RefuseCode, reason: str) -> bytes:
    """A clear-text refusal: advisory only."""
    return _encode(code, _reason_bytes(reason), 0, b"", ())


def authenticated_refusal(
    code: RefuseCode,
    reason: str,
    *,
    session_id: bytes,
    secrets: Iterable[bytes],
    body: RefusalBody | None = None,
    binding: bytes = b"",
) -> bytes:
    """A refusal with one MAC per secret the phone might hold."""
    if binding and len(binding) != BINDING_LEN:
        raise UsageError("a refusal binding is the phone's 32-byte ephemeral")
    flags = FLAG_BOUND if binding else 0
    raw_reason = _reason_bytes(reason)
    raw_body = (body or RefusalBody()).encode()
    macs = tuple(
        refusal_mac(secret, session_id, code, flags, binding, raw_reason, raw_body)
        for secret in secrets
        if secret
    )
    if not macs or len(macs) > MAX_MACS:
        raise UsageError(f"an authenticated refusal needs 1-{MAX_MACS} secrets")
    return _encode(code, raw_reason, flags, raw_body, macs)


def _encode(code: int, reason: bytes, flags: int, body: bytes, macs: tuple[bytes, ...]) -> bytes:
    if len(body) > MAX_BODY:
        raise UsageError(f"a refusal body of {len(body)} bytes (at most {MAX_BODY})")
    return (
        bytes([MessageType.REFUSE, code, flags, len(reason)])
        + reason
        + _U16.pack(len(body))
        + body
        + bytes([len(macs)])
        + b"".join(macs)
    )


def parse_refusal(data: bytes) -> Refused:
    """A REFUSE message; ``MalformedRecord`` when it does not parse exactly."""
    if len(data) < 4 or data[0] != MessageType.REFUSE:
        raise MalformedRecord("not a refusal")
    try:
        code = RefuseCode(data[1])
    except ValueError:
        code = RefuseCode.MALFORMED
    flags, reason_len = data[2], data[3]
    at = 4
    raw_reason = bytes(data[at : at + reason_len])
    at += reason_len
    if len(raw_reason) != reason_len or reason_len > MAX_REASON or at + 2 > len(data):
        raise MalformedRecord("refusal cut short")
    (body_len,) = _U16.unpack_from(data, at)
    at += 2
    body = bytes(data[at : at + body_len])
    at += body_len
    if len(body) != body_len or body_len > MAX_BODY or at + 1 > len(data):
        raise MalformedRecord("refusal cut short")
    count = data[at]
    at += 1
    if count > MAX_MACS or len(data) != at + count * MAC_LEN:
        raise MalformedRecord("refusal MACs of the wrong size")
    macs = tuple(bytes(data[i : i + MAC_LEN]) for i in range(at, len(data), MAC_LEN))
    reason = raw_reason.decode("ascii", "replace")
    return Refused(code, reason, flags=flags, body=body, macs=macs, raw_reason=raw_reason)
