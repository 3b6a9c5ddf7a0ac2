"""What the parts of the supervisor share: its state and the few methods each part calls
on another. ``Supervisor`` (station/supervisor.py) is the one class that has them all;
its jobs live in mixins of their own modules (``PhoneRelay``, ``WorkerEvents``,
``StatusViews``), each typed against this shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station.accept import AcceptGate
from station.ended_sessions import EndedSessions
from station.kiosk.browser import KioskBrowser
from station.kiosk.pairing_screen import PairingScreen
from station.phone_socket import PhoneSocket
from station.worker_handle import WorkerHandle

if TYPE_CHECKING:
    from station.config import StationConfig


class SupervisorShape:
    config: StationConfig
    port: int
    control_path: Path
    workers: dict[int, WorkerHandle]
    standby: WorkerHandle | None
    gate: AcceptGate
    listen_addresses: list[str]
    mdns_note: str | None
    screen: PairingScreen | None
    browser: KioskBrowser | None
    ended: dict[str, dict[str, Any]]  # session -> its wiped event (and when, and who)
    ended_sessions: EndedSessions
    _conns: dict[int, tuple[PhoneSocket, WorkerHandle]]
    _next_conn: int
    _peers: dict[str, None]
    _advertiser: Any
    _code_streak: tuple[int, float, float] | None
    _first_offer: asyncio.Event
    _policy_wake: asyncio.Event
    _stopping: asyncio.Event
    _hardening_shown: bool
    _ready: bool
    _started: float

    def emit(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        raise NotImplementedError

    def find(self, session: str | None) -> list[WorkerHandle]:
        raise NotImplementedError

    async def _ensure_standby(self) -> None:
        raise NotImplementedError

    def _update_advert(self) -> None:
        raise NotImplementedError

    def _screen_changed(self) -> None:
        raise NotImplementedError

    def code_pause(self) -> float:
        raise NotImplementedError

    def _emit_logout(self, handle: WorkerHandle, reason: str) -> None:
        raise NotImplementedError
