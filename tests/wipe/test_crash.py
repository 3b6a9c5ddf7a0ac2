"""A worker that crashes mid-session (abort, SIGSEGV) leaves no core file and no canary
in anything the station printed; the supervisor reports the session ended and offers a
new pairing."""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

import pytest

from tests.procs import Proc, command, init_phone, link_phone, run

pytestmark = pytest.mark.integration


def _limits(pid: int) -> str:
    return next(
        line
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
        if line.startswith("Max core file size")
    )


@pytest.mark.parametrize("sig", [signal.SIGABRT, signal.SIGSEGV], ids=["abort", "segv"])
def test_crashed_worker_leaves_nothing(sig: int, tmp_path: Path) -> None:
    import json

    ctl = ["--control", str(tmp_path / "run" / "ctl.sock")]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    station = Proc(
        [command("station"), "start", "--no-mdns", "--port", "0", "--json", *ctl], cwd=cwd
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
