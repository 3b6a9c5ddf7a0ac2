"""What a worker tells the supervisor (``wire.pipe`` events), handled as it arrives:
nothing here waits, so one session never delays another, the policy or the control
socket."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from station.supervisor_shape import SupervisorShape
from station.worker_handle import WorkerHandle, WorkerInfo
from tunnel.refusal import code_paused_message
from wire import pipe

log = logging.getLogger(__name__)


class WorkerEvents(SupervisorShape):
    """Handling the workers' events (the supervisor's second job)."""

    def _on_worker_event(self, handle: WorkerHandle, event: pipe.WorkerEvent) -> None:
        """One worker event, handled at once: nothing here waits."""
        info = handle.info
        session = info.session
        match event:
            case pipe.OfferShown():
                self._offer_shown(info, event)
            case pipe.SessionPaired():
                self._paired(handle, event)
            case pipe.LinkUp() | pipe.LinkDown() if session:
                info.linked = isinstance(event, pipe.LinkUp)
                self.emit({"event": event.KIND, "session": session})
            case pipe.Queued(seq) if session:
                info.ledger.queued(seq)
                self.emit(
                    {"event": "queued", "session": session, "seq": seq, "depth": info.ledger.depth}
                )
            case pipe.Acked(through) if session:
                before = info.ledger.depth
                info.ledger.acked_through(through)
                if info.ledger.depth != before:
                    self.emit(
                        {
                            "event": "delivered",
                            "session": session,
                            "through": info.ledger.acked,
                            "depth": info.ledger.depth,
                        }
                    )
            case pipe.Activity():
                info.last_input = time.monotonic()
                self._policy_wake.set()
            case pipe.Commands(counts, oldest, heard):
                info.commands = dict(counts)
                info.oldest_queued_at = oldest
                info.last_heard = heard if heard is not None else info.last_heard
            case pipe.DeviceSeen(name, battery) if session:
                info.device_name, info.battery = name[:64], battery
                self.emit({"event": "device", "session": session, "name": name, "battery": battery})
                self._screen_changed()
            case pipe.Ended(reason, seqs):
                info.ended_reason = handle.stop_requested or reason
                info.ledger.settle(list(seqs))  # the worker's own queue, read as it ended
                self._emit_logout(handle, info.ended_reason)
            case pipe.Mirrored(version, _, messages):
                info.mirrored, info.mirror_version = messages, version
            case pipe.MirrorError(reason):
                # The phone sent something the worker cannot read: said, never dropped quietly.
                self.emit({"event": "mirror_error", "session": session, "reason": reason})
            case pipe.Hardening(measures):
                info.hardening = event
                if not self._hardening_shown:
                    self._hardening_shown = True
                    shown = {
                        n: {"applied": m.applied, "detail": m.detail} for n, m in measures.items()
                    }
                    self.emit({"event": "hardening", "worker": info.id, **shown})
            case pipe.PairingFailed(reason):
                self.emit({"event": "pairing_failed", "reason": reason})
            case pipe.CodePaused():
                self._code_paused(info, event)
            case pipe.SessionRefusal(refusal) if session:
                self.ended_sessions.add(session, refusal)
            case pipe.ResumeGap(first, last) if session:
                self.emit({"event": "resume_gap", "session": session, "first": first, "last": last})
            case _:
                # Session events of a worker that never paired: a bug in the worker.
                log.warning("worker %d sent %s before pairing", info.id, type(event).__name__)
        if isinstance(event, pipe.SessionPaired | pipe.LinkUp | pipe.LinkDown | pipe.Ended):
            self._screen_changed()

    def _offer_shown(self, info: WorkerInfo, event: pipe.OfferShown) -> None:
        info.offer_id = event.offer_id
        info.previous_offer_id = event.previous_offer_id
        info.pair_uri = event.pair_uri
        info.pair_code = event.pair_code
        info.offer_expires = float(event.expires_at)
        info.code_paused_until = time.monotonic() + event.code_paused_s
        out: dict[str, Any] = {
            "event": "ready" if not self._ready else "offer",
            "pair_uri": info.pair_uri,
            "pair_code": info.pair_code,
            "expires_at": info.offer_expires,
        }
        self._first_offer.set()
        if not self._ready:
            self._ready = True
            out.update(
                name=self.config.name,
                port=self.port,
                addresses=[f"{a}:{self.port}" for a in self.listen_addresses],
                mdns=self.config.mdns and self.mdns_note is None,
                mdns_note=self.mdns_note,
                control=str(self.control_path),
                ui=self.screen.url if self.screen is not None else None,
            )
        self.emit(out)
        self._update_advert()

    def _paired(self, handle: WorkerHandle, event: pipe.SessionPaired) -> None:
        info = handle.info
        info.session = event.session
        info.fingerprint = event.fingerprint
        info.device = event.device
        info.control = event.control
        info.page = event.page
        info.paired_at = info.last_input = time.monotonic()
        info.linked = True
        info.offer_id = info.pair_uri = info.pair_code = info.previous_offer_id = None
        if self.standby is handle:
            self.standby = None
        self.emit(
            {
                "event": "paired",
                "session": info.session,
                "device": info.device,
                "fingerprint": info.fingerprint,
            }
        )
        self._policy_wake.set()
        self._spawn(self._ensure_standby())

    def _code_paused(self, info: WorkerInfo, event: pipe.CodePaused) -> None:
        """Wrong codes: one line per pause (the back-off bounds them), never an offer line."""
        paused = event.paused_s
        now = time.monotonic()
        info.code_paused_until = now + paused
        info.pair_code = event.pair_code or info.pair_code
        self._code_streak = (event.failures, now, now + paused)
        self.emit(
            {
                "event": "code_paused",
                "paused_s": paused,
                "failures": event.failures,
                "pair_code": info.pair_code,
                "message": code_paused_message(paused),
            }
        )
        self._update_advert()
        # Show the code again when the pause ends.
        asyncio.get_running_loop().call_later(paused + 0.05, self._screen_changed)

    def _code_streak_args(self) -> list[str]:
        if self._code_streak is None:
            return []
        streak, last, until = self._code_streak
        now = time.monotonic()
        return [
            f"--code-streak={streak}",
            f"--code-quiet-s={now - last:.3f}",
            f"--code-paused-s={max(0.0, until - now):.3f}",
        ]

    def code_pause(self) -> float:
        """Seconds code pairing stays paused at the open offer (0: codes work)."""
        standby = self.standby.info if self.standby is not None else None
        if standby is None or standby.pair_uri is None:
            return 0.0
        return max(0.0, standby.code_paused_until - time.monotonic())

    def _emit_logout(self, handle: WorkerHandle, reason: str) -> None:
        """The ``logout`` event, once per session, when its end is decided or noticed."""
        info = handle.info
        if info.session is not None and not info.logout_emitted:
            info.logout_emitted = True
            self.emit({"event": "logout", "session": info.session, "reason": reason})
