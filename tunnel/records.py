"""The record layer: one Noise transport message per WebSocket binary message.

    record = counter (8 bytes, big-endian) · ChaChaPoly(k, nonce=counter, ad=counter, frame)

The counter is explicit so that a replay, a gap and a forgery are told apart (each has
its own typed error), and it advances only once a record authenticates. Every
``rekey_interval`` records both sides move to Noise ``REKEY(k)`` without signalling.
"""

from __future__ import annotations

import struct

from tunnel.errors import (
    AuthenticationFailed,
    MalformedRecord,
    OversizedRecord,
    ReorderedRecord,
    ReplayedRecord,
    UsageError,
)
from tunnel.noise import MAX_NONCE, TAGLEN, CipherState

DEFAULT_MAX_RECORD = 65536
DEFAULT_REKEY_INTERVAL = 1 << 16
_COUNTER = struct.Struct(">Q")
OVERHEAD = _COUNTER.size + TAGLEN


class _Direction:
    def __init__(self, cipher: CipherState, max_record: int, rekey_interval: int) -> None:
        if not cipher.has_key():
            raise UsageError("a record direction needs a keyed cipher")
        if max_record <= OVERHEAD or rekey_interval < 1:
            raise UsageError("max_record or rekey_interval out of range")
        self._cipher = cipher
        self.max_record = max_record
        self.rekey_interval = rekey_interval
        self.counter = 0

    def _cipher_for(self, counter: int) -> CipherState:
        if counter and counter % self.rekey_interval == 0:
            return self._cipher.rekeyed()
        return self._cipher


class RecordSender(_Direction):
    def __init__(
        self,
        cipher: CipherState,
        *,
        max_record: int = DEFAULT_MAX_RECORD,
        rekey_interval: int = DEFAULT_REKEY_INTERVAL,
    ) -> None:
        super().__init__(cipher, max_record, rekey_interval)

    def seal(self, plaintext: bytes) -> bytes:
        if len(plaintext) + OVERHEAD > self.max_record:
            raise UsageError("plaintext does not fit in one record")
        if self.counter >= MAX_NONCE - 1:
            raise UsageError("record counter exhausted")
        cipher = self._cipher_for(self.counter)
        header = _COUNTER.pack(self.counter)
        record = header + cipher.encrypt_at(self.counter, header, plaintext)
        self._cipher = cipher
        self.counter += 1
        return record


class RecordReceiver(_Direction):
    def __init__(
        self,
        cipher: CipherState,
        *,
        max_record: int = DEFAULT_MAX_RECORD,
        rekey_interval: int = DEFAULT_REKEY_INTERVAL,
    ) -> None:
        super().__init__(cipher, max_record, rekey_interval)

    def open(self, record: bytes) -> bytes:
        if len(record) > self.max_record:
            raise OversizedRecord("record too large")
        if len(record) < OVERHEAD:
            raise MalformedRecord("record too short")
        (counter,) = _COUNTER.unpack_from(record)
        if counter < self.counter:
            raise ReplayedRecord("record counter already used")
        if counter > self.counter:
            raise ReorderedRecord("record counter ahead of the next expected")
        if counter >= MAX_NONCE - 1:
            raise MalformedRecord("reserved record counter")
        cipher = self._cipher_for(counter)
        plaintext = cipher.decrypt_at(counter, record[: _COUNTER.size], record[_COUNTER.size :])
        # Only now, authenticated, do the counter and any rekey take effect.
        self._cipher = cipher
        self.counter = counter + 1
        return plaintext


__all__ = [
    "DEFAULT_MAX_RECORD",
    "DEFAULT_REKEY_INTERVAL",
    "OVERHEAD",
    "AuthenticationFailed",
    "RecordReceiver",
    "RecordSender",
]
