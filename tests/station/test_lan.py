"""Station and phone on two hosts of their own (network namespaces joined by a veth).

The phone finds the station by mDNS, pairs, receives 500 commands; the veth goes down
for 10 s while 200 more are queued at the station; within 3 s of the link returning all
700 are in the phone's store exactly once, in order.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.netns import Lan, requires_root, two_hosts
from tests.procs import Proc, command, run

pytestmark = [pytest.mark.root, pytest.mark.integration, requires_root]


def _station(lan: Lan, tmp_path: Path) -> Proc:
    proc = Proc(
        [
            command("station"),
            "start",
            "--name",
            "clinic-a",
            "--host",
            lan.station.address,
            "--port",
            "8765",
            "--json",
            "--control",
            str(tmp_path / "ctl.sock"),
        ],
        prefix=lan.station.prefix(),
    )
    proc.wait_for("ready", timeout=20)
    return proc


def _send(tmp_path: Path, lines: list[str]) -> None:
    result = run(
        [command("station"), "send", "--control", str(tmp_path / "ctl.sock"), "-"],
        stdin="\n".join(lines),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def _log(home: Path) -> list[dict[str, object]]:
    result = run([command("medic-phone"), "log", "--home", str(home), "--json"])
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def _applied(phone: Proc, seq: int, timeout: float = 60.0) -> None:
    """Wait for the phone's own word that command ``seq`` is in its store (its
    ``command`` event comes after the commit): no process per look, no window."""
    phone.wait_for("command", where=lambda e: int(e["seq"]) >= seq, timeout=timeout)


def _drill(lan: Lan, tmp_path: Path, station: Proc, target: str, *extra: str) -> None:
    home = tmp_path / "phone"
    assert run([command("medic-phone"), "init", "--home", str(home)]).returncode == 0
    phone = Proc(
        [command("medic-phone"), "link", target, "--home", str(home), "--json", *extra],
        prefix=lan.phone.prefix(),
    )
    phone.wait_for("paired", timeout=20)
    station.wait_for("paired")
    _send(tmp_path, [f"before {i}" for i in range(500)])
    _applied(phone, 500)
    assert len(_log(home)) == 500
    lan.down()
    down_at = time.monotonic()
    _send(tmp_path, [f"during {i}" for i in range(200)])
    station.wait_for("queued", where=lambda e: e["depth"] == 200, timeout=10)
    time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))
    lan.up()
    up_at = time.monotonic()
    _applied(phone, 700)
    elapsed = time.monotonic() - up_at
    rows = _log(home)
    print(f"all 700 in the store {elapsed:.2f} s after the link returned")
    # The figure (<= 3 s), measured when the phone says so (no polling in it);
    # typically 0.7 s: the phone's backoff (at most 1 s) and one resume handshake.
    assert elapsed <= 3.0
    expected = [f"before {i}" for i in range(500)] + [f"during {i}" for i in range(200)]
    assert [r["seq"] for r in rows] == list(range(1, 701))
    assert [r["text"] for r in rows] == expected
    phone.stop()


def test_discover_pair_by_code_and_survive_a_10s_outage(tmp_path: Path) -> None:
    with two_hosts() as lan:
        station = _station(lan, tmp_path)
        found = run(
            [command("medic-phone"), "discover", "--json", "--timeout", "3"],
            prefix=lan.phone.prefix(),
        )
        assert found.returncode == 0, found.stderr
        stations = json.loads(found.stdout)
        assert [s["name"] for s in stations] == ["clinic-a"]
        assert stations[0]["addresses"] == [lan.station.address]
        assert stations[0]["port"] == 8765 and stations[0]["offer_open"] is True
        code = str(station.wait_for("ready")["pair_code"])
        _drill(lan, tmp_path, station, code, "--station", "clinic-a")
        station.stop()


def test_pair_by_uri_and_survive_a_10s_outage(tmp_path: Path) -> None:
    with two_hosts() as lan:
        station = _station(lan, tmp_path)
        uri = str(station.wait_for("ready")["pair_uri"])
        assert f"a={lan.station.address}:8765" in uri
        _drill(lan, tmp_path, station, uri)
        station.stop()
