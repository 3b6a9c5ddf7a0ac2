"""Nothing of a session stays on the kiosk, for every logout trigger.

The station runs under ``strace -f``. Unique canaries flow through a session both
ways: a command typed at the kiosk, and a message the phone mirrors to it. While the
session lives the worker holds both (the positive control: the scan can see them) and
the supervisor holds neither. After logout the worker is gone, no station process still
running holds a canary, and no station process wrote any file.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.procs import Proc, command, init_phone, link_phone, run
from wipe.audit import parse_strace_log, strace_command
from wipe.memscan import process_tree, scan_tree

pytestmark = [
    pytest.mark.root,
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root (reads a non-dumpable worker's memory)"
    ),
    pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace"),
]

TRIGGERS = {
    "explicit": [],
    "remote": [],
    "inactivity": ["--inactivity", "8"],
    "max-age": ["--max-session", "10"],
    "scheduled": ["--wipe-every", "12"],
    "shutdown": [],
}


def _status(ctl: list[str]) -> dict[str, object]:
    result = run([command("station"), "status", *ctl, "--json"])
    assert result.returncode == 0, result.stderr
    value: dict[str, object] = json.loads(result.stdout)
    return value


@pytest.mark.parametrize("trigger", list(TRIGGERS))
def test_no_canary_and_no_file_after_logout(trigger: str, tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    ctl = ["--control", str(runtime / "ctl.sock")]
    log = tmp_path / "strace.log"
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    station = Proc(
        strace_command(
            log,
            [
                command("station"),
                "start",
                "--no-mdns",
                "--port",
                "0",
                "--json",
                *ctl,
                *TRIGGERS[trigger],
            ],
        )
    )
    ready = station.wait_for("ready", timeout=30)
    home = init_phone(tmp_path / "phone")
    phone = link_phone(station, home, str(ready["pair_uri"]))
    session = station.wait_for("paired")["session"]
    kiosk_canary = "KIOSK-CANARY-" + secrets.token_hex(8)
    phone_canary = "PHONE-CANARY-" + secrets.token_hex(8)
    assert run([command("station"), "send", *ctl, kiosk_canary]).returncode == 0
    assert run([command("medic-phone"), "say", "--home", str(home), phone_canary]).returncode == 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sessions = _status(ctl)["sessions"]
        assert isinstance(sessions, list)
        if sessions and sessions[0]["mirrored"] >= 2:
            break
        time.sleep(0.1)
    sessions = _status(ctl)["sessions"]
    assert isinstance(sessions, list)
    worker = int(sessions[0]["pid"])
    supervisor = next(
        p
        for p in process_tree(station.popen.pid)
        if worker in process_tree(p) and p != worker and _is_python(p)
    )
    for canary in (kiosk_canary, phone_canary):
        during = scan_tree(supervisor, canary)
        assert during.total(worker) > 0, f"positive control: the worker must hold {canary[:12]}"
        assert during.total(supervisor) == 0, "the supervisor must never hold session plaintext"

    if trigger == "explicit":
        assert run([command("station"), "logout", *ctl]).returncode == 0
    elif trigger == "remote":
        assert run([command("medic-phone"), "unlink", "--home", str(home)]).returncode == 0
    elif trigger == "shutdown":
        os.kill(supervisor, signal.SIGTERM)
    logout = station.wait_for("logout", timeout=30, where=lambda e: e["session"] == session)
    assert logout["reason"] == trigger
    station.wait_for("wiped", timeout=15, where=lambda e: e["session"] == session)
    assert phone.wait_for("logout", timeout=15)

    if trigger != "shutdown":
        for canary in (kiosk_canary, phone_canary):
            after = scan_tree(supervisor, canary)
            assert worker not in after.counts
            assert after.total() == 0, f"{canary[:12]} survived logout in {after.counts}"
        station.signal(signal.SIGTERM)
    assert station.popen.wait(30) is not None
    time.sleep(0.2)
    report = parse_strace_log(log, runtime_dirs=(str(runtime),))
    assert report.lines > 100, "strace saw the station"
    assert report.clean, report.summary()
    assert report.left == [], report.left  # nothing left in RAM file systems either
    assert all(w.call in ("mkdir", "bind", "mkdirat") for w in report.runtime), report.runtime
    phone.stop()


def _is_python(pid: int) -> bool:
    try:
        return "python" in Path(f"/proc/{pid}/exe").resolve().name
    except OSError:
        return False
