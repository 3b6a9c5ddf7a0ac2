"""Offers on a hostile LAN, with real processes on hosts of their own (network
namespaces the test creates): an attacker flooding pairing hellos cannot stop a medic
pairing by QR code, nor guess codes faster than the back-off allows; the previous offer
still pairs just after a rotation, by URI and by code."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.netns import Host, requires_root, three_hosts, two_hosts
from tests.procs import Proc, command, init_phone, run
from tunnel.offer import PairingOffer

pytestmark = [pytest.mark.root, pytest.mark.integration, requires_root]
PORT = 8765


def _station(host: Host, tmp_path: Path, *extra: str) -> Proc:
    proc = Proc(
        [
            command("station"),
            "start",
            "--name",
            "clinic-a",
            "--host",
            host.address,
            "--port",
            str(PORT),
            "--no-mdns",
            "--no-ui",
            "--json",
            "--control",
            str(tmp_path / "ctl.sock"),
            *extra,
        ],
        prefix=host.prefix(),
    )
    proc.wait_for("ready", timeout=30)
    return proc


def _next_offer(station: Proc, after: int, timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
    """The newest offer shown from event index ``after`` on (waiting for one), and its
    index."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = list(station.events)
        shown = [
            (i, e) for i, e in enumerate(events) if i >= after and e["event"] in ("ready", "offer")
        ]
        if shown:
            return shown[-1]
        time.sleep(0.02)
    raise AssertionError(f"no offer after event {after}: {station.events[-5:]}")


def _when(event: dict[str, Any]) -> float:
    """The wall-clock time of a station event (its RFC 3339 ``ts``)."""
    return datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()


def _logout(tmp_path: Path, session: str) -> None:
    result = run(
        [
            command("station"),
            "logout",
            "--control",
            str(tmp_path / "ctl.sock"),
            "--session",
            session,
        ]
    )
    assert result.returncode == 0, result.stderr


def _most_in_a_minute(times: list[float]) -> int:
    return max((sum(1 for u in times if t <= u < t + 60) for t in times), default=0)


@pytest.mark.slow
def test_an_attacker_flooding_hellos_cannot_stop_pairing_by_qr_nor_guess_fast(
    tmp_path: Path,
) -> None:
    with three_hosts() as lan:
        station = _station(lan.station, tmp_path)
        offer_file, stop_file = tmp_path / "offer-id", tmp_path / "stop"
        ready = station.wait_for("ready")
        offer_file.write_text(PairingOffer.from_uri(str(ready["pair_uri"])).offer_id.hex())
        attacker = Proc(
            [
                sys.executable,
                "-m",
                "tests.pairing_attacker",
                "--url",
                f"ws://{lan.station.address}:{PORT}/",
                "--seconds",
                "180",
                "--offer-file",
                str(offer_file),
                "--stop-file",
                str(stop_file),
            ],
            prefix=lan.attacker.prefix(),
            cwd=REPO,
        )
        flood_start = time.monotonic()
        time.sleep(3)  # the flood is on before the first medic arrives
        took: list[float] = []
        index, offer = _next_offer(station, 0)
        for n in range(20):
            uri = str(offer["pair_uri"])
            offer_file.write_text(PairingOffer.from_uri(uri).offer_id.hex())
            home = init_phone(tmp_path / f"phone{n}")
            started = time.monotonic()
            phone = Proc(
                [command("medic-phone"), "link", uri, "--home", str(home), "--json"],
                prefix=lan.phone.prefix(),
            )
            phone.wait_for("paired", timeout=30)
            took.append(time.monotonic() - started)
            paired = station.wait_for("paired", after=index)
            index = station.events.index(paired)
            phone.stop()
            _logout(tmp_path, str(paired["session"]))
            index, offer = _next_offer(station, index + 1)
        # At least a minute of flood, then the attacker's own account.
        time.sleep(max(0.0, 63 - (time.monotonic() - flood_start)))
        stop_file.write_text("stop")
        assert attacker.popen.wait(30) == 0, attacker.stderr[-5:]
        summary = json.loads(attacker.lines[-1])
        flood_s = summary["seconds"]
        guesses = summary["guess_times"]
        outcomes = summary["outcomes"]
        hellos = sum(outcomes.values())
        paused = station.count("code_paused")
        offers = station.count("offer")
        print(
            f"flood {flood_s} s, {hellos} attacker connections ({hellos / flood_s:.0f}/s):"
            f" {outcomes}\nURI pairings: 20, slowest {max(took):.2f} s,"
            f" median {sorted(took)[10]:.2f} s; complete code guesses {len(guesses)}"
            f" ({len(guesses) / flood_s * 60:.1f}/min, at most {_most_in_a_minute(guesses)}"
            f" in a minute); station: {paused} code_paused, {offers} offer lines"
        )
        assert not any(k.endswith(("GUESSED", "ANSWERED")) for k in outcomes), outcomes
        assert max(took) <= 2.0, took
        assert _most_in_a_minute(guesses) <= 7
        assert len(guesses) / flood_s * 60 <= 7
        assert paused <= len(guesses)  # one line per evaluated wrong guess at most
        assert offers <= 20 + 1  # one per new standby; no line per burnt code
        station.stop()


def _pair(lan_phone: Host, home: Path, target: str, *extra: str, timeout: float = 30.0) -> Proc:
    return Proc(
        [command("medic-phone"), "link", target, "--home", str(home), "--json", *extra],
        prefix=lan_phone.prefix(),
    )


@pytest.mark.slow
def test_pairing_half_a_second_before_and_after_a_rotation(tmp_path: Path) -> None:
    ttl = 4.0
    with two_hosts() as lan:
        station = _station(lan.station, tmp_path, "--offer-ttl", str(ttl))
        connect = f"{lan.station.address}:{PORT}"
        results: list[tuple[str, str, bool, float]] = []
        index = 0
        for n in range(20):
            by = "uri" if n % 2 == 0 else "code"
            when = "before" if n % 4 < 2 else "after"
            index, offer = _next_offer(station, index)
            if when == "before":
                at = _when(offer) + ttl - 0.5
            else:
                rotated = station.wait_for("offer", after=index + 1, timeout=ttl + 10)
                at = _when(rotated) + 0.5
            time.sleep(max(0.0, at - time.time()))
            home = init_phone(tmp_path / f"phone{n}")
            if by == "uri":
                phone = _pair(lan.phone, home, str(offer["pair_uri"]))
            else:
                phone = _pair(lan.phone, home, str(offer["pair_code"]), "--connect", connect)
            try:
                phone.wait_for("paired", timeout=20)
                paired = station.wait_for("paired", after=index)
                ok = True
            except AssertionError:
                ok = False
            results.append((by, when, ok, round(time.time() - at, 2)))
            phone.stop()
            if ok:
                index = station.events.index(paired) + 1
                _logout(tmp_path, str(paired["session"]))
            else:
                index = len(station.events)
        print("pairings around a rotation:", results)
        assert all(ok for _, _, ok, _ in results), results
        station.stop()
