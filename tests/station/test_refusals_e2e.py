"""Refusals a phone can believe, with real processes on 127.0.0.1: a phone store restored
from an older copy is told the gap (never given relabelled commands), and a phone away
at logout learns the session ended from the supervisor, authenticated, after the
session's worker is gone."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.procs import Proc, command, init_phone, link_phone, run, start_station

pytestmark = pytest.mark.integration


def _ctl(tmp_path: Path) -> list[str]:
    return ["--control", str(tmp_path / "ctl.sock")]


def _send(tmp_path: Path, lines: list[str]) -> list[int]:
    result = run(
        [command("station"), "send", *_ctl(tmp_path), "--json", "-"],
        stdin="\n".join(lines) + "\n",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["seq"] for line in result.stdout.splitlines()]


def _status(tmp_path: Path) -> dict[str, Any]:
    result = run([command("station"), "status", *_ctl(tmp_path), "--json"])
    assert result.returncode == 0, result.stderr
    value: dict[str, Any] = json.loads(result.stdout)
    return value


def _log(home: Path) -> list[dict[str, Any]]:
    result = run([command("medic-phone"), "log", "--home", str(home), "--json"])
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def _settled(tmp_path: Path, home: Path, count: int, timeout: float = 20.0) -> None:
    """The phone applied ``count`` commands and the station holds none unacknowledged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _status(tmp_path)["sessions"][0]
        if len(_log(home)) == count and status["queued"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"not settled at {count}: {_status(tmp_path)}")


def _copy_store(src: Path, dst: Path) -> None:
    dst.mkdir()
    for name in ("phone.db", "phone.db-wal"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)


def _restore_store(backup: Path, home: Path) -> None:
    for name in ("phone.db", "phone.db-wal", "phone.db-shm"):
        (home / name).unlink(missing_ok=True)
        if (backup / name).exists():
            shutil.copy2(backup / name, home / name)


def test_a_store_restored_from_an_older_copy_gets_the_named_gap(tmp_path: Path) -> None:
    station = start_station(tmp_path)
    uri = str(station.wait_for("ready")["pair_uri"])
    home = init_phone(tmp_path / "phone")
    phone = link_phone(station, home, uri)
    session = str(station.wait_for("paired")["session"])
    assert _send(tmp_path, [f"first {i}" for i in range(40)]) == list(range(1, 41))
    _settled(tmp_path, home, 40)
    time.sleep(0.5)  # the phone's pushes of what those commands became settle too
    _copy_store(home, tmp_path / "backup")
    assert _send(tmp_path, [f"second {i}" for i in range(17)]) == list(range(41, 58))
    _settled(tmp_path, home, 57)
    phone.stop()
    _restore_store(tmp_path / "backup", home)
    assert len(_log(home)) == 40  # the older copy
    relinked = Proc([command("medic-phone"), "link", uri, "--home", str(home), "--json"])
    gap = relinked.wait_for("resume_gap", timeout=20)
    assert (gap["first"], gap["last"]) == (41, 57)
    assert gap["reason"] == (
        "seqs 41-57 were acknowledged by this phone before but are not in its store"
    )
    assert relinked.popen.wait(15) != 0
    assert any("seqs 41-57" in line for line in relinked.stderr), relinked.stderr
    named = station.wait_for("resume_gap")
    assert (named["session"], named["first"], named["last"]) == (session, 41, 57)
    # Nothing was relabelled: the phone still has exactly the older copy's 40, and the
    # station's next command is 58, not 41.
    assert [r["seq"] for r in _log(home)] == list(range(1, 41))
    assert _send(tmp_path, ["after the gap"]) == [58]
    station.stop()


def test_a_phone_away_at_logout_learns_it_from_the_supervisor_authenticated(
    tmp_path: Path,
) -> None:
    station = start_station(tmp_path)
    uri = str(station.wait_for("ready")["pair_uri"])
    home = init_phone(tmp_path / "phone")
    phone = link_phone(station, home, uri)
    session = str(station.wait_for("paired")["session"])
    _send(tmp_path, ["delivered"])
    _settled(tmp_path, home, 1)  # linked a while: it knows the key that signs receipts
    phone.stop()  # detached: the link is kept, the phone is away
    station.wait_for("link_down")
    _send(tmp_path, ["never delivered"])
    result = run([command("station"), "logout", *_ctl(tmp_path)])
    assert result.returncode == 0, result.stderr
    station.wait_for("wiped", where=lambda e: e["session"] == session)
    assert not [s for s in _status(tmp_path)["sessions"] if s["session"] == session]
    relinked = Proc([command("medic-phone"), "link", uri, "--home", str(home), "--json"])
    logout = relinked.wait_for("logout", timeout=20)
    assert logout["reason"] == "session ended at the station (explicit)"
    receipt = relinked.wait_for("receipt")  # carried by the refusal, signed by the worker
    assert receipt["verified"] and receipt["session"] == session
    assert receipt["undelivered_seqs"] == [2]
    relinked.popen.wait(15)
    station.stop()
