"""Real `station` and `medic-phone` processes on hosts of a test's own network
(``tests.netns.switched_hosts``): starting them, sending, reading the phone's log,
and the figures the LAN tests print."""

from __future__ import annotations

import json
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.netns import Host
from tests.procs import Proc, command, run


def station(
    host: Host,
    tmp_path: Path,
    *extra: str,
    name: str = "clinic-a",
    limit_files: int | None = None,
) -> Proc:
    """Plain ``station start`` (all interfaces, mDNS on) in ``host``, once ready.

    ``limit_files``: run it under that ``RLIMIT_NOFILE`` (soft and hard)."""
    limit = ["prlimit", f"--nofile={limit_files}:{limit_files}"] if limit_files else []
    proc = Proc(
        [
            command("station"),
            "start",
            "--name",
            name,
            "--json",
            "--no-ui",
            "--control",
            str(tmp_path / "ctl.sock"),
            *extra,
        ],
        prefix=[*host.prefix(), *limit],
    )
    proc.wait_for("ready", timeout=30)
    if "--no-mdns" not in extra:
        proc.wait_for("advertised", timeout=30)  # as a medic reading the screen would
    return proc


def phone_home(tmp_path: Path, name: str = "phone") -> Path:
    home = tmp_path / name
    result = run([command("medic-phone"), "init", "--home", str(home)])
    assert result.returncode == 0, result.stderr
    return home


def link(host: Host, home: Path, target: str, *extra: str) -> Proc:
    return Proc(
        [command("medic-phone"), "link", target, "--home", str(home), "--json", *extra],
        prefix=host.prefix(),
    )


def send(tmp_path: Path, lines: list[str]) -> None:
    result = run(
        [command("station"), "send", "--control", str(tmp_path / "ctl.sock"), "-"],
        stdin="\n".join(lines),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def phone_log(home: Path) -> list[dict[str, Any]]:
    result = run([command("medic-phone"), "log", "--home", str(home), "--json"])
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def wait_rows(home: Path, count: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = phone_log(home)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def stamp(event: dict[str, Any]) -> float:
    """An event's ``ts`` (RFC 3339, UTC) as a unix time."""
    return datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
