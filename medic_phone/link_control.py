"""One running link, one owner: the lock and the local control socket of a link.

Each ``medic-phone link`` holds an advisory ``flock`` on a file named after its link
(the offer or code it was made from), so a second ``link`` of the same link is refused
with the holder's pid instead of racing it for the resumption secret. Beside the lock,
the running link answers JSON lines on a 0600 Unix socket: ``info`` and ``unlink``
(what ``medic-phone unlink`` uses). Other links of the same phone have their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medic_phone.errors import PhoneError

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST = 4096


class LinkBusy(PhoneError):
    """Another process is already running this link (the user's second `link`)."""


def link_tag(key: str) -> str:
    """A short file-name-safe name for a link key ('offer:<id>' or 'code:<code>')."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class LinkLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, home: Path, key: str) -> LinkLock:
        path = home / f"link-{link_tag(key)}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").split()
            os.close(fd)
            pid = holder[0] if holder else "?"
            since = ""
            if len(holder) > 1 and holder[1].replace(".", "", 1).isdigit():
                started = datetime.fromtimestamp(float(holder[1]), UTC)
                since = f", since {started:%H:%M:%S} UTC"
            raise LinkBusy(
                f"this link is already running in process {pid} (medic-phone link{since});"
                " stop that process first, or use `medic-phone unlink` to log the station out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {time.time():.0f}\n".encode())
        return cls(path, fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # the file stays (see station.lock)
            self._fd = -1


class ControlSocket:
    """The running link's 0600 socket; one JSON request and one reply per line."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # ours: we hold the link's lock
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST
            )
        finally:
            os.umask(old)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise TypeError(request)
                except (ValueError, TypeError):
                    reply: dict[str, Any] = {"ok": False, "error": "malformed request"}
                else:
                    reply = await self._handler(request)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()


@dataclass(frozen=True)
class RunningLink:
    socket: Path
    info: dict[str, Any]


def running_links(home: Path) -> list[RunningLink]:
    """Every link running from this home, with what it says about itself."""
    found = []
    for path in sorted(home.glob("link-*.sock")):
        with contextlib.suppress(PhoneError):
            reply = ask(path, {"op": "info"}, timeout=2.0)
            if reply.get("ok"):
                found.append(RunningLink(path, reply))
    return found


def ask(path: Path, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """One request to a running link; ``PhoneError`` if it cannot be reached."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            line = sock.makefile("rb").readline()
    except (FileNotFoundError, ConnectionRefusedError):
        raise PhoneError(f"no running link at {path}") from None
    except TimeoutError:
        raise PhoneError(f"the running link did not answer within {timeout:.0f} s") from None
    except OSError as exc:
        raise PhoneError(f"cannot reach the running link: {exc.strerror}") from None
    try:
        reply = json.loads(line)
    except ValueError:
        raise PhoneError("the running link sent a malformed reply") from None
    if not isinstance(reply, dict):
        raise PhoneError("the running link sent a malformed reply")
    return reply
