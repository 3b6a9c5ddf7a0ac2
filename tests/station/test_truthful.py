"""Issue 12: the station tells the truth and never stalls, with a real outage.

Station and phone on two hosts of their own (network namespaces joined by a veth);
outages take the veth down, so sends block and closes hang as on real WiFi.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.netns import Lan, requires_root, two_hosts
from tests.procs import Proc, command, init_phone, run

pytestmark = [pytest.mark.root, pytest.mark.integration, requires_root]


def _station(lan: Lan, tmp_path: Path, *extra: str, port: int = 8765) -> Proc:
    proc = Proc(
        [
            command("station"),
            "start",
            "--name",
            "clinic-a",
            "--host",
            lan.station.address,
            "--port",
            str(port),
            "--no-mdns",
            "--no-ui",
            "--json",
            "--control",
            str(tmp_path / "ctl.sock"),
            *extra,
        ],
        prefix=lan.station.prefix(),
    )
    proc.wait_for("ready", timeout=30)
    return proc


def _ctl(tmp_path: Path) -> list[str]:
    return ["--control", str(tmp_path / "ctl.sock")]


def _link(lan: Lan, station: Proc, home: Path, *, after: int = 0) -> Proc:
    offer = station.events[after:]
    uri = next(e for e in reversed(offer) if e.get("event") in ("ready", "offer"))["pair_uri"]
    phone = Proc(
        [command("medic-phone"), "link", str(uri), "--home", str(home), "--json"],
        prefix=lan.phone.prefix(),
    )
    phone.wait_for("paired", timeout=20)
    station.wait_for("paired", after=after)
    return phone


def _status(tmp_path: Path) -> dict[str, Any]:
    result = run([command("station"), "status", *_ctl(tmp_path), "--json"], timeout=10)
    assert result.returncode == 0, result.stderr
    value: dict[str, Any] = json.loads(result.stdout)
    return value


def _send(tmp_path: Path, *lines: str, extra: tuple[str, ...] = ()) -> Any:
    return run(
        [command("station"), "send", *_ctl(tmp_path), *extra, "-"],
        stdin="\n".join(lines) + "\n",
        timeout=30,
    )


def _log(home: Path) -> list[dict[str, Any]]:
    result = run([command("medic-phone"), "log", "--home", str(home), "--json"])
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def _wait_log(home: Path, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = _log(home)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_status_is_exact_and_activity_counts_during_a_15s_outage(tmp_path: Path) -> None:
    with two_hosts() as lan:
        station = _station(lan, tmp_path, "--inactivity", "6")
        home = init_phone(tmp_path / "phone")
        phone = _link(lan, station, home)
        assert _send(tmp_path, "before").returncode == 0
        assert [r["text"] for r in _wait_log(home, 1)] == ["before"]
        lan.down()
        down_at = time.monotonic()
        sent, checks, next_send = 0, 0, down_at
        while time.monotonic() - down_at < 15:
            if time.monotonic() >= next_send:
                result = _send(tmp_path, f"during {sent}")
                assert result.returncode == 0, result.stderr
                sent += 1
                next_send += 2.0
            status = _status(tmp_path)
            [session] = status["sessions"]
            assert session["queued"] == sent, (sent, session)
            assert session["ending"] is None
            checks += 1
            time.sleep(0.5)
        print(f"{checks} status checks during the outage, {sent} commands queued, all exact")
        assert station.count("logout") == 0, "typing during the outage kept the session"
        lan.up()
        rows = _wait_log(home, 1 + sent)
        assert [r["text"] for r in rows] == ["before"] + [f"during {i}" for i in range(sent)]
        assert [r["seq"] for r in rows] == list(range(1, sent + 2))
        deadline = time.monotonic() + 10
        while _status(tmp_path)["sessions"][0]["queued"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _status(tmp_path)["sessions"][0]["queued"] == 0
        phone.stop()
        station.stop()


def test_logout_during_an_outage_names_the_undelivered_seqs(tmp_path: Path) -> None:
    with two_hosts() as lan:
        station = _station(lan, tmp_path)
        home = init_phone(tmp_path / "phone")
        phone = _link(lan, station, home)
        session = station.wait_for("paired")["session"]
        assert _send(tmp_path, "a", "b", "c").returncode == 0
        assert len(_wait_log(home, 3)) == 3
        deadline = time.monotonic() + 10
        while _status(tmp_path)["sessions"][0]["queued"] and time.monotonic() < deadline:
            time.sleep(0.1)
        lan.down()
        assert _send(tmp_path, "d", "e").returncode == 0
        started = time.monotonic()
        result = run([command("station"), "logout", *_ctl(tmp_path)], timeout=20)
        took = time.monotonic() - started
        print(f"station logout during the outage answered in {took:.2f} s: {result.stdout!r}")
        assert result.returncode == 0, result.stderr
        assert "2 command(s) were never delivered (seq 4, 5)" in result.stdout
        wiped = station.wait_for("wiped", where=lambda e: e["session"] == session)
        assert wiped["undelivered"] == 2 and wiped["undelivered_seqs"] == [4, 5]
        logout = station.wait_for("logout", where=lambda e: e["session"] == session)
        assert _ts(wiped) - _ts(logout) <= 1.0
        assert _status(tmp_path)["sessions"] == []
        phone.stop()
        station.stop()


def test_a_stopped_worker_is_gone_within_a_second_of_logout(tmp_path: Path) -> None:
    with two_hosts() as lan:
        station = _station(lan, tmp_path)
        home = init_phone(tmp_path / "phone")
        phone = _link(lan, station, home)
        session = station.wait_for("paired")["session"]
        lan.down()  # and the phone away, so the worker also has a queue to report
        assert _send(tmp_path, "x").returncode == 0
        [info] = _status(tmp_path)["sessions"]
        worker = int(info["pid"])
        Path(f"/proc/{worker}").stat()
        import os

        os.kill(worker, signal.SIGSTOP)
        result = run([command("station"), "logout", *_ctl(tmp_path)], timeout=20)
        assert result.returncode == 0, result.stderr
        logout = station.wait_for("logout", where=lambda e: e["session"] == session)
        wiped = station.wait_for("wiped", where=lambda e: e["session"] == session)
        gap = _ts(wiped) - _ts(logout)
        print(f"stopped worker: wiped {gap:.3f} s after the logout decision")
        assert 0 <= gap <= 1.0
        assert not Path(f"/proc/{worker}").exists()
        assert wiped["undelivered_seqs"] == [1]
        assert station.events.index(logout) < station.events.index(wiped)
        phone.stop()
        station.stop()


def test_a_second_station_start_leaves_the_first_working(tmp_path: Path) -> None:
    with two_hosts() as lan:
        station = _station(lan, tmp_path)
        before = sorted(p.name for p in tmp_path.iterdir())
        for args in (
            ["--port", "8765", *_ctl(tmp_path)],  # same port, same control
            ["--port", "8766", *_ctl(tmp_path)],  # same control only
            ["--port", "8765", "--control", str(tmp_path / "other.sock")],  # same port only
        ):
            second = run(
                [
                    *lan.station.prefix(),
                    command("station"),
                    "start",
                    "--host",
                    lan.station.address,
                    "--no-mdns",
                    "--no-ui",
                    *args,
                ],
                timeout=30,
            )
            assert second.returncode == 2, second.stderr
            assert "already in use" in second.stderr or "another station" in second.stderr
        assert "pid" in second.stderr or "8765" in second.stderr
        after = sorted(p.name for p in tmp_path.iterdir() if p.name != "other.sock.d")
        assert after == before
        assert _status(tmp_path)["offer_open"] is True
        home = init_phone(tmp_path / "phone")
        phone = _link(lan, station, home)
        assert _send(tmp_path, "after the second start").returncode == 0
        assert [r["text"] for r in _wait_log(home, 1)] == ["after the second start"]
        phone.stop()
        station.stop()


def test_a_second_link_on_the_same_home_is_refused(tmp_path: Path) -> None:
    with two_hosts() as lan:
        station = _station(lan, tmp_path)
        uri = str(station.wait_for("ready")["pair_uri"])
        home = init_phone(tmp_path / "phone")
        phone = _link(lan, station, home)
        second = run(
            [*lan.phone.prefix(), command("medic-phone"), "link", uri, "--home", str(home)],
            timeout=30,
        )
        assert second.returncode == 1
        assert f"already running in process {phone.popen.pid}" in second.stderr, second.stderr
        assert _send(tmp_path, "still linked").returncode == 0
        assert [r["text"] for r in _wait_log(home, 1)] == ["still linked"]
        assert station.count("link_down") == 0
        phone.stop()
        station.stop()


def test_send_answers_each_line_and_a_retry_with_an_id_is_a_no_op(tmp_path: Path) -> None:
    with two_hosts() as lan:
        station = _station(lan, tmp_path)
        home = init_phone(tmp_path / "phone")
        phone = _link(lan, station, home)
        result = _send(tmp_path, "good one", "x" * 70_000, "good two")
        assert result.returncode == 3, result.stderr
        assert "line 2: 70,000 characters; the limit is 4,096" in result.stderr
        assert result.stdout.splitlines() == [
            f"line 1: queued as seq 1 for session {station.wait_for('paired')['session'][:16]}",
            f"line 3: queued as seq 2 for session {station.wait_for('paired')['session'][:16]}",
        ]
        for _ in range(2):  # the same send retried: queued once
            again = run(
                [command("station"), "send", *_ctl(tmp_path), "--id", "note-7", "--json"],
                stdin="retried\n",
                timeout=30,
            )
            assert again.returncode == 0, again.stderr
        replies = [json.loads(line) for line in again.stdout.splitlines()]
        assert replies[0]["seq"] == 3 and replies[0]["duplicate"] is True and replies[0]["ts"]
        rows = _wait_log(home, 3)
        time.sleep(0.5)
        assert [r["text"] for r in _log(home)] == ["good one", "good two", "retried"]
        none = _send(tmp_path, "y" * 5000)
        assert none.returncode == 1 and "5,000 characters" in none.stderr
        assert len(rows) == 3
        phone.stop()
        station.stop()


def test_unlink_offline_says_the_station_was_not_reached(tmp_path: Path) -> None:
    with two_hosts() as lan:
        station = _station(lan, tmp_path, "--inactivity", "300")
        home = init_phone(tmp_path / "phone")
        phone = _link(lan, station, home)
        session = station.wait_for("paired")["session"]
        # The station's logout deadline (a notice) went before this command: once it is
        # applied, the phone knows when the station's policy ends the session.
        assert _send(tmp_path, "first").returncode == 0
        assert len(_wait_log(home, 1)) == 1
        lan.down()
        phone.wait_for("link_down", timeout=15)
        started = time.monotonic()
        result = run([command("medic-phone"), "unlink", "--home", str(home), "--wait", "3"])
        took = time.monotonic() - started
        print(f"unlink offline: exit {result.returncode} after {took:.1f} s: {result.stderr!r}")
        assert result.returncode == 1
        assert "was not reached within 3 s" in result.stderr
        assert "inactivity" in result.stderr and "UTC" in result.stderr
        assert [s["session"] for s in _status(tmp_path)["sessions"]] == [session]
        assert station.count("logout") == 0
        lan.up()  # the running link still owes the logout, and delivers it
        logout = station.wait_for("logout", timeout=20, where=lambda e: e["session"] == session)
        assert logout["reason"] == "remote"
        assert phone.popen.wait(20) == 0
        station.stop()


def test_unlink_online_reaches_the_station(tmp_path: Path) -> None:
    with two_hosts() as lan:
        station = _station(lan, tmp_path)
        home = init_phone(tmp_path / "phone")
        phone = _link(lan, station, home)
        session = station.wait_for("paired")["session"]
        result = run([command("medic-phone"), "unlink", "--home", str(home)])
        assert result.returncode == 0, result.stderr
        assert "logged the session out" in result.stdout
        assert station.wait_for("logout", where=lambda e: e["session"] == session)["reason"] == (
            "remote"
        )
        assert phone.popen.wait(20) == 0
        station.stop()
