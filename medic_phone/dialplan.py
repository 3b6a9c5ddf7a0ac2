"""Which station address to try next, and when: happy eyeballs over every candidate.

Sans-I/O like the tunnel: the caller says what happened (a candidate appeared, an
attempt failed, one won, the link was lost, the network came back) with ``now``, and
asks which attempts to start and when to ask again. No sockets, no clock.

The rules (RFC 8305's, with the station's addresses in place of address families):

* Candidates come from the URI, the saved link (where the station was last reached),
  ``--connect`` and mDNS answers. Every one is tried: an mDNS answer can point the
  phone somewhere, never decide anything, because only a completed Noise handshake
  wins (the caller's rule) and a candidate that fails is simply tried again later.
* Order: the last address that worked first; then the URI's, saved and
  ``--connect`` addresses; then mDNS answers. Within each, addresses on one of the
  phone's own networks first, and hosts interleaved, so that thirty answers pointing
  at one host cannot push another host to the back.
* Attempts start ``stagger`` apart (250 ms), or at once when one fails, until one wins.
* The first attempt after a loss is immediate; after a failure an address waits a
  jittered, growing delay (capped at ``cap``) before it is tried again. A ``kick``
  (an interface came back, the station announced itself) makes every address due now.
* While pairing, a candidate whose station refused for good is retired; pairing is
  over when every candidate is retired (the caller also stops at the offer's expiry).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

STAGGER = 0.25
BASE = 0.1
CAP = 1.0
MAX_INFLIGHT = 8
MAX_PER_CANDIDATE = 2
MAX_CANDIDATES = 32  # mDNS answers kept (the URI's and saved addresses always are)
MAX_PER_HOST = 4  # mDNS answers kept for one host (ports)
HANG = 1.0  # an attempt still connecting after this long gets a second one beside it

RANKS = {"last": 0, "connect": 1, "uri": 1, "saved": 1, "mdns": 2}


class Failure(Enum):
    REFUSED = "connection refused"  # nothing listens at that address and port
    UNREACHABLE = "unreachable"  # no route, or no answer to the TCP connect in time
    RESET = "reset"  # TCP up, then closed before the handshake answered (busy, limits)
    TIMEOUT = "timeout"  # connected, but no handshake answer in time
    REFUSAL = "refusal"  # a clear-text refusal (the station's, or anyone's)


@dataclass(slots=True)
class Candidate:
    host: str
    port: int
    source: str
    near: bool = False  # on one of the phone's own networks
    seq: int = 0  # order of discovery
    failures: int = 0
    retry_at: float = 0.0
    inflight: int = 0
    last_failure: Failure | None = None
    last_error: str = ""
    retired: bool = False

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"ws://{self.address}/"

    @property
    def rank(self) -> int:
        return RANKS.get(self.source, 3)


class DialPlan:
    def __init__(
        self,
        *,
        pairing: bool,
        stagger: float = STAGGER,
        base: float = BASE,
        cap: float = CAP,
        rng: random.Random | None = None,
    ) -> None:
        self.pairing = pairing
        self.stagger = stagger
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()
        self._by_address: dict[str, Candidate] = {}
        self._seq = 0
        self._next_start = 0.0
        self.linked = False
        self.round_started = 0.0  # when the current search began (start, loss, kick)

    # -- what the caller tells -----------------------------------------------------

    def add(self, host: str, port: int, source: str, now: float, *, near: bool = False) -> bool:
        """A candidate address; returns whether it is new. A better source promotes it."""
        key = Candidate(host, port, source).address
        known = self._by_address.get(key)
        if known is not None:
            if RANKS.get(source, 3) < known.rank:
                known.source = source
            known.near = known.near or near
            return False
        if source == "mdns" and not self._room_for(host):
            return False
        self._seq += 1
        self._by_address[key] = Candidate(host, port, source, near, self._seq, retry_at=now)
        self._next_start = min(self._next_start, now)
        return True

    def _room_for(self, host: str) -> bool:
        """Room for one more mDNS answer: a few per host, and a bounded table whose
        losers (the addresses that failed most, of the host with most) make way, so
        answers from a flood of fake adverts cannot keep a real one out."""
        answers = [c for c in self._by_address.values() if c.source == "mdns"]
        if sum(1 for c in answers if c.host == host) >= MAX_PER_HOST:
            return False
        if len(answers) < MAX_CANDIDATES:
            return True
        per_host: dict[str, int] = {}
        for c in answers:
            per_host[c.host] = per_host.get(c.host, 0) + 1
        idle = [c for c in answers if c.inflight == 0 and c.failures > 0]
        if not idle:
            return False
        loser = max(idle, key=lambda c: (c.failures, per_host[c.host], c.seq))
        del self._by_address[loser.address]
        return True

    def started(self, candidate: Candidate, now: float) -> None:
        candidate.inflight += 1
        # How soon another attempt may start here even if this one hangs (a SYN to a
        # host that is gone waits for the connect timeout): a fresh SYN then helps.
        candidate.retry_at = now + HANG
        self._next_start = now + self.stagger

    def failed(
        self,
        candidate: Candidate,
        failure: Failure,
        error: str,
        now: float,
        *,
        final: bool = False,
    ) -> None:
        """An attempt failed. ``final``: the station refused this pairing for good."""
        candidate.inflight = max(0, candidate.inflight - 1)
        candidate.failures += 1
        candidate.last_failure = failure
        candidate.last_error = error
        if final and self.pairing:
            candidate.retired = True
        again = now + self._delay(candidate.failures)
        candidate.retry_at = again if candidate.inflight == 0 else max(candidate.retry_at, again)
        self._next_start = now  # RFC 8305: a failure starts the next attempt at once

    def abandoned(self, candidate: Candidate) -> None:
        """An attempt that lost the race or was cancelled: no verdict on the address."""
        candidate.inflight = max(0, candidate.inflight - 1)

    def won(self, candidate: Candidate, now: float) -> None:
        candidate.inflight = max(0, candidate.inflight - 1)
        candidate.failures = 0
        candidate.last_failure = None
        candidate.last_error = ""
        candidate.source = "last"
        self._seq += 1
        candidate.seq = -self._seq  # the most recent winner leads its rank
        self.linked = True

    def lost(self, now: float) -> None:
        """The link is gone: the first attempt goes now."""
        self.linked = False
        self.kick(now)

    def kick(self, now: float) -> None:
        """Something changed for the better (network back, station announced): every
        address is due now, backoffs start again."""
        self.round_started = now
        self._next_start = now
        for candidate in self._by_address.values():
            candidate.failures = 0
            candidate.retry_at = now

    # -- what the caller asks ------------------------------------------------------

    @property
    def candidates(self) -> list[Candidate]:
        """Every candidate, in the order they are tried."""
        levels: dict[tuple[int, bool], list[Candidate]] = {}
        for candidate in sorted(self._by_address.values(), key=lambda c: c.seq):
            levels.setdefault((candidate.rank, not candidate.near), []).append(candidate)
        ordered: list[Candidate] = []
        for level in sorted(levels):
            ordered.extend(_interleave_hosts(levels[level]))
        return ordered

    def due(self, now: float) -> Candidate | None:
        """The next attempt to start now, if any (call again until None)."""
        if self.linked or now < self._next_start:
            return None
        if sum(c.inflight for c in self._by_address.values()) >= MAX_INFLIGHT:
            return None
        for candidate in self.candidates:
            if (
                not candidate.retired
                and candidate.retry_at <= now
                and candidate.inflight < MAX_PER_CANDIDATE
            ):
                return candidate
        return None

    def next_deadline(self) -> float | None:
        """When ``due`` may have something new, short of a report from the caller."""
        if self.linked:
            return None
        waiting = [c.retry_at for c in self._by_address.values() if not c.retired]
        if not waiting:
            return None
        return max(self._next_start, min(waiting))

    @property
    def inflight(self) -> int:
        return sum(c.inflight for c in self._by_address.values())

    @property
    def exhausted(self) -> bool:
        """Pairing: every candidate refused for good and nothing is still trying."""
        cands = self._by_address.values()
        return bool(cands) and all(c.retired for c in cands) and self.inflight == 0

    def _delay(self, failures: int) -> float:
        bound = min(self.cap, self.base * 2 ** max(0, failures - 1))
        return self._rng.uniform(bound / 2, bound)


def _interleave_hosts(candidates: Iterable[Candidate]) -> list[Candidate]:
    by_host: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        by_host.setdefault(candidate.host, []).append(candidate)
    queues = list(by_host.values())
    out: list[Candidate] = []
    while queues:
        for queue in list(queues):
            out.append(queue.pop(0))
            if not queue:
                queues.remove(queue)
    return out
