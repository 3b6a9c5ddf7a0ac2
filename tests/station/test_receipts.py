"""Issue 18: a signed, content-free wipe receipt for every logout trigger, checked by
the phone offline; a tampered one fails; `send --wait` waits for applied. Real
`station` and `medic-phone` processes on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.procs import command, init_phone, link_phone, run, start_station

pytestmark = pytest.mark.integration


def _ctl(tmp_path: Path) -> list[str]:
    return ["--control", str(tmp_path / "ctl.sock")]


def _receipts(home: Path) -> tuple[int, list[dict[str, Any]]]:
    result = run([command("medic-phone"), "receipts", "--home", str(home), "--json"])
    return result.returncode, json.loads(result.stdout or "[]")


TRIGGERS = {
    "explicit": ("--inactivity", "120"),
    "inactivity": ("--inactivity", "3"),
    "max-age": ("--max-session", "8"),  # room for pairing and the sends on a loaded machine
    "scheduled": ("--wipe-every", "12"),
    "remote": ("--inactivity", "120"),
    "shutdown": ("--inactivity", "120"),
}


@pytest.mark.parametrize("trigger", list(TRIGGERS))
def test_every_logout_leaves_a_signed_receipt_on_the_phone(tmp_path: Path, trigger: str) -> None:
    station = start_station(tmp_path, *TRIGGERS[trigger])
    home = init_phone(tmp_path / "phone", "--name", "ward-3 phone")
    phone = link_phone(station, home, str(station.wait_for("ready")["pair_uri"]))
    session = station.wait_for("paired")["session"]
    sent = run([command("station"), "send", *_ctl(tmp_path), "--wait", "10"], stdin="one\ntwo\n")
    assert sent.returncode == 0, sent.stderr
    assert "applied on the phone: seq 1, 2" in sent.stdout
    if trigger == "explicit":
        assert run([command("station"), "logout", *_ctl(tmp_path)]).returncode == 0
    elif trigger == "remote":
        assert run([command("medic-phone"), "unlink", "--home", str(home)]).returncode == 0
    elif trigger == "shutdown":
        station.signal(signal.SIGTERM)
    logout = station.wait_for("logout", timeout=20, where=lambda e: e["session"] == session)
    assert logout["reason"] == trigger
    receipt = phone.wait_for("receipt", timeout=20)
    assert receipt["verified"] is True and receipt["reason"] == trigger
    assert receipt["undelivered_seqs"] == []
    code, stored = _receipts(home)
    assert code == 0
    [kept] = stored
    assert kept["verified"] is True and kept["session"] == session
    assert (kept["reason"], kept["queued"], kept["applied"]) == (trigger, 2, 2)
    assert phone.popen.wait(20) == 0
    station.stop()


def test_a_tampered_receipt_fails_verification(tmp_path: Path) -> None:
    station = start_station(tmp_path)
    home = init_phone(tmp_path / "phone")
    phone = link_phone(station, home, str(station.wait_for("ready")["pair_uri"]))
    assert run([command("station"), "logout", *_ctl(tmp_path)]).returncode == 0
    phone.wait_for("receipt")
    assert _receipts(home)[0] == 0
    with closing(sqlite3.connect(home / "phone.db")) as db:
        body = bytes(db.execute("SELECT body FROM receipts").fetchone()[0])
        forged = body.replace(b'"reason":"explicit"', b'"reason":"shutdown"')
        assert forged != body
        db.execute("UPDATE receipts SET body = ?", (forged,))
        db.commit()
    code, stored = _receipts(home)
    assert code == 1 and stored[0]["verified"] is False
    human = run([command("medic-phone"), "receipts", "--home", str(home)])
    assert human.returncode == 1 and "SIGNATURE DOES NOT VERIFY" in human.stdout
    station.stop()


def test_status_counts_each_fate_and_the_kiosk_tab_shows_the_phone_name(tmp_path: Path) -> None:
    station = start_station(tmp_path)
    home = init_phone(tmp_path / "phone", "--name", "ward-3 phone")
    phone = link_phone(station, home, str(station.wait_for("ready")["pair_uri"]))
    device = station.wait_for("device")
    assert device["name"] == "ward-3 phone"
    sent = run([command("station"), "send", *_ctl(tmp_path), "--wait", "10"], stdin="a\nb\nc\n")
    assert sent.returncode == 0, sent.stderr
    status = json.loads(run([command("station"), "status", *_ctl(tmp_path), "--json"]).stdout)
    [info] = status["sessions"]
    assert info["commands"]["applied"] == 3 and info["commands"]["queued"] == 0
    assert info["device"] == "ward-3 phone" and info["oldest_queued_s"] is None
    phone.signal(signal.SIGKILL)  # gone: the next one stays queued
    late = run([command("station"), "send", *_ctl(tmp_path), "--wait", "1", "--json"], stdin="d\n")
    assert late.returncode == 4 and "seq 4: " in late.stderr
    status = json.loads(run([command("station"), "status", *_ctl(tmp_path), "--json"]).stdout)
    [info] = status["sessions"]
    assert info["queued"] == 1 and info["oldest_queued_s"] >= 0.9
    links = json.loads(run([command("medic-phone"), "links", "--home", str(home), "--json"]).stdout)
    assert [(lk["station"], lk["state"]) for lk in links] == [("field-station", "not running")]
    station.stop()
