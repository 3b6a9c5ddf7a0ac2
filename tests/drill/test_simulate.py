"""`station simulate` and `station proxy` as users run them.

The default suite runs a short drill (one phone, one of each outage, a few seconds); the
drill at default settings (30 s) and the long one are marked slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drill.simulate import SimConfig, phone_links
from tests.procs import STATION_START, Proc, command, init_phone, link_phone, run

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


SHORT_DRILL = """
[[phone]]
events = [
    { kind = "down", start = 0.5, end = 1.3 },
    { kind = "cut", at = 1.8 },
    { kind = "blackhole", start = 2.2, end = 3.0 },
]
"""


def test_a_short_drill_through_each_kind_of_outage(tmp_path: Path) -> None:
    """The quick smoke: what the phone applied matches what was typed, after a down,
    a cut and a blackhole, and the logout wipes the session."""
    scenario = tmp_path / "short.toml"
    scenario.write_text(SHORT_DRILL)
    report = _simulate(
        "--phones", "1", "--duration", "4", "--rate", "10",
        "--profile", "custom", "--scenario", str(scenario),
    )  # fmt: skip
    assert set(KEYS) <= set(report)
    assert report["lost"] == report["duplicated"] == report["out_of_order"] == 0
    assert report["delivered"] == report["sent"] and int(report["sent"]) >= 15  # type: ignore[call-overload]
    assert report["outages"] == 3
    (phone,) = report["per_phone"]  # type: ignore[misc]
    assert phone["pushed"] >= 1  # the medic's notes went in through the phone's CLI
    assert report["wiped"] == 1 and report["undelivered"] == 0


@pytest.mark.slow
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
    def timelines(seed: int) -> list[list[dict[str, object]]]:
        return [link.schedule.to_dicts() for link in phone_links(SimConfig(phones=3, seed=seed))]

    assert timelines(5) == timelines(5) and timelines(5) != timelines(6) and all(timelines(5))


def test_bad_scenarios_are_refused_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[phone]]\nevents = [{kind = "meteor", start = 1.0}]\n')
    result = run([command("station"), "simulate", "--profile", "custom", "--scenario", str(bad)])
    assert result.returncode == 2 and "scenario" in result.stderr and "meteor" in result.stderr
    result = run([command("station"), "simulate", "--profile", "custom"])
    assert result.returncode == 2 and "--scenario" in result.stderr
    result = run(
        [command("station"), "proxy", "--listen", ":0", "--target", ":1", "--scenario", str(bad)]
    )
    assert result.returncode == 2 and "meteor" in result.stderr


def test_proxy_between_a_real_phone_and_station(tmp_path: Path) -> None:
    ctl = ["--control", str(tmp_path / "ctl.sock")]
    station = Proc(
        [
            *STATION_START,
            *ctl,
        ]
    )
    ready = station.wait_for("ready", timeout=30)
    proxy = Proc(
        [
            command("station"), "proxy", "--listen", "127.0.0.1:0",
            "--target", f"127.0.0.1:{ready['port']}", "--latency", "0.01",
        ],
        stdin=True,
    )  # fmt: skip
    port = proxy.wait_line(lambda line: line.startswith("proxy on port"), timeout=30).split()[3]
    home = tmp_path / "phone"
    init_phone(home)
    phone = link_phone(station, home, str(ready["pair_uri"]), "--connect", f"127.0.0.1:{port}")
    session = station.wait_for("paired")["session"]
    proxy.write("down")
    proxy.wait_line(lambda line: line.startswith("state down"), timeout=30)
    phone.wait_for("link_down", timeout=30)
    assert run([command("station"), "send", *ctl, "through the outage"]).returncode == 0
    station.wait_for("queued", where=lambda e: e["session"] == session and e["depth"] == 1)
    assert phone.count("command") == 0
    proxy.write("blackhole to_phone")
    proxy.wait_line(lambda line: line.startswith("state blackhole (to_phone)"), timeout=30)
    proxy.write("up")
    proxy.wait_line(lambda line: line.startswith("state up"), timeout=30)
    assert phone.wait_for("command", timeout=30)["text"] == "through the outage"
    proxy.write("fly")
    assert proxy.popen.poll() is None  # an unknown command is refused, the proxy goes on


@pytest.mark.slow
def test_five_phones_ninety_seconds_of_flaky_wifi() -> None:
    report = _simulate("--phones", "5", "--duration", "90", "--seed", "11", timeout=400)
    print(
        f"5 phones, 90 s flaky-wifi: sent {report['sent']}, outages {report['outages']},"
        f" recovery {report['recovery_s']}, latency {report['latency_ms']}"
    )
    assert report["lost"] == report["duplicated"] == report["out_of_order"] == 0
    assert report["delivered"] == report["sent"]
