"""Every command's fate at the station, as the kiosk page and ``station status`` show it.

    queued --written on a live link--> sent --the phone's durable cursor--> applied
    queued/sent/applied --the phone found it older than its TTL--> expired
    expired --the medic confirmed it on the phone--> applied (confirmed)
    expired --the medic discarded it--> discarded
    queued/sent --logout--> undelivered

"applied" means the phone's store holds it: the phone acknowledges a command only after
the transaction that applied it commits. An expired command is acknowledged too (it is
stored, kept apart), so the phone says which ones expired before it acknowledges them.
Pure bookkeeping: times come in as arguments.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum


class Fate(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    APPLIED = "applied"
    EXPIRED = "expired"
    DISCARDED = "discarded"
    UNDELIVERED = "undelivered"


_OPEN = (Fate.QUEUED, Fate.SENT)
# What the phone may say of a command, from which states.
_PHONE_MOVES: dict[Fate, tuple[Fate, ...]] = {
    Fate.EXPIRED: (Fate.QUEUED, Fate.SENT, Fate.APPLIED),
    Fate.APPLIED: (Fate.EXPIRED,),  # confirmed by the medic
    Fate.DISCARDED: (Fate.EXPIRED,),
}
_FINAL_KEPT = 1000  # settled commands remembered for the page and `send --wait`


@dataclass(slots=True)
class CommandFate:
    seq: int
    state: Fate
    queued_at: float  # unix seconds
    changed_at: float
    ttl: float | None = None
    confirmed: bool = False

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "seq": self.seq,
            "state": self.state.value,
            "queued_at": round(self.queued_at, 3),
            "at": round(self.changed_at, 3),
        }
        if self.ttl is not None:
            out["ttl"] = self.ttl
        if self.confirmed:
            out["confirmed"] = True
        return out


class FateBook:
    """Constant work per command: open commands wait in two ordered queues (not yet
    written; written, not acknowledged), settled ones are remembered up to a bound."""

    def __init__(self) -> None:
        self._fates: dict[int, CommandFate] = {}
        self._unsent: deque[int] = deque()
        self._unacked: deque[int] = deque()
        self._settled: deque[int] = deque()
        self._counts = dict.fromkeys(Fate, 0)

    def queued(self, seq: int, now: float, ttl: float | None = None) -> CommandFate:
        fate = CommandFate(seq, Fate.QUEUED, now, now, ttl)
        self._fates[seq] = fate
        self._unsent.append(seq)
        self._counts[Fate.QUEUED] += 1
        return fate

    def sent_through(self, seq: int, now: float) -> list[CommandFate]:
        """Everything through ``seq`` was written on a live link."""
        moved = []
        while self._unsent and self._unsent[0] <= seq:
            fate = self._fates.get(self._unsent.popleft())
            if fate is None or fate.state is not Fate.QUEUED:
                continue  # the phone already said it expired
            self._set(fate, Fate.SENT, now)
            self._unacked.append(fate.seq)
            moved.append(fate)
        return moved

    def acked_through(self, seq: int, now: float) -> list[CommandFate]:
        """The phone's durable cursor reached ``seq``."""
        moved = []
        for line in (self._unacked, self._unsent):
            while line and line[0] <= seq:
                fate = self._fates.get(line.popleft())
                if fate is None or fate.state not in _OPEN:
                    continue  # expired: acknowledged, but kept apart on the phone
                self._set(fate, Fate.APPLIED, now)
                self._settle(fate)
                moved.append(fate)
        moved.sort(key=lambda f: f.seq)
        return moved

    def phone_says(self, seq: int, state: Fate, now: float) -> CommandFate | None:
        """The phone's word on a command it holds: expired (it says so before it
        acknowledges), then confirmed (applied after all) or discarded. Idempotent;
        unknown seqs and impossible moves are ignored."""
        fate = self._fates.get(seq)
        if fate is None or fate.state not in _PHONE_MOVES.get(state, ()):
            return None
        if state is Fate.EXPIRED and fate.confirmed:
            return None
        if state is Fate.APPLIED:
            fate.confirmed = True
        if fate.state in _OPEN:
            self._settle(fate)
        self._set(fate, state, now)
        return fate

    def logout(self, now: float) -> list[CommandFate]:
        """Whatever never reached the phone is undelivered, for good."""
        seqs = sorted([*self._unsent, *self._unacked])
        self._unsent.clear()
        self._unacked.clear()
        moved = []
        for seq in seqs:
            fate = self._fates.get(seq)
            if fate is None or fate.state not in _OPEN:
                continue
            self._set(fate, Fate.UNDELIVERED, now)
            self._settle(fate)
            moved.append(fate)
        return moved

    def get(self, seq: int) -> CommandFate | None:
        return self._fates.get(seq)

    def all(self) -> list[CommandFate]:
        return sorted(self._fates.values(), key=lambda f: f.seq)

    def counts(self) -> dict[str, int]:
        return {fate.value: n for fate, n in self._counts.items()}

    def oldest_open(self) -> float | None:
        """When the oldest command not yet applied on the phone was queued (unix s)."""
        firsts = [self._fates[line[0]].queued_at for line in (self._unacked, self._unsent) if line]
        return min(firsts, default=None)

    def _set(self, fate: CommandFate, state: Fate, now: float) -> None:
        self._counts[fate.state] -= 1
        self._counts[state] += 1
        fate.state, fate.changed_at = state, now

    def _settle(self, fate: CommandFate) -> None:
        self._settled.append(fate.seq)
        while len(self._settled) > _FINAL_KEPT:
            del self._fates[self._settled.popleft()]  # its count stays: counts are totals
