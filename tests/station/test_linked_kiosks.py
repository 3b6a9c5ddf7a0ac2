"""Issue 18 over a real LAN: one phone linked to four stations at once, each in its own
network namespace on one switch; and a command with a TTL that waits out an outage.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.netns import Host, requires_root, switched_hosts, two_hosts
from tests.procs import Proc, command, init_phone, run

pytestmark = [pytest.mark.root, pytest.mark.integration, requires_root]


def _station(host: Host, ctl: Path, name: str, *extra: str) -> Proc:
    proc = Proc(
        [
            command("station"),
            "start",
            "--name",
            name,
            "--host",
            host.address,
            "--port",
            "8765",
            "--no-mdns",
            "--no-ui",
            "--json",
            "--control",
            str(ctl),
            *extra,
        ],
        prefix=host.prefix(),
    )
    proc.wait_for("ready", timeout=30)
    return proc


def _send(ctl: Path, *lines: str, extra: tuple[str, ...] = ()) -> Any:
    return run(
        [command("station"), "send", "--control", str(ctl), *extra],
        stdin="\n".join(lines) + "\n",
        timeout=30,
    )


def _json(argv: list[str]) -> Any:
    result = run(argv)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _log(home: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = _json(
        [command("medic-phone"), "log", "--home", str(home), "--json"]
    )
    return rows


def _until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_one_phone_linked_to_four_stations(tmp_path: Path) -> None:
    with switched_hosts(5) as hosts:
        phone_host, station_hosts = hosts[0], hosts[1:]
        names = [f"clinic-{i}" for i in range(1, 5)]
        ctls = [tmp_path / f"ctl-{i}.sock" for i in range(1, 5)]
        stations = [_station(h, c, n) for h, c, n in zip(station_hosts, ctls, names, strict=True)]
        home = init_phone(tmp_path / "phone", "--name", "ward-3 phone")
        links = []
        for station in stations:
            uri = str(station.wait_for("ready")["pair_uri"])
            link = Proc(
                [command("medic-phone"), "link", uri, "--home", str(home), "--json"],
                prefix=phone_host.prefix(),
            )
            link.wait_for("paired", timeout=20)
            station.wait_for("paired")
            links.append(link)
        for ctl, name in zip(ctls, names, strict=True):
            assert _send(ctl, *(f"{name} #{n}" for n in range(1, 11))).returncode == 0
        _until(lambda: len(_log(home)) == 40)
        rows = _log(home)
        for name in names:
            mine = [r for r in rows if r["station"] == name]
            assert [r["text"] for r in mine] == [f"{name} #{n}" for n in range(1, 11)]
            assert [r["seq"] for r in mine] == list(range(1, 11))
        listed = _json([command("medic-phone"), "links", "--home", str(home), "--json"])
        assert sorted(lk["station"] for lk in listed) == names
        assert {lk["state"] for lk in listed} == {"online"}
        for station in stations:
            assert station.wait_for("device")["name"] == "ward-3 phone"

        gone = run([command("medic-phone"), "unlink", "--home", str(home), "--station", "clinic-2"])
        assert gone.returncode == 0, gone.stderr
        assert stations[1].wait_for("logout")["reason"] == "remote"
        assert links[1].popen.wait(20) == 0
        for ctl, name in zip(ctls, names, strict=True):
            result = _send(ctl, f"{name} after")
            assert (result.returncode == 0) == (name != "clinic-2"), (name, result.stderr)
        _until(lambda: len(_log(home)) == 43)
        assert sorted(r["text"] for r in _log(home)[40:]) == [
            "clinic-1 after",
            "clinic-3 after",
            "clinic-4 after",
        ]
        listed = _json([command("medic-phone"), "links", "--home", str(home), "--json"])
        states = {lk["station"]: lk["state"] for lk in listed}
        assert states == {
            "clinic-1": "online",
            "clinic-2": "ended",
            "clinic-3": "online",
            "clinic-4": "online",
        }
        for proc in (*links, *stations):
            proc.stop()


def test_a_late_command_waits_in_pending_until_confirmed(tmp_path: Path) -> None:
    with two_hosts() as lan:
        ctl = tmp_path / "ctl.sock"
        station = _station(lan.station, ctl, "clinic-a")
        home = init_phone(tmp_path / "phone")
        phone = Proc(
            [
                command("medic-phone"),
                "link",
                str(station.wait_for("ready")["pair_uri"]),
                "--home",
                str(home),
                "--json",
            ],
            prefix=lan.phone.prefix(),
        )
        phone.wait_for("paired", timeout=20)
        assert _send(ctl, "on time", extra=("--ttl", "2s", "--wait", "10")).returncode == 0
        lan.down()
        phone.wait_for("link_down", timeout=15)
        assert _send(ctl, "too late", extra=("--ttl", "2s")).returncode == 0
        time.sleep(5)
        lan.up()
        expired = phone.wait_for("expired", timeout=20)
        assert expired["seq"] == 2 and expired["late_s"] >= 1.0
        assert [r["text"] for r in _log(home)] == ["on time"]
        waiting = _json([command("medic-phone"), "pending", "--home", str(home), "--json"])
        assert [(w["seq"], w["text"]) for w in waiting] == [(2, "too late")]

        def fate_of_2() -> str:
            status = _json([command("station"), "status", "--control", str(ctl), "--json"])
            return str(status["sessions"][0]["commands"]["expired"])

        _until(lambda: fate_of_2() == "1")
        confirmed = run([command("medic-phone"), "confirm", "--home", str(home), "2"])
        assert confirmed.returncode == 0, confirmed.stderr
        assert "the station was told" in confirmed.stdout
        assert [r["text"] for r in _log(home)] == ["on time", "too late"]
        assert _json([command("medic-phone"), "pending", "--home", str(home), "--json"]) == []
        _until(lambda: fate_of_2() == "0")
        phone.stop()
        station.stop()
