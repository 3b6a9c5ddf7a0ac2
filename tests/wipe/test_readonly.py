"""The station works inside a mount namespace where everything but a fresh tmpfs scratch
(for its control sockets) is read-only, and the scratch is empty at the end."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.procs import Proc, command, init_phone, link_phone, run

pytestmark = [
    pytest.mark.root,
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespaces)"),
    pytest.mark.skipif(
        shutil.which("unshare") is None or shutil.which("nsenter") is None,
        reason="needs util-linux unshare and nsenter",
    ),
]

_SCRIPT = """
set -e
for mp in $(awk '{{print $2}}' /proc/self/mounts | sort -u); do
  case "$mp" in /proc*|/sys*|/dev*) continue ;; esac
  mount -o remount,bind,ro "$mp" 2>/dev/null || true
done
mount -t tmpfs -o size=16m,mode=0700 fs-scratch {scratch}
if touch {probe} 2>/dev/null; then echo '{{"event":"writable"}}'; fi
{station} start --host 127.0.0.1 --no-mdns --port 0 --json --control {scratch}/ctl.sock &
pid=$!
trap 'kill -TERM $pid' TERM
wait $pid || true
wait $pid || true
echo "{{\\"event\\":\\"scratch\\",\\"left\\":\\"$(ls -A {scratch})\\"}}"
"""


def test_station_runs_read_only_and_leaves_the_scratch_empty(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    script = _SCRIPT.format(scratch=scratch, probe=tmp_path / "probe", station=command("station"))
    station = Proc(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
    ready = station.wait_for("ready", timeout=30)
    assert station.count("writable") == 0, "the namespace was not read-only"
    station_pid = next(
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit()
        and f"{command('station')} start" in _cmd(p)
        and str(scratch) in _cmd(p)
        and not _cmd(p).startswith("sh ")
    )
    enter = ["nsenter", f"--mount=/proc/{station_pid}/ns/mnt"]
    home = init_phone(tmp_path / "phone")
    phone = link_phone(station, home, str(ready["pair_uri"]))
    ctl = ["--control", str(scratch / "ctl.sock")]
    result = run([command("station"), "send", *ctl, "read-only works"], prefix=enter)
    assert result.returncode == 0, result.stderr
    assert phone.wait_for("command")["text"] == "read-only works"
    status = json.loads(run([command("station"), "status", *ctl, "--json"], prefix=enter).stdout)
    assert status["sessions"][0]["linked"]
    station.signal(signal.SIGTERM)
    left = station.wait_for("scratch", timeout=30)
    assert left["left"] == "", f"left in scratch: {left['left']!r}"
    assert station.wait_for("wiped")["undelivered"] == 0
    assert not (tmp_path / "probe").exists()


def _cmd(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
