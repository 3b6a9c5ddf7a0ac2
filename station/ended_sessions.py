"""The refusals the supervisor answers with for sessions whose worker is gone.

When a session ends, its worker hands over one precomputed ``SESSION_ENDED`` refusal
that carries a MAC under every resumption secret it would still have accepted (see
``tunnel.refusal``). The supervisor holds no secret and cannot make one; it only keeps
these bytes and sends them back to a phone that tries to resume that session, which is
how a phone away at logout learns, authenticated, that its session is over.

What is kept is content-free (a random session id, MACs, a logout reason and the seqs
never delivered), bounded in count and in age, in RAM only, and gone at shutdown.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from tunnel.errors import MalformedRecord
from tunnel.refusal import RefuseCode, parse_refusal

MAX_SESSIONS = 1024
MAX_AGE = 24 * 3600.0  # a phone away for longer gets the clear "unknown session"


class EndedSessions:
    def __init__(
        self,
        *,
        max_sessions: int = MAX_SESSIONS,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_sessions
        self._max_age = max_age
        self._clock = clock
        self._kept: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def add(self, session: str, refusal: bytes) -> bool:
        """Keep a worker's refusal; False (and nothing kept) if it is not one."""
        try:
            parsed = parse_refusal(refusal)
        except MalformedRecord:
            return False
        if parsed.code is not RefuseCode.SESSION_ENDED or not parsed.macs:
            return False
        self._kept.pop(session, None)
        self._kept[session] = (self._clock(), refusal)
        self._expire()
        while len(self._kept) > self._max:
            self._kept.popitem(last=False)
        return True

    def get(self, session: str) -> bytes | None:
        self._expire()
        entry = self._kept.get(session)
        return entry[1] if entry is not None else None

    def clear(self) -> None:
        self._kept.clear()

    def _expire(self) -> None:
        cutoff = self._clock() - self._max_age
        while self._kept:
            first = next(iter(self._kept.values()))
            if first[0] >= cutoff:
                return
            self._kept.popitem(last=False)
