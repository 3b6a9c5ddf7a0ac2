"""The syscall write audit: every file any station process wrote, created, renamed,
linked or truncated, from an ``strace -f`` log.

Run the station under ``strace_command(...)`` (``strace -f -qq -e trace=... -o LOG``),
then ``parse_strace_log(LOG)``: it lists each path opened for writing (O_WRONLY,
O_RDWR, O_CREAT, O_TRUNC), created, renamed, linked, truncated or made into a
directory, anywhere but /proc, /sys and the device nodes of /dev.

Writes to a RAM file system (tmpfs or ramfs, ``/dev/shm`` included: the kiosk
browser's profile lives there) are listed apart, with those still there when the
audit runs: RAM is not a disk, but what is left in it after a logout is still left.
Unix sockets bound by the station (its control sockets) are reported apart too:
they hold no data.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from wipe.errors import WipeError

TRACED = (
    "open,openat,openat2,creat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,"
    "truncate,ftruncate,mkdir,mkdirat,mknod,mknodat,bind"
)
IGNORED_PREFIXES = ("/proc/", "/sys/")
DEVICES = "/dev/"  # device nodes, unless a RAM file system is mounted there (/dev/shm)
RAM_FS = ("tmpfs", "ramfs")
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
_LINE = re.compile(r"^(?:\[pid\s+)?(?P<pid>\d+)\]?\s+(?P<rest>.*)$")
_CALL = re.compile(
    r"^(?P<call>\w+)\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+|\?)(?:<(?P<opened>[^>]*)>)?"
)
_UNFINISHED = "<unfinished ...>"
_RESUMED = re.compile(r"^<\.\.\. (?P<call>\w+) resumed>(?P<tail>.*)$")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
# With ``strace -y`` a directory descriptor shows its path: ``3</run/x>, "name"``.
_AT_STRING = re.compile(r'(?:AT_FDCWD|\d+)<((?:[^>\\]|\\.)*)>,\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Write:
    pid: int
    call: str
    path: str


@dataclass
class AuditReport:
    writes: list[Write] = field(default_factory=list)  # on a disk
    ram: list[Write] = field(default_factory=list)  # on tmpfs or ramfs
    sockets: list[Write] = field(default_factory=list)
    runtime: list[Write] = field(default_factory=list)  # under the control dir: sockets only
    lines: int = 0

    @property
    def clean(self) -> bool:
        """No file written to a disk (RAM writes are listed, and checked by ``left``)."""
        return not self.writes

    @property
    def left(self) -> list[str]:
        """The RAM files written that are still there now."""
        return sorted({w.path for w in self.ram if os.path.lexists(w.path)})

    def summary(self) -> str:
        if self.clean:
            line = f"write audit: no file written to disk ({self.lines} syscalls read)"
        else:
            paths = sorted({w.path for w in self.writes})
            line = f"write audit: {len(paths)} file(s) written: " + ", ".join(paths[:10])
        ram = {w.path for w in self.ram}
        if ram:
            line += f"; {len(ram)} path(s) written in RAM (tmpfs), {len(self.left)} still there"
        return line


def strace_command(log: Path, argv: list[str]) -> list[str]:
    """``argv`` run under strace, following every child, logging the calls we audit
    (``-y``: with the path of each descriptor, so ``mkdirat(3, "x")`` names its place)."""
    return [
        "strace", "-f", "-qq", "-y", "-s", "512", "-e", f"trace={TRACED}", "-o", str(log), *argv
    ]  # fmt: skip


def _unescape(text: str) -> str:
    return text.encode().decode("unicode_escape")


def _paths(args: str) -> list[str]:
    """The path arguments, in order; a name relative to a directory descriptor is joined
    to that directory's path (a relative name without one is kept as it is)."""
    found: list[tuple[int, str]] = []
    joined = set()
    for m in _AT_STRING.finditer(args):
        base, name = _unescape(m[1]), _unescape(m[2])
        found.append((m.start(2) - 1, name if name.startswith("/") else os.path.join(base, name)))
        joined.add(m.start(2) - 1)
    for m in _STRING.finditer(args):
        if m.start() not in joined:
            found.append((m.start(), _unescape(m[1])))
    return [os.path.normpath(path) for _, path in sorted(found)]


def _calls(text: str) -> Iterator[tuple[int, str]]:
    """(pid, "call(args) = ret"): a call another thread interrupted (``<unfinished ...>``)
    is joined to its ``<... call resumed>`` line."""
    partial: dict[int, str] = {}
    for raw in text.splitlines():
        line = _LINE.match(raw.strip())
        if line is None:
            continue
        pid, rest = int(line["pid"]), line["rest"]
        if rest.endswith(_UNFINISHED):
            partial[pid] = rest[: -len(_UNFINISHED)].rstrip()
            continue
        resumed = _RESUMED.match(rest)
        if resumed is not None:
            head = partial.pop(pid, None)
            if head is None:
                continue
            rest = head + resumed["tail"]
        yield pid, rest


def _mount_table(mounts: str) -> dict[str, str]:
    """Mount point -> file system type (/proc/self/mounts' text; a later mount over the
    same point hides the earlier one)."""
    table: dict[str, str] = {}
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            table[fields[1].encode().decode("unicode_escape")] = fields[2]  # \040: a space
    return table


def _read_mounts() -> str:
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        return handle.read()


def ram_mounts(mounts: str | None = None) -> list[str]:
    """The mount points of RAM file systems (tmpfs, ramfs)."""
    table = _mount_table(_read_mounts() if mounts is None else mounts)
    return sorted(point for point, fstype in table.items() if fstype in RAM_FS)


def _under(path: str, point: str) -> bool:
    return path == point or path.startswith(point.rstrip("/") + "/")


def _place(path: str, ram: list[str], mounts: list[str]) -> str:
    """'ram', 'disk' or 'device' (a node in /dev, not audited) for an absolute path."""
    holder = max((m for m in mounts if _under(path, m)), key=len, default="/")
    if holder in ram:
        return "ram"
    return "device" if path.startswith(DEVICES) else "disk"


def parse_strace_log(
    log: Path, *, runtime_dirs: tuple[str, ...] = (), mounts: str | None = None
) -> AuditReport:
    """Parse an strace log. Writes under ``runtime_dirs`` (the control socket's
    directory, which holds sockets and nothing else) are listed apart, not hidden.
    ``mounts`` is /proc/self/mounts' text (read here when None)."""
    try:
        text = log.read_text(errors="replace")
    except OSError as exc:
        raise WipeError(f"cannot read the strace log {log}: {exc.strerror}") from None
    table = _mount_table(_read_mounts() if mounts is None else mounts)
    ram = sorted(point for point, fstype in table.items() if fstype in RAM_FS)
    every = sorted(table)
    report = AuditReport()
    for pid, rest in _calls(text):
        match = _CALL.match(rest)
        if match is None:
            continue
        report.lines += 1
        if match["ret"] == "?" or match["ret"].startswith("-"):
            continue  # failed calls wrote nothing
        call, args = match["call"], match["args"]
        paths = _paths(args)
        if call in ("open", "openat", "openat2", "creat"):
            if not paths or not (call == "creat" or any(flag in args for flag in _WRITE_FLAGS)):
                continue
            # What was opened, as the kernel resolved it (strace -y), else the argument.
            targets = [_unescape(match["opened"])] if match["opened"] else paths[:1]
        elif call in ("symlink", "symlinkat"):
            targets = paths[-1:]  # the link's own name; the first string is its content
        elif call == "bind":
            if paths:
                report.sockets.append(Write(pid, call, paths[0]))
            continue
        elif call in ("ftruncate",):
            continue  # on an fd: its open was already audited
        else:
            targets = paths
        for path in targets:
            if path.startswith(IGNORED_PREFIXES) or path.startswith(("pipe:", "socket:")):
                continue
            if not path.startswith("/"):
                # Relative to a working directory the log does not show: counted as a
                # disk write (unknown, so not excused).
                report.writes.append(Write(pid, call, path))
                continue
            if runtime_dirs and path.startswith(runtime_dirs):
                report.runtime.append(Write(pid, call, path))
                continue
            place = _place(path, ram, every)
            if place == "ram":
                report.ram.append(Write(pid, call, path))
            elif place == "disk":
                report.writes.append(Write(pid, call, path))
    return report
