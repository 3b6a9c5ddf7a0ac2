"""What the station shows about itself: ``station status`` and the pairing screen's
state. Ids, counts, states and addresses; never content."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from station.supervisor_shape import SupervisorShape
from station.worker_handle import WorkerInfo
from tunnel.refusal import code_paused_message
from wire.control import AcceptCounts, SessionStatus, StatusReply

log = logging.getLogger(__name__)


class StatusViews(SupervisorShape):
    """The station's status and the pairing screen's state."""

    def status(self) -> StatusReply:
        now = time.monotonic()
        sessions = []
        for handle in self.find(None):
            info: WorkerInfo = handle.info
            assert info.session is not None
            oldest = info.oldest_queued_at
            sessions.append(
                SessionStatus(
                    session=info.session,
                    fingerprint=info.fingerprint,
                    linked=info.linked,
                    queued=info.ledger.depth,
                    queued_seqs=tuple(info.ledger.undelivered[:50]),
                    oldest_queued_s=round(time.time() - oldest, 1)
                    if oldest is not None and info.ledger.depth
                    else None,
                    commands=dict(info.commands),
                    device=info.device_name,
                    battery=info.battery,
                    last_heard=info.last_heard,
                    acked_through=info.ledger.acked,
                    mirrored=info.mirrored,
                    mirror_version=info.mirror_version,
                    idle_s=round(now - info.last_input, 1),
                    age_s=round(now - (info.paired_at or now), 1),
                    control=info.control,
                    pid=handle.process.pid or 0,
                    ending=handle.stop_requested,
                )
            )
        standby = self.standby.info if self.standby is not None else None
        pause = self.code_pause()
        return StatusReply(
            name=self.config.name,
            pid=os.getpid(),
            port=self.port,
            uptime_s=round(now - self._started, 1),
            offer_open=bool(standby and standby.pair_uri),
            pair_uri=standby.pair_uri if standby else None,
            pair_code=standby.pair_code if standby else None,
            code_paused_s=round(pause, 1),
            code_pairing=code_paused_message(pause) if pause > 0 else "open",
            ui=self.screen.url if self.screen is not None else None,
            screens=self.screen.viewers if self.screen is not None else 0,
            kiosk_browser=self.browser.pid if self.browser is not None else None,
            sessions=tuple(sessions),
            addresses=tuple(f"{a}:{self.port}" for a in self.listen_addresses),
            mdns=self._advertiser is not None,
            accept=AcceptCounts(**self.gate.status()),
        )

    def _screen_state(self) -> dict[str, Any]:
        """What the pairing screen shows: ids, states and page addresses, no content."""
        standby = self.standby.info if self.standby is not None else None
        offer = None
        if standby is not None and standby.pair_uri is not None:
            paused = self.code_pause()
            offer = {
                "id": standby.offer_id,
                "code": standby.pair_code,
                "expires_at": standby.offer_expires,
                "code_paused_s": round(paused),
                "notice": code_paused_message(paused) if paused > 0 else None,
            }
        sessions = [
            {
                "id": str(h.info.session)[:16],
                "fingerprint": h.info.fingerprint,
                "name": h.info.device_name,
                "page": h.info.page,
                "linked": h.info.linked,
            }
            for h in self.find(None)
            if h.info.page and h.stop_requested is None and h.info.ended_reason is None
        ]
        full = len(self.find(None)) >= self.config.max_sessions
        return {
            "type": "state",
            "station": self.config.name,
            "offer": offer,
            "full": full and offer is None,
            "sessions": sessions,
            "wiped": self._recent_wipes(),
        }

    def _recent_wipes(self) -> list[dict[str, Any]]:
        """The last few logouts of the past 10 minutes: ids, reasons and seqs, no content."""
        now = time.time()
        recent = [w for w in self.ended.values() if now - float(w.get("at", 0)) < 600]
        return [
            {
                "id": str(w["session"])[:16],
                "name": w.get("name"),
                "reason": w["reason"],
                "at": w["at"],
                "count": w["undelivered"],
                "undelivered": w["undelivered_seqs"][:20],
            }
            for w in recent[-5:]
        ]

    def _offer_uri(self, offer_id: str) -> str | None:
        standby = self.standby.info if self.standby is not None else None
        if standby is None or not offer_id or standby.offer_id != offer_id:
            return None
        return standby.pair_uri
