"""One running link, one owner: the lock and the local control socket of a link.

Each ``medic-phone link`` holds an advisory ``flock`` on a file named after its link
(the offer or code it was made from), so a second ``link`` of the same link is refused
with the holder's pid instead of racing it for the resumption secret. Beside the lock,
the running link answers ``wire.control`` requests on a 0600 Unix socket: ``info``,
``unlink``, ``decide`` and ``changed``. Other links of the same phone have their own.

A process that writes to the phone's store (``medic-phone say``, ``confirm``, a link
applying commands) tells every other running link with ``changed`` (``tell_links``),
so each pushes the change to its station's mirror at once instead of finding it later.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from medic_phone.errors import PhoneError
from wire import WireError, jsonlines
from wire.control import LINK_REQUESTS, Changed, Failure, Info, InfoReply, Noted

Handler = Callable[[object], Awaitable[object]]
R = TypeVar("R")


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
    """The running link's 0600 socket (``wire.control``: info, unlink, decide, changed)."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        # Ours to replace: we hold the link's lock.
        self._server = await jsonlines.listen(self.path, LINK_REQUESTS, self._handler)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass(frozen=True)
class RunningLink:
    socket: Path
    info: InfoReply


def running_links(home: Path) -> list[RunningLink]:
    """Every link running from this home, with what it says about itself."""
    found = []
    for path in sorted(home.glob("link-*.sock")):
        with contextlib.suppress(PhoneError):
            reply = ask(path, Info(), InfoReply, timeout=2.0)
            if isinstance(reply, InfoReply):
                found.append(RunningLink(path, reply))
    return found


def ask(path: Path, request: object, expected: type[R], *, timeout: float) -> R | Failure:
    """One request to a running link; ``PhoneError`` if it cannot be reached."""
    try:
        return jsonlines.ask(path, request, LINK_REQUESTS, expected, timeout=timeout)
    except jsonlines.Unreachable as exc:
        raise PhoneError(f"no running link answers: {exc}") from None
    except WireError as exc:
        raise PhoneError(f"the running link sent a malformed reply: {exc}") from None


TELL_TIMEOUT = 1.0  # s: a link too busy to take note this fast finds the change itself


def tell_links(home: Path, *, skip: Path | None = None) -> int:
    """Tell every link running from ``home`` (but ``skip``) that the store changed; how
    many took note. Never fails: a link that does not answer notices the change on its
    own (``medic_phone.chores``: its ``data_version`` recheck)."""
    told = 0
    for path in sorted(home.glob("link-*.sock")):
        if path == skip:
            continue
        with contextlib.suppress(PhoneError):
            told += isinstance(ask(path, Changed(), Noted, timeout=TELL_TIMEOUT), Noted)
    return told
