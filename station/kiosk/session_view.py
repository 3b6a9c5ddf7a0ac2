"""What one session's page shows, kept up to date from the worker's events.

The worker tells the view what happened (the mirror changed, the link went down, the
phone acknowledged, the supervisor moved the logout deadline); the view turns that
into messages for every open page and answers what the page asks for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from station.fates import CommandFate
from station.kiosk.session_page import SessionPage
from station.mirror import Mirror, chat_row, message_row
from tunnel.aio.pump import EndpointPump
from wire.app import Device, MirrorUpdate
from wire.control import Failure, Send, SendReply
from wire.pipe import Commands

# A drop shorter than this is "reconnecting"; longer, the page says "offline".
RECONNECTING_FOR = 10.0

SendCommand = Callable[[Send], Awaitable[SendReply | Failure]]


class SessionView:
    def __init__(
        self,
        *,
        station: str,
        session: str,
        fingerprint: str,
        mirror: Mirror,
        pump: EndpointPump,
        framed_by: str | None,
        send_command: SendCommand,
        on_logout: Callable[[], None],
        on_activity: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Every reading of time goes through ``clock``, so a test can drive the banner and
        # the countdown on a fake one (timers are armed by duration, on the loop).
        self._clock = clock
        self._hello = {
            "type": "hello",
            "station": station,
            "session": session[:16],
            "fingerprint": fingerprint,
        }
        self._mirror = mirror
        self._pump = pump
        self._send_command = send_command
        self._on_logout = on_logout
        self._on_activity = on_activity
        self._down_since: float | None = None
        self._offline_timer: asyncio.TimerHandle | None = None
        self._last_link: dict[str, Any] | None = None
        self._deadline: tuple[float, str] | None = None  # (monotonic time, reason)
        self._fates: dict[int, dict[str, object]] = {}  # seq -> its latest fate, no text
        self._health: dict[str, object] | None = None
        self.page = SessionPage(framed_by=framed_by, welcome=self._welcome, on_request=self._ask)

    async def start(self) -> str:
        await self.page.start()
        return self.page.url

    # -- what the page is told ---------------------------------------------------------

    async def _welcome(self) -> list[dict[str, Any]]:
        chats, messages = await self._mirror.state()
        out: list[dict[str, Any]] = [
            self._hello,
            {"type": "mirror", "reset": True, "chats": chats, "messages": messages},
            self._link_message(),
        ]
        if self._deadline is not None:
            out.append(self._deadline_message())
        if self._fates:
            out.append({"type": "fates", "items": list(self._fates.values())})
        if self._health is not None:
            out.append(self._health)
        return out

    def _link_message(self) -> dict[str, Any]:
        endpoint = self._pump.endpoint
        if endpoint.linked:
            state = "online"
        elif self._down_since is not None and self._clock() - self._down_since < RECONNECTING_FOR:
            state = "reconnecting"
        else:
            state = "offline"
        return {"type": "link", "state": state, "queued": endpoint.undelivered}

    def _deadline_message(self) -> dict[str, Any]:
        assert self._deadline is not None
        when, reason = self._deadline
        return {
            "type": "deadline",
            "in_s": round(max(0.0, when - self._clock()), 2),
            "reason": reason,
        }

    def link_changed(self) -> None:
        """The link went up or down, or the queue's depth moved."""
        linked = self._pump.endpoint.linked
        if linked:
            self._down_since = None
            if self._offline_timer is not None:
                self._offline_timer.cancel()
                self._offline_timer = None
        elif self._down_since is None:
            self._down_since = self._clock()
            loop = asyncio.get_running_loop()
            self._offline_timer = loop.call_later(RECONNECTING_FOR, self.link_changed)
        message = self._link_message()
        if message != self._last_link:
            self._last_link = message
            self.page.broadcast(message)

    def acked(self, through: int) -> None:
        self.page.broadcast({"type": "acked", "through": through})
        self.link_changed()

    def mirrored(self, update: MirrorUpdate) -> None:
        self.page.broadcast(
            {
                "type": "mirror",
                "reset": update.kind == "snapshot",
                "chats": [chat_row(*c) for c in update.chats],
                "messages": [message_row(*m) for m in update.messages],
            }
        )

    def fates(self, changed: list[CommandFate]) -> None:
        """Commands moved (queued, sent, applied, expired, ...): the ticks on the page."""
        items = [fate.as_dict() for fate in changed]
        for item in items:
            self._fates[int(str(item["seq"]))] = item
        while len(self._fates) > 1000:
            del self._fates[next(iter(self._fates))]
        self.page.broadcast({"type": "fates", "items": items})

    def health(self, summary: Commands, device: Device | None) -> None:
        """The link at a glance: reachable, last contact, queue, oldest queued, battery."""
        message = {
            "type": "health",
            "reachable": self._pump.endpoint.linked,
            "last_heard": summary.last_heard,
            "queued": self._pump.endpoint.undelivered,
            "oldest_queued_at": summary.oldest_queued_at,
            "device": device.name if device else None,
            "battery": device.battery if device else None,
        }
        if message != self._health:
            self._health = message
            self.page.broadcast(message)

    def deadline(self, logout_in: float, reason: str) -> None:
        self._deadline = (self._clock() + logout_in, reason)
        self.page.broadcast(self._deadline_message())

    async def close(self, reason: str) -> None:
        if self._offline_timer is not None:
            self._offline_timer.cancel()
        undelivered = sorted(s for s, f in self._fates.items() if f["state"] == "undelivered")
        await self.page.close(reason, undelivered)

    # -- what the page asks for --------------------------------------------------------

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any] | None:
        op = request["op"]
        ref = request.get("ref")
        if op == "send":
            text, chat = request.get("text"), request.get("chat")
            if not isinstance(text, str) or (chat is not None and not isinstance(chat, str)):
                return {"type": "error", "ref": ref, "message": "send needs text (and a chat id)"}
            reply = await self._send_command(Send(text, chat))
            self.link_changed()
            if isinstance(reply, Failure):
                return {"type": "error", "ref": ref, "message": reply.error}
            return {"type": "sent", "ref": ref, "seq": reply.seq, "text": text, "chat": chat}
        if op == "activity":
            await self._on_activity()
            return None
        if op == "logout":
            self._on_logout()
            return None
        return {"type": "error", "ref": ref, "message": f"unknown op {op!r}"}
