"""`station simulate` and `station proxy` as users run them."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from station.simulate import SimConfig, schedules
from tests.procs import Proc, command, init_phone, link_phone, run

pytestmark = pytest.mark.integration

KEYS = (
    "sent",
    "delivered",
    "lost",
    "duplicated",
    "out_of_order",
    "outages",
    "recovery_s",
    "latency_ms",
    "undelivered",
)


def _simulate(*args: str, timeout: float = 240) -> dict[str, object]:
    result = run([command("station"), "simulate", "--json", *args], timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_simulate_at_default_settings_loses_nothing() -> None:
    report = _simulate()  # 3 phones, flaky-wifi, 30 s, seed 1
    assert set(KEYS) <= set(report)
    assert report["lost"] == report["duplicated"] == report["out_of_order"] == 0
    assert report["delivered"] == report["sent"] and int(report["sent"]) > 50  # type: ignore[call-overload]
    per_phone = report["per_phone"]
    assert isinstance(per_phone, list)
    assert all(p["outages"] >= 1 for p in per_phone)
    assert len(per_phone) == 3
    assert report["wiped"] == 3 and report["undelivered"] == 0
    wipe = report["wipe_check"]
    assert isinstance(wipe, dict) and (wipe["found"] == 0 if wipe["ran"] else True)


def test_same_seed_same_timeline() -> None:
    a = [s.to_dicts() for s in schedules(SimConfig(phones=3, seed=5, duration=60))]
    b = [s.to_dicts() for s in schedules(SimConfig(phones=3, seed=5, duration=60))]
    c = [s.to_dicts() for s in schedules(SimConfig(phones=3, seed=6, duration=60))]
    assert a == b and a != c and all(a)


def test_custom_scenario_from_toml(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        '[[phone]]\nevents = [{kind = "down", start = 2.0, end = 4.0},'
        ' {kind = "blackhole", start = 6.0, end = 8.0}]\n'
    )
    report = _simulate(
        "--phones", "1", "--duration", "10", "--profile", "custom", "--scenario", str(scenario)
    )
    assert report["lost"] == 0 and report["outages"] == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[[phone]]\nevents = [{kind = "meteor", start = 1.0}]\n')
    result = run([command("station"), "simulate", "--profile", "custom", "--scenario", str(bad)])
    assert result.returncode == 2 and "scenario" in result.stderr


def test_proxy_between_a_real_phone_and_station(tmp_path: Path) -> None:
    ctl = ["--control", str(tmp_path / "ctl.sock")]
    station = Proc([command("station"), "start", "--no-mdns", "--port", "0", "--json", *ctl])
    ready = station.wait_for("ready")
    proxy = subprocess.Popen(
        [
            command("station"),
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--target",
            f"127.0.0.1:{ready['port']}",
            "--latency",
            "0.01",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stdout is not None and proxy.stdin is not None
        port = proxy.stdout.readline().split()[3]
        home = tmp_path / "phone"
        init_phone(home)
        phone = link_phone(station, home, str(ready["pair_uri"]), "--connect", f"127.0.0.1:{port}")
        proxy.stdin.write("down\n")
        proxy.stdin.flush()
        assert "state down" in proxy.stdout.readline()
        phone.wait_for("link_down")
        assert run([command("station"), "send", *ctl, "through the outage"]).returncode == 0
        time.sleep(1)
        proxy.stdin.write("up\n")
        proxy.stdin.flush()
        assert "state up" in proxy.stdout.readline()
        assert phone.wait_for("command", timeout=10)["text"] == "through the outage"
    finally:
        proxy.terminate()
        proxy.wait(10)
        for stream in (proxy.stdin, proxy.stdout):
            if stream is not None:
                stream.close()


@pytest.mark.slow
def test_five_phones_ninety_seconds_of_flaky_wifi() -> None:
    report = _simulate("--phones", "5", "--duration", "90", "--seed", "11", timeout=400)
    print(
        f"5 phones, 90 s flaky-wifi: sent {report['sent']}, outages {report['outages']},"
        f" recovery {report['recovery_s']}, latency {report['latency_ms']}"
    )
    assert report["lost"] == report["duplicated"] == report["out_of_order"] == 0
    assert report["delivered"] == report["sent"]
