"""A worker that crashes mid-session (abort, SIGSEGV) leaves no core file and no canary
in anything the station printed; the supervisor reports the session ended and offers a
new pairing."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import STATION_START, Proc, command, init_phone, link_phone, run

pytestmark = pytest.mark.integration


def _limits(pid: int) -> str:
    return next(
        line
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
        if line.startswith("Max core file size")
    )


@pytest.mark.parametrize("sig", [signal.SIGABRT, signal.SIGSEGV], ids=["abort", "segv"])
def test_crashed_worker_leaves_nothing(sig: int, tmp_path: Path) -> None:
    ctl = ["--control", str(tmp_path / "run" / "ctl.sock")]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    station = Proc(
        [
            *STATION_START,
            *ctl,
        ],
        cwd=cwd,
    )
    ready = station.wait_for("ready")
    home = init_phone(tmp_path / "phone")
    phone = link_phone(station, home, str(ready["pair_uri"]))
    session = station.wait_for("paired")["session"]
    canary = "CRASH-CANARY-" + secrets.token_hex(8)
    assert run([command("station"), "send", *ctl, canary]).returncode == 0
    phone.wait_for("command")
    status = json.loads(run([command("station"), "status", *ctl, "--json"]).stdout)
    worker = int(status["sessions"][0]["pid"])
    assert _limits(worker).split()[4:6] == ["0", "0"]  # RLIMIT_CORE soft and hard
    os.kill(worker, sig)
    wiped = station.wait_for("wiped", where=lambda e: e["session"] == session)
    assert wiped["exit"] == -sig
    assert (
        station.wait_for("logout", where=lambda e: e["session"] == session)["reason"] == "crashed"
    )
    status = json.loads(run([command("station"), "status", *ctl, "--json"]).stdout)
    assert status["sessions"] == [] and status["offer_open"]
    station.stop()
    printed = "\n".join(station.lines + station.stderr)
    assert canary not in printed
    assert not [p for p in cwd.iterdir() if p.name.startswith("core")]


def test_aborted_supervisor_leaves_no_core(tmp_path: Path) -> None:
    """With ``ulimit -c unlimited`` a SIGABRT dumps a core here (the positive control);
    the supervisor, which holds the kiosk's page keys and the offers, dumps none."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    control = subprocess.run(
        ["bash", "-c", 'ulimit -c unlimited; exec "$0" -c "import os; os.abort()"', sys.executable],
        cwd=cwd,
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert control.returncode != 0
    cores = [p for p in cwd.iterdir() if p.name.startswith("core")]
    if Path("/proc/sys/kernel/core_pattern").read_text().startswith("|") or not cores:
        pytest.skip("this kernel sends cores elsewhere: nothing to compare with here")
    for core in cores:
        core.unlink()
    ctl = str(tmp_path / "run" / "ctl.sock")
    argv = [
        *STATION_START,
        "--control",
        ctl,
    ]
    station = Proc(["bash", "-c", 'ulimit -c unlimited; exec "$@"', "bash", *argv], cwd=cwd)
    hardened = station.wait_for("supervisor_hardening")
    assert hardened["not_dumpable"]["applied"] and hardened["no_core"]["applied"]
    ready = station.wait_for("ready")
    assert ready["control"] == ctl
    status = json.loads(run([command("station"), "status", "--control", ctl, "--json"]).stdout)
    supervisor = int(status["pid"])
    assert _limits(supervisor).split()[4:6] == ["0", "0"]
    os.kill(supervisor, signal.SIGABRT)
    assert station.popen.wait(20) == -signal.SIGABRT
    assert not [p for p in cwd.iterdir() if p.name.startswith("core")]
