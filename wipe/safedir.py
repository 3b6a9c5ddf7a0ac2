"""Private directories that no other local user can steer.

A station that creates or chmods a path another user prepared can be turned against
any file: a planted symlink at ``/tmp/fieldstation-0/fieldstation.sock.d`` once made a
root station chmod the link's target. So a directory the station (or the phone) keeps
its runtime state in is reached one component at a time from ``/``, through open
descriptors, never following a symlink that anyone but root or us could have planted:

* every directory on the way must belong to root or to us, and must not be writable by
  others unless it is sticky (``/tmp``): otherwise its owner could swap what is inside;
* the directory itself must be a real directory (not a symlink) that belongs to us;
* what is missing is created 0700; only after those checks, and through the checked
  descriptor (``fchmod``), is an existing directory made 0700.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from wipe.errors import WipeError


class UnsafeDirectory(WipeError):
    """A directory another user could control: refused, and nothing was changed in it."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def private_dir(path: Path, *, make_private: bool = True) -> Path:
    """Create ``path`` (and what is missing above it) 0700, or check the existing one.

    ``make_private``: an existing ``path`` is made 0700 (else it is only required not to
    be writable by others). Raises ``UnsafeDirectory`` naming the component at fault.
    """
    target = Path(os.path.abspath(path))
    me = os.geteuid()
    parts = target.parts[1:]
    fd = os.open("/", _DIR_FLAGS)
    try:
        for index, name in enumerate(parts):
            where = "/" + "/".join(parts[: index + 1])
            last = index == len(parts) - 1
            created = _make(name, fd)
            opened = _open_step(fd, name, where, last=last, me=me)
            os.close(fd)
            fd = opened
            info = os.fstat(fd)
            if last:
                if info.st_uid != me:
                    raise UnsafeDirectory(
                        f"{where} belongs to uid {info.st_uid}, not to this user (uid {me}):"
                        " refusing to use it"
                    )
                if created or make_private:
                    if stat.S_IMODE(info.st_mode) != 0o700:
                        os.fchmod(fd, 0o700)
                elif info.st_mode & 0o022:
                    raise UnsafeDirectory(f"{where} is writable by other users: refusing it")
            else:
                _check_above(info, where, me)
                if created and stat.S_IMODE(info.st_mode) != 0o700:
                    os.fchmod(fd, 0o700)  # mkdir's mode went through the umask
    except UnsafeDirectory:
        raise
    except OSError as exc:
        raise UnsafeDirectory(f"cannot use the directory {target}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return target


def _make(name: str, fd: int) -> bool:
    """Create ``name`` in ``fd`` (0700) if nothing is there; True if we made it."""
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):  # someone raced us: checked next
            os.mkdir(name, 0o700, dir_fd=fd)
            return True
    return False


def _open_step(fd: int, name: str, where: str, *, last: bool, me: int) -> int:
    """Open ``name`` in ``fd`` as a directory, refusing links others could have planted."""
    try:
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            if last:
                raise UnsafeDirectory(
                    f"{where} is a symlink (to {os.readlink(name, dir_fd=fd)}): refusing it"
                )
            if info.st_uid not in (0, me):
                raise UnsafeDirectory(
                    f"{where} is a symlink that uid {info.st_uid} planted: refusing to follow it"
                )
            opened = os.open(name, _DIR_FLAGS, dir_fd=fd)  # root's or ours: followed
        else:
            opened = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
    except NotADirectoryError:
        raise UnsafeDirectory(f"{where} is not a directory") from None
    return opened


def _check_above(info: os.stat_result, where: str, me: int) -> None:
    if info.st_uid not in (0, me):
        raise UnsafeDirectory(
            f"{where} belongs to uid {info.st_uid}, who could swap what is inside: refusing it"
        )
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        raise UnsafeDirectory(
            f"{where} is writable by other users and not sticky, so they could swap what is"
            " inside: refusing it"
        )
