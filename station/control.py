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
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from station.errors import ConfigError
from station.safedir import private_dir
from wire import jsonlines
from wire.control import (
    STATION_REQUESTS,
    EndedSession,
    Failure,
    LaunchLink,
    Logout,
    LogoutReply,
    Open,
    Route,
    RouteReply,
    Status,
)

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
            self._server = await asyncio.start_unix_server(self._handle, path=str(self.path))
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
        await jsonlines.serve(reader, writer, STATION_REQUESTS, self._request)

    async def _request(self, request: object) -> object:
        sup = self._supervisor
        match request:
            case Status(link=False):
                return sup.status()
            case Status(link=True):
                launch = _launch(sup)
                if isinstance(launch, Failure):
                    return launch
                return replace(
                    sup.status(), link=launch.link, label=launch.label, expires_in=launch.expires_in
                )
            case Open():
                return _launch(sup)
            case Route(session) | Logout(session):
                pass
            case _:
                return Failure(f"not a request of a station: {type(request).__name__}")
        matches = [h for h in sup.find(session) if h.stop_requested is None]
        if not matches:
            what = f"session {session}" if session else "paired session"
            return Failure(f"no {what} on this station")
        if len(matches) > 1 and (isinstance(request, Route) or session is None):
            ids = ", ".join(str(m.info.session)[:16] for m in matches)
            return Failure(f"several sessions ({ids}): choose --session")
        if isinstance(request, Route):
            info = matches[0].info
            assert info.session is not None and info.control is not None
            return RouteReply(info.session, info.control)
        # Answered once every worker is gone and its last events are read, so the
        # undelivered seqs are final.
        wiped = await asyncio.gather(*(sup.logout(h, "explicit") for h in matches))
        ended = []
        for handle, event in zip(matches, wiped, strict=True):
            seqs = event["undelivered_seqs"] if event else handle.info.ledger.undelivered
            ended.append(EndedSession(str(handle.info.session), len(seqs), tuple(seqs)))
        return LogoutReply(tuple(ended))


def _launch(sup: Supervisor) -> LaunchLink | Failure:
    if sup.screen is None:
        return Failure("this station serves no kiosk page (started with --no-ui)")
    link, label, ttl = sup.screen.launch_link("link")
    return LaunchLink(link, label, ttl)


def _is_live(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
