"""The outage queue: what was sent and not yet acknowledged, sealed, bounded.

It is at once the retransmit buffer and the queue that holds commands while the link
is down. Entries are sealed with ``SecretBox`` under a per-session key held only in
RAM, with the sequence number bound inside, so a memory dump of the queue alone shows
only ciphertext and entries cannot be swapped unnoticed. Full means refused with
``QueueFull`` -- never a silent drop.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterator

from nacl.bindings import crypto_secretbox_easy
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox
from nacl.utils import random as random_bytes

from tunnel.errors import QueueFull, UsageError

_SEQ = struct.Struct(">Q")
DEFAULT_MAX_COUNT = 10_000
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


class _SealedEntries:
    """The sealed entries, in order, in RAM (the only place they live)."""

    def __init__(self) -> None:
        self._entries: deque[tuple[int, bytes]] = deque()
        self._nbytes = 0

    def append(self, seq: int, sealed: bytes) -> None:
        self._entries.append((seq, sealed))
        self._nbytes += len(sealed)

    def remove_through(self, seq: int) -> None:
        entries = self._entries
        while entries and entries[0][0] <= seq:
            self._nbytes -= len(entries.popleft()[1])

    def items(self) -> Iterator[tuple[int, bytes]]:
        return iter(list(self._entries))

    @property
    def count(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._nbytes


class OutageQueue:
    def __init__(
        self,
        *,
        max_count: int = DEFAULT_MAX_COUNT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        key: bytes | None = None,
    ) -> None:
        if max_count < 1 or max_bytes < 1:
            raise UsageError("queue bounds must be positive")
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.key = key if key is not None else random_bytes(SecretBox.KEY_SIZE)
        self._box = SecretBox(self.key)
        self._storage = _SealedEntries()
        self._last_seq = 0

    @property
    def depth(self) -> int:
        return self._storage.count

    @property
    def nbytes(self) -> int:
        return self._storage.nbytes

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def put(self, seq: int, payload: bytes) -> None:
        if seq <= self._last_seq:
            raise UsageError("queue sequence numbers must increase")
        sealed = self._seal(seq, payload)
        if self.depth + 1 > self.max_count or self.nbytes + len(sealed) > self.max_bytes:
            raise QueueFull(
                f"outage queue full: {self.depth} messages / "
                f"{self.nbytes / (1024 * 1024):.1f} MiB waiting for the peer",
                depth=self.depth,
                size=self.nbytes,
            )
        self._storage.append(seq, sealed)
        self._last_seq = seq

    def ack_through(self, seq: int) -> int:
        before = self.depth
        self._storage.remove_through(seq)
        return before - self.depth

    def renumber(self, start: int) -> int:
        """Give the entries consecutive numbers from ``start``; returns the next free one."""
        entries = list(self.items())
        self._storage.remove_through(self._last_seq)
        self._last_seq = start - 1
        for offset, (_, payload) in enumerate(entries):
            self._storage.append(start + offset, self._seal(start + offset, payload))
            self._last_seq = start + offset
        return self._last_seq + 1

    def _seal(self, seq: int, payload: bytes) -> bytes:
        # SecretBox.encrypt's own format (nonce || box), without its wrapper objects:
        # this runs for every command queued.
        nonce = random_bytes(SecretBox.NONCE_SIZE)
        return nonce + crypto_secretbox_easy(_SEQ.pack(seq) + payload, nonce, self.key)

    def items(self) -> Iterator[tuple[int, bytes]]:
        for seq, sealed in self._storage.items():
            yield seq, self._open(seq, sealed)

    def _open(self, seq: int, sealed: bytes) -> bytes:
        try:
            plain = self._box.decrypt(sealed)
        except CryptoError:
            raise UsageError("queue entry does not open under this session's key") from None
        if _SEQ.unpack_from(plain)[0] != seq:
            raise UsageError("queue entry was moved to another sequence number")
        return bytes(plain[_SEQ.size :])
