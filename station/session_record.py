"""What a worker knows about its one session beyond the tunnel: every command's fate,
the phone's name and battery, the logout deadline the phone is told, and the key that
signs the wipe receipt. Counts, states and times only: the texts stay in the queue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from station.fates import CommandFate, Fate, FateBook
from tunnel.session import StationEndpoint
from wire.app import Device, Fates, Policy, Receipt, ReceiptKey
from wire.pipe import Commands
from wire.receipts import ReceiptFacts, sign


@dataclass
class SessionRecord:
    session: str
    station: str
    started: float = field(default_factory=time.time)
    fates: FateBook = field(default_factory=FateBook)
    device: Device | None = None
    policy: Policy | None = None
    last_heard: float | None = None  # unix time of the phone's last sign of life
    _key: SigningKey = field(default_factory=SigningKey.generate, repr=False)

    @property
    def receipt_key(self) -> ReceiptKey:
        return ReceiptKey(bytes(self._key.verify_key))

    def queued(self, seq: int, ttl: float | None) -> CommandFate:
        return self.fates.queued(seq, time.time(), ttl)

    def link_moved(self, endpoint: StationEndpoint) -> list[CommandFate]:
        """After the endpoint sent or heard something: what is now sent or applied."""
        now = time.time()
        changed = self.fates.acked_through(endpoint.channel.acked, now)
        if endpoint.linked:
            self.last_heard = now
            changed += self.fates.sent_through(endpoint.channel.sent_through, now)
        return changed

    def phone_says(self, report: Fates) -> list[CommandFate]:
        now = time.time()
        changed = []
        for seqs, state in (
            (report.expired, Fate.EXPIRED),
            (report.confirmed, Fate.APPLIED),
            (report.discarded, Fate.DISCARDED),
        ):
            for seq in seqs:
                fate = self.fates.phone_says(seq, state, now)
                if fate is not None:
                    changed.append(fate)
        return changed

    def set_policy(self, logout_in: float, reason: str) -> Policy:
        now = time.time()
        self.policy = Policy(round(now + logout_in, 1), reason, round(now, 3))
        return self.policy

    def current_policy(self) -> Policy | None:
        """The policy with the station's clock as it is now (the phone reads our clock
        from it, to judge commands' TTLs)."""
        if self.policy is None:
            return None
        return Policy(self.policy.logout_at, self.policy.reason, round(time.time(), 3))

    def summary(self) -> Commands:
        """For the supervisor (status) and the page's health line: counts and ages."""
        return Commands(self.fates.counts(), self.fates.oldest_open(), self.last_heard)

    def receipt(self, reason: str, undelivered: list[int]) -> Receipt:
        """Settle every open command as undelivered and sign the receipt."""
        before = self.fates.counts()
        sent = sum(before[f.value] for f in (Fate.SENT, Fate.APPLIED, Fate.EXPIRED, Fate.DISCARDED))
        self.fates.logout(time.time())
        facts = ReceiptFacts(
            session=self.session,
            station=self.station,
            reason=reason,
            started=self.started,
            ended=time.time(),
            queued=sum(before.values()),
            sent=sent,
            applied=before[Fate.APPLIED.value],
            undelivered=tuple(sorted(undelivered)),
        )
        return sign(self._key, facts)
