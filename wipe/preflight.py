"""The start-up preflight: what this machine does that could keep a session's bytes.

Each check says ok, warn or fail with a one-line reason. They read /proc and /etc only;
``root`` lets tests point them at a fake tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def _read(root: Path, path: str) -> str | None:
    try:
        return (root / path.lstrip("/")).read_text()
    except OSError:
        return None


def check_swap(root: Path) -> Check:
    swaps = _read(root, "/proc/swaps")
    if swaps is None:
        return Check("swap", WARN, "cannot read /proc/swaps")
    devices = [line.split()[0] for line in swaps.splitlines()[1:] if line.strip()]
    if not devices:
        return Check("swap", OK, "no swap: RAM is never paged to disk")
    plain = [d for d in devices if not (d.startswith("/dev/zram") or d.startswith("/dev/dm-"))]
    if not plain:
        return Check(
            "swap", OK, f"swap is zram or device-mapper (encrypted?): {', '.join(devices)}"
        )
    return Check(
        "swap",
        WARN,
        f"unencrypted swap on {', '.join(plain)}: pages could reach disk"
        " (workers mlock where allowed)",
    )


def check_tmpfs(root: Path) -> Check:
    mounts = _read(root, "/proc/self/mounts") or ""
    types = {
        fields[1]: fields[2]
        for fields in (line.split() for line in mounts.splitlines())
        if len(fields) >= 3
    }
    missing = [p for p in ("/tmp", "/var/tmp") if types.get(p) != "tmpfs"]
    if not missing:
        return Check("tmpfs", OK, "/tmp and /var/tmp are tmpfs")
    return Check("tmpfs", WARN, f"not tmpfs: {', '.join(missing)} (the station writes none)")


def check_core_pattern(root: Path) -> Check:
    pattern = (_read(root, "/proc/sys/kernel/core_pattern") or "").strip()
    if not pattern:
        return Check("core_pattern", WARN, "cannot read core_pattern")
    if pattern.startswith("|"):
        # A pipe handler is not bound by RLIMIT_CORE; non-dumpable workers still dump nothing.
        return Check(
            "core_pattern",
            WARN,
            f"cores go to a handler ({pattern[:60]}); workers are not dumpable, keep it that way",
        )
    return Check(
        "core_pattern", OK, f"cores go to a file ({pattern[:60]}); workers set RLIMIT_CORE 0"
    )


def check_journald(root: Path) -> Check:
    conf = _read(root, "/etc/systemd/journald.conf") or ""
    storage = "auto"
    for line in conf.splitlines():
        line = line.strip()
        if line.startswith("Storage="):
            storage = line.split("=", 1)[1].strip().lower()
    persistent = storage == "persistent" or (
        storage == "auto" and (root / "var/log/journal").is_dir()
    )
    if persistent:
        return Check(
            "journald", WARN, "journald keeps logs on disk (the station logs ids and counts only)"
        )
    return Check("journald", OK, f"journald storage: {storage}, not on disk")


def check_init_on_free(root: Path) -> Check:
    cmdline = _read(root, "/proc/cmdline") or ""
    if "init_on_free=1" in cmdline.split():
        return Check("init_on_free", OK, "the kernel zeroes freed memory")
    return Check(
        "init_on_free", WARN, "init_on_free=1 not on the kernel command line: freed pages keep data"
    )


def run_preflight(root: Path = Path("/")) -> list[Check]:
    return [
        check(root)
        for check in (
            check_swap,
            check_tmpfs,
            check_core_pattern,
            check_journald,
            check_init_on_free,
        )
    ]


def format_preflight(checks: list[Check]) -> str:
    marks = {OK: "ok  ", WARN: "WARN", FAIL: "FAIL"}
    return "\n".join(f"preflight {marks[c.status]} {c.name}: {c.detail}" for c in checks)
