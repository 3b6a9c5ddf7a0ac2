"""`medic-phone link` is never silent (issue 13, point 2), on 127.0.0.1: it says what it
tries and what failed, pairs only while the offer can be valid, says when a Ctrl-C
stopped it before pairing, and a linked phone that lost the station keeps trying and
says so every 10 s. Also: the terminal QR code's colours, and no QR code off a terminal."""

from __future__ import annotations

import re
import signal
import socket
import time
from pathlib import Path

import pytest
import segno

from station.qr import terminal_qr
from tests.lanrig import stamp
from tests.procs import Proc, command, init_phone, link_phone, start_station

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _uri_to(uri: str, port: int, expires_at: int) -> str:
    uri = re.sub(r"a=127\.0\.0\.1:\d+", f"a=127.0.0.1:{port}", uri)
    return re.sub(r"&x=\d+", f"&x={expires_at}", uri)


def test_pairing_tries_while_the_offer_can_be_valid_then_says_why(tmp_path: Path) -> None:
    station = start_station(tmp_path)
    uri = str(station.wait_for("ready")["pair_uri"])
    station.stop()
    port = _closed_port()
    # Expired 7 s ago: the station keeps an offer 10 s past its rotation, so 2-3 s are left.
    stale = _uri_to(uri, port, int(time.time()) - 7)
    home = init_phone(tmp_path / "phone")
    began = time.monotonic()
    phone = Proc([command("medic-phone"), "link", stale, "--home", str(home), "--json"])
    assert phone.popen.wait(20) == 1
    took = time.monotonic() - began
    connecting = phone.wait_for("connecting")
    assert connecting["addresses"] == [f"127.0.0.1:{port}"]
    failed = phone.wait_for("connect_failed")
    assert failed == {**failed, "address": f"127.0.0.1:{port}", "error": "connection refused"}
    assert phone.count("connect_failed") >= 2  # it kept trying while it could
    diagnosis = phone.wait_for("diagnosis")
    assert diagnosis["cause"] == "refused" and f"127.0.0.1:{port}" in diagnosis["message"]
    assert phone.stderr[-1].startswith("medic-phone: pairing failed: the offer can no longer be")
    print(f"a URI with 2-3 s of validity left and no station: gave up after {took:.1f} s")
    assert 1.0 <= took <= 8.0


def test_ctrl_c_before_pairing_says_nothing_was_linked(tmp_path: Path) -> None:
    station = start_station(tmp_path)
    uri = str(station.wait_for("ready")["pair_uri"])
    station.stop()
    home = init_phone(tmp_path / "phone")
    target = _uri_to(uri, _closed_port(), int(time.time()) + 30)
    phone = Proc([command("medic-phone"), "link", target, "--home", str(home)])
    phone.wait_line(lambda line: line.startswith("Connecting to 127.0.0.1:"), timeout=20)
    phone.signal(signal.SIGINT)
    assert phone.popen.wait(10) == 130
    time.sleep(0.2)
    said = "\n".join(phone.stderr)
    assert "stopped before pairing: nothing was linked" in said and "detached" not in said


@pytest.mark.slow  # two status lines, 10 s apart
def test_a_linked_phone_that_lost_the_station_keeps_trying_and_says_so(tmp_path: Path) -> None:
    station = start_station(tmp_path)
    home = init_phone(tmp_path / "phone")
    phone = link_phone(station, home, str(station.wait_for("ready")["pair_uri"]))
    station.signal(signal.SIGKILL)  # the kiosk loses power
    down = phone.wait_for("link_down", timeout=15)
    status = phone.wait_for("status", timeout=30)
    assert 9.0 <= status["offline_s"] <= 11.0
    assert status["last_error"].endswith("connection refused")
    assert stamp(status) - stamp(down) <= 30.0
    second = phone.wait_for("status", timeout=30, after=phone.events.index(status) + 1)
    assert second["offline_s"] > status["offline_s"]
    assert phone.popen.poll() is None and phone.count("logout") == 0  # it never gives up
    phone.stop()


def test_the_terminal_qr_code_forces_its_colours() -> None:
    uri = "fieldstation://pair?v=1&n=clinic-a&a=10.0.0.1:8765&id=AAAAAAAAAAA&x=1"
    lines = terminal_qr(uri).splitlines()
    modules = [[bool(m) for m in row] for row in segno.make(uri, error="m").matrix_iter(border=4)]
    decoded: list[list[bool]] = []
    for line in lines:
        # Black on white from the fixed colour cube, on every line: never the theme's.
        assert line.startswith("\x1b[38;5;16;48;5;231m") and line.endswith("\x1b[0m")
        cells = line[len("\x1b[38;5;16;48;5;231m") : -len("\x1b[0m")]
        top = [c in "█▀" for c in cells]
        bottom = [c in "█▄" for c in cells]
        decoded += [top, bottom]
    assert decoded[: len(modules)] == modules
    assert all(not m for row in decoded[len(modules) :] for m in row)  # padding is light
