"""The syscall write audit: every file any station process wrote, created, renamed,
linked or truncated, from an ``strace -f`` log.

Run the station under ``strace_command(...)`` (``strace -f -qq -e trace=... -o LOG``),
then ``parse_strace_log(LOG)``: it lists each path opened for writing (O_WRONLY,
O_RDWR, O_CREAT, O_TRUNC), created, renamed, linked, truncated or made into a
directory, outside /dev, /proc and /sys. Unix sockets bound by the station (its
control sockets) are reported apart: they hold no data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from wipe.errors import WipeError

TRACED = (
    "open,openat,openat2,creat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,"
    "truncate,ftruncate,mkdir,mkdirat,mknod,mknodat,bind"
)
IGNORED_PREFIXES = ("/dev/", "/proc/", "/sys/")
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
_LINE = re.compile(
    r"^(?:\[pid\s+)?(?P<pid>\d+)\]?\s+(?P<call>\w+)\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+|\?)"
)
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Write:
    pid: int
    call: str
    path: str


@dataclass
class AuditReport:
    writes: list[Write] = field(default_factory=list)
    sockets: list[Write] = field(default_factory=list)
    runtime: list[Write] = field(default_factory=list)  # under the control dir: sockets only
    lines: int = 0

    @property
    def clean(self) -> bool:
        return not self.writes

    def summary(self) -> str:
        if self.clean:
            return f"write audit: no file written ({self.lines} syscalls read)"
        paths = sorted({w.path for w in self.writes})
        return f"write audit: {len(paths)} file(s) written: " + ", ".join(paths[:10])


def strace_command(log: Path, argv: list[str]) -> list[str]:
    """``argv`` run under strace, following every child, logging the calls we audit."""
    return ["strace", "-f", "-qq", "-s", "512", "-e", f"trace={TRACED}", "-o", str(log), *argv]


def _paths(args: str) -> list[str]:
    return [m.encode().decode("unicode_escape") for m in _STRING.findall(args)]


def parse_strace_log(log: Path, *, runtime_dirs: tuple[str, ...] = ()) -> AuditReport:
    """Parse an strace log. Writes under ``runtime_dirs`` (the control socket's
    directory, which holds sockets and nothing else) are listed apart, not hidden."""
    try:
        text = log.read_text(errors="replace")
    except OSError as exc:
        raise WipeError(f"cannot read the strace log {log}: {exc.strerror}") from None
    report = AuditReport()
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        report.lines += 1
        if match["ret"] == "?" or match["ret"].startswith("-"):
            continue  # failed calls wrote nothing
        call, args, pid = match["call"], match["args"], int(match["pid"])
        paths = _paths(args)
        if call in ("open", "openat", "openat2"):
            if not paths or not any(flag in args for flag in _WRITE_FLAGS):
                continue
            targets = paths[:1]
        elif call == "bind":
            if paths:
                report.sockets.append(Write(pid, call, paths[0]))
            continue
        elif call in ("ftruncate",):
            continue  # on an fd: its open was already audited
        else:
            targets = paths
        for path in targets:
            if not path.startswith("/") or path.startswith(IGNORED_PREFIXES):
                continue
            if runtime_dirs and path.startswith(runtime_dirs):
                report.runtime.append(Write(pid, call, path))
                continue
            report.writes.append(Write(pid, call, path))
    return report
