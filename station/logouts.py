"""Logouts: decided by the policy (inactivity, maximum age, the scheduled wipe), by the
kiosk or the phone, or by a shutdown; each one unconditional (STOP, then SIGKILL) and
reported exactly once it is done."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from station.policy import (
    LogoutPolicy,
    PolicyConfig,
    SessionTimes,
)
from station.supervisor_shape import SupervisorShape
from station.worker_handle import WorkerHandle
from tunnel.handshake import MessageType
from wire import pipe

log = logging.getLogger(__name__)


class Logouts(SupervisorShape):
    """The logout policy and ending sessions (the supervisor's third job)."""

    # -- phones ----------------------------------------------------------------------

    def decide_logout(self, handle: WorkerHandle, reason: str) -> None:
        """The logout is decided now: its deadline starts and everyone is told at once."""
        if handle.stop_requested is None:
            handle.request_stop(reason)
            self._emit_logout(handle, reason)
            self._screen_changed()  # the tab goes at once; the worker clears its page

    async def logout(self, handle: WorkerHandle, reason: str) -> dict[str, Any] | None:
        """End a session's worker (the wipe); returns its ``wiped`` event once it is gone."""
        self.decide_logout(handle, reason)
        await handle.stop(reason)
        session = handle.info.session
        if session is None:
            return None
        for _ in range(100):  # the reaper runs right after the process is read to EOF
            if session in self.ended:
                return self.ended[session]
            await asyncio.sleep(0.01)
        return self.ended.get(session)

    def find(self, session: str | None) -> list[WorkerHandle]:
        paired = [w for w in self.workers.values() if w.info.session]
        if session is None:
            return paired
        return [w for w in paired if w.info.session and w.info.session.startswith(session)]

    async def _policy_loop(self) -> None:
        """Wakes at the policy's next deadline, or at once when a session pairs, takes
        input or ends; never waits on a worker."""
        cfg = self.config
        policy = LogoutPolicy(
            PolicyConfig(cfg.inactivity, cfg.max_session, cfg.wipe_every),
            start=time.monotonic(),
        )
        while not self._stopping.is_set():
            self._policy_wake.clear()
            live = {
                str(h.info.session): h
                for h in self.workers.values()
                if h.info.session and h.info.paired_at is not None and not h.stop_requested
            }
            times = {
                sid: SessionTimes(float(h.info.paired_at or 0), h.info.last_input)
                for sid, h in live.items()
            }
            now = time.monotonic()
            for session, reason in policy.due(now, times):
                self.decide_logout(live[session], reason)
                self._spawn(self.logout(live[session], reason))
            for session, handle in live.items():
                if handle.stop_requested is None:
                    self._tell_deadline(handle, policy.logout_of(times[session]))
            wait = policy.next_deadline(times) - time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.0) + 0.001):
                    await self._policy_wake.wait()

    def _tell_deadline(self, handle: WorkerHandle, logout: tuple[float, str]) -> None:
        """Tell the worker when its session ends (its page counts down) when that moved."""
        when, reason = logout
        sent = handle.info.policy_sent
        if sent is not None and sent[1] == reason and abs(sent[0] - when) < 0.5:
            return
        handle.info.policy_sent = logout
        handle.post(pipe.PolicyDeadline(round(when - time.monotonic(), 2), reason))


_ACCEPT = bytes([MessageType.ACCEPT])
