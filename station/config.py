"""The station's settings (every default of `station start` lives here) and where its
control socket is."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from station.policy import INACTIVITY, MAX_SESSION, WIPE_EVERY
from tunnel.queue import DEFAULT_MAX_COUNT
from wire.control import STATION_REQUESTS, Status, StatusReply


@dataclass(frozen=True)
class StationConfig:
    name: str = "field-station"
    host: str = "0.0.0.0"  # noqa: S104 (all interfaces: phones are on the LAN)
    port: int = 8765
    mdns: bool = True
    inactivity: float = INACTIVITY
    max_session: float = MAX_SESSION
    wipe_every: float = WIPE_EVERY
    control: Path | None = None
    offer_ttl: float = 30.0
    max_sessions: int = 16
    queue_limit: int = DEFAULT_MAX_COUNT
    command_ttl: float | None = None  # seconds; a command older on arrival is kept apart
    ui: bool = True  # serve the kiosk page on 127.0.0.1
    ui_port: int = 0
    kiosk_browser: str | None = None  # a Chromium to launch on the kiosk page


Emit = Callable[[dict[str, Any]], None]


def rfc3339_now() -> str:
    """The time of an event, as every JSON event carries it (``ts``): RFC 3339, UTC."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def holder(control_path: Path) -> str:
    """`` (pid N)`` of the station answering on ``control_path``, if it answers."""
    from wire import WireError, jsonlines

    try:
        reply = jsonlines.ask(control_path, Status(), STATION_REQUESTS, StatusReply, timeout=1.0)
    except WireError:
        return ""
    return f" (pid {reply.pid})" if isinstance(reply, StatusReply) else ""


def default_control_path() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    # Without a runtime dir, a per-user directory in $TMPDIR (else /tmp); the station
    # refuses it unless it is ours (see station.safedir: no symlink or squatting games).
    tmp = os.environ.get("TMPDIR") or "/tmp"  # noqa: S108
    base = Path(runtime) if runtime else Path(tmp) / f"fieldstation-{os.getuid()}"
    return base / "fieldstation.sock"
