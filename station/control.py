"""The station's local control: a Unix socket (mode 0600) speaking JSON lines.

The supervisor's socket answers ``status``, ``logout``, ``route`` and ``open``;
``route`` names the session worker's own socket, to which ``station send`` then talks
directly, so typed text never passes through the supervisor. ``open`` (and ``status``
with ``"link": true``) hands the owner a fresh one-use link to the kiosk page: this
0600 socket is the only way to one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station.errors import ConfigError
from station.jsonlines import MAX_LINE, serve_json_lines
from station.safedir import private_dir

if TYPE_CHECKING:
    from station.supervisor import Supervisor


class ControlServer:
    def __init__(self, path: Path, supervisor: Supervisor) -> None:
        self.path = path
        self._supervisor = supervisor
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        # Ours, not a symlink, writable by nobody else (created 0700 if missing).
        private_dir(self.path.parent, make_private=False)
        if self.path.exists():
            if _is_live(self.path):
                raise ConfigError(
                    f"another station is running on control socket {self.path} (use --control)"
                )
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._handle, path=str(self.path), limit=MAX_LINE
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_json_lines(reader, writer, self._request)

    async def _request(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        sup = self._supervisor
        session = request.get("session")
        if session is not None and not isinstance(session, str):
            return {"ok": False, "error": "session must be a string"}
        if op == "status":
            if request.get("link"):
                return {"ok": True, **sup.status(), **_launch(sup)}
            return {"ok": True, **sup.status()}
        if op == "open":
            return {"ok": True, **_launch(sup)}
        if op not in ("logout", "route"):
            return {"ok": False, "error": f"unknown op {op!r}"}
        matches = [h for h in sup.find(session) if h.stop_requested is None]
        if not matches:
            what = f"session {session}" if session else "paired session"
            return {"ok": False, "error": f"no {what} on this station"}
        if len(matches) > 1 and (op == "route" or session is None):
            ids = ", ".join(str(m.info.session)[:16] for m in matches)
            return {"ok": False, "error": f"several sessions ({ids}): choose --session"}
        if op == "route":
            info = matches[0].info
            return {"ok": True, "session": info.session, "control": info.control}
        # Answered once every worker is gone and its last events are read, so the
        # undelivered seqs are final.
        wiped = await asyncio.gather(*(sup.logout(h, "explicit") for h in matches))
        ended = [
            {
                "session": h.info.session,
                "undelivered": (w or {}).get("undelivered", h.info.ledger.depth),
                "undelivered_seqs": (w or {}).get("undelivered_seqs", h.info.ledger.undelivered),
            }
            for h, w in zip(matches, wiped, strict=True)
        ]
        return {"ok": True, "ended": ended}


def _launch(sup: Supervisor) -> dict[str, Any]:
    if sup.screen is None:
        return {"ok": False, "error": "this station serves no kiosk page (started with --no-ui)"}
    link, label, ttl = sup.screen.launch_link("link")
    return {"link": link, "label": label, "expires_in": ttl}


def _is_live(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
