"""One owner per resource: an advisory ``flock`` on the station's control directory.

The directory is created by the station anyway, so taking the lock writes nothing
(the write audit allows a station only ``mkdir`` and ``bind`` in its runtime
directory). The kernel drops the lock when its owner dies, so a crash never leaves
it stale.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from station.errors import ConfigError


class LockHeld(ConfigError):
    """Another process holds the lock (the operator started a second station)."""


class DirectoryLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, path: Path) -> DirectoryLock:
        """Create ``path`` (0700) if needed and lock it, or raise ``LockHeld``."""
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfigError(f"cannot use directory {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(f"{path} is locked by another station") from None
        return cls(path, fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
