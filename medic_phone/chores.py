"""When a running link does its background work: pure deadlines, ``now`` in.

Three chores, none of them on a fixed tick:

* **push** the phone's chats and messages to the station's mirror. A change is known
  the moment it exists: the link's own commit (a command applied, a decision), a poke
  from another process that wrote (``medic-phone say``, ``confirm``, another link of
  the same phone: the ``changed`` control request), or a moved ``data_version``. The
  first push of a quiet spell goes at once; under a stream of changes, at most one
  push every ``gap`` seconds carries all of them. A push the tunnel could not take
  (queue full) goes again after ``retry``.
* **recheck** ``PRAGMA data_version`` every ``recheck`` seconds while the session
  lives: the backstop for a writer that did not poke (one cheap statement, and a
  push only if another connection committed).
* **contact**: the station was heard; the store learns it ``contact_delay`` later (the
  latest contact of a burst of link changes), never on the path of a resume.

The asyncio side (``PhoneNode``) waits for the next deadline or a wake-up, asks
``due(now)``, does what is due, and reports back (``push_failed``, ``changed``).
"""

from __future__ import annotations

from dataclasses import dataclass

# s: pushes at most this often under a stream of changes (a lone change goes at once).
# Each push holds the loop for a while; at 50 ms, 2% of a stream's lone round trips met
# one, enough to set their p99; at 200 ms, 0.4-0.6% (the old poll's pace).
PUSH_GAP = 0.2
PUSH_RETRY = 1.0  # s: a push the tunnel's queue refused goes again this much later
RECHECK = 1.0  # s: another process's commits noticed at the latest this much later
CONTACT_DELAY = 1.0  # s: the last contact with the station is written down this late


@dataclass(frozen=True, slots=True)
class Due:
    push: bool = False
    recheck: bool = False
    contact: bool = False


class Chores:
    def __init__(
        self,
        *,
        gap: float = PUSH_GAP,
        retry: float = PUSH_RETRY,
        recheck: float = RECHECK,
        contact_delay: float = CONTACT_DELAY,
    ) -> None:
        self.gap = gap
        self.retry = retry
        self.recheck = recheck
        self.contact_delay = contact_delay
        self.live = False  # a session that has been up: pushes have somewhere to go
        self._push_at: float | None = None  # a change waits to be pushed from then on
        self._last_push: float | None = None
        self._recheck_at: float | None = None
        self._contact_at: float | None = None

    # -- what happened -------------------------------------------------------------------

    def linked(self, now: float) -> None:
        """The session is up (again): a push held back goes now; other writers are
        watched for. (Pushes made while the link was down wait in the tunnel's queue.)"""
        self.live = True
        if self._push_at is not None and self._push_at > now:
            self._push_at = now
        if self._recheck_at is None:
            self._recheck_at = now + self.recheck

    def ended(self) -> None:
        """The session ended: nothing is ever pushed to it again."""
        self.live = False
        self._push_at = self._recheck_at = None

    def changed(self, now: float) -> None:
        """The store holds a change the mirror may not have."""
        if self._push_at is None or self._push_at > now:
            self._push_at = now

    def push_failed(self, now: float) -> None:
        """The tunnel could not take the push: it goes again ``retry`` later."""
        if self._push_at is None:
            self._push_at = now + self.retry

    def heard(self, now: float) -> None:
        """The station was heard now: write it down ``contact_delay`` later."""
        if self._contact_at is None:
            self._contact_at = now + self.contact_delay

    # -- when, and what --------------------------------------------------------------------

    def _push_due(self) -> float | None:
        if not self.live or self._push_at is None:
            return None
        if self._last_push is None:
            return self._push_at
        return max(self._push_at, self._last_push + self.gap)

    def next_deadline(self) -> float | None:
        """The earliest moment a chore is due (None: nothing until something happens)."""
        times = [t for t in (self._push_due(), self._recheck_at, self._contact_at) if t is not None]
        return min(times) if times else None

    def due(self, now: float) -> Due:
        """What is due at ``now``, each taken as started: a change that comes after this
        is pushed by a later push."""
        push_at = self._push_due()
        push = push_at is not None and push_at <= now
        if push:
            self._push_at = None
            self._last_push = now
        recheck = self._recheck_at is not None and self._recheck_at <= now
        if recheck:
            self._recheck_at = now + self.recheck if self.live else None
        contact = self._contact_at is not None and self._contact_at <= now
        if contact:
            self._contact_at = None
        return Due(push, recheck, contact)
