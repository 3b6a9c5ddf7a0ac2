"""The logout policy as a pure function of time: which sessions must end, and why.

The supervisor calls ``due(now, sessions)`` on a short tick and ends what it returns;
tests call it with injected time. Reasons are the ones the ``logout`` event reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

INACTIVITY = 120.0  # seconds without input at the kiosk
MAX_SESSION = 12 * 3600.0  # seconds since pairing
WIPE_EVERY = 3600.0  # the scheduled wipe's period, from the daemon's start


@dataclass(frozen=True)
class PolicyConfig:
    inactivity: float = INACTIVITY
    max_session: float = MAX_SESSION
    wipe_every: float = WIPE_EVERY


@dataclass(frozen=True)
class SessionTimes:
    paired_at: float
    last_input: float


class LogoutPolicy:
    def __init__(self, config: PolicyConfig, *, start: float) -> None:
        self.config = config
        self.next_wipe = start + config.wipe_every

    def due(self, now: float, sessions: Mapping[str, SessionTimes]) -> list[tuple[str, str]]:
        """(session, reason) for every session that must end now."""
        cfg = self.config
        scheduled = now >= self.next_wipe
        if scheduled:
            # Keep the period's phase even if a tick came late.
            while self.next_wipe <= now:
                self.next_wipe += cfg.wipe_every
        out: list[tuple[str, str]] = []
        for session, times in sessions.items():
            if scheduled:
                out.append((session, "scheduled"))
            elif now >= times.last_input + cfg.inactivity:
                out.append((session, "inactivity"))
            elif now >= times.paired_at + cfg.max_session:
                out.append((session, "max-age"))
        return out

    def logout_of(self, times: SessionTimes) -> tuple[float, str]:
        """When this session will be logged out if nothing changes, and why."""
        cfg = self.config
        return min(
            (times.last_input + cfg.inactivity, "inactivity"),
            (times.paired_at + cfg.max_session, "max-age"),
            (self.next_wipe, "scheduled"),
        )

    def next_deadline(self, sessions: Mapping[str, SessionTimes]) -> float:
        cfg = self.config
        deadlines = [self.next_wipe]
        for times in sessions.values():
            deadlines.append(times.last_input + cfg.inactivity)
            deadlines.append(times.paired_at + cfg.max_session)
        return min(deadlines)
