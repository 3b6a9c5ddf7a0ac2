"""`station audit` as an auditor runs it: the preflight, then a scan of the running
station for a canary (found in the worker during the session, nowhere after logout)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.procs import STATION_START, Proc, command, init_phone, link_phone, run

pytestmark = [
    pytest.mark.root,
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (reads a non-dumpable worker)"),
]


def test_audit_scan_finds_the_canary_only_while_the_session_lives(tmp_path: Path) -> None:
    ctl = ["--control", str(tmp_path / "ctl.sock")]
    station = Proc(
        [
            *STATION_START,
            *ctl,
        ]
    )
    ready = station.wait_for("ready")
    assert station.wait_for("preflight")["checks"]
    home = init_phone(tmp_path / "phone")
    phone = link_phone(station, home, str(ready["pair_uri"]))
    canary = "AUDIT-CANARY-" + secrets.token_hex(8)
    assert run([command("station"), "send", *ctl, canary]).returncode == 0
    phone.wait_for("command")
    during = run([command("station"), "audit", *ctl, "--scan", canary], timeout=120)
    assert during.returncode == 1, during.stdout + during.stderr
    assert "preflight" in during.stdout
    lines = [ln for ln in during.stdout.splitlines() if ln.startswith("memory scan")]
    assert any("(worker)" in ln and "utf-8" in ln for ln in lines), lines
    assert all("not found" in ln for ln in lines if "(supervisor)" in ln), lines
    assert run([command("station"), "logout", *ctl]).returncode == 0
    station.wait_for("wiped")
    after = run([command("station"), "audit", *ctl, "--scan", canary], timeout=120)
    assert after.returncode == 0, after.stdout
    assert "utf-8" not in after.stdout
