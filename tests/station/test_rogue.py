"""Rogues on the LAN. A rogue client (200 connections, oversized and malformed frames,
idle sockets): the supervisor's memory stays bounded and the live session goes on. A
rogue station (in a namespace of its own): mDNS can point the phone at it, but only a
completed handshake counts, so it can neither keep the phone from pairing or resuming
nor end its session."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.lanrig import link, phone_home, stamp, wait_rows
from tests.lanrig import send as send_lines
from tests.lanrig import station as lan_station
from tests.netns import Host, lan, requires_root
from tests.procs import STATION_START, Proc, command, init_phone, link_phone, run
from tunnel.handshake import MessageType

pytestmark = pytest.mark.integration


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _rogue(port: int, kind: int) -> str:
    try:
        async with connect(f"ws://127.0.0.1:{port}/", open_timeout=10, max_size=None) as ws:
            if kind == 0:
                await ws.send(b"\x00" * (2 * 1024 * 1024))  # far over the record limit
            elif kind == 1:
                await ws.send(bytes([MessageType.RESUME, 1]) + os.urandom(60))  # unknown
            elif kind == 2:
                await ws.send(b"\xff\xfe garbage")
            elif kind == 3:
                await ws.send("text is not spoken here")
            # kind 4: say nothing and hold the socket open
            await asyncio.wait_for(ws.recv(), 8)
            return "answered"
    except (ConnectionClosed, InvalidHandshake, TimeoutError, OSError) as exc:
        return type(exc).__name__


async def _flood(port: int) -> list[str]:
    return await asyncio.gather(*(_rogue(port, i % 5) for i in range(200)))


def test_rogue_client_cannot_disturb_a_live_session(tmp_path: Path) -> None:
    ctl = ["--control", str(tmp_path / "ctl.sock")]
    station = Proc(
        [
            *STATION_START,
            *ctl,
        ]
    )
    ready = station.wait_for("ready")
    home = init_phone(tmp_path / "phone")
    link_phone(station, home, str(ready["pair_uri"]))
    before = _rss_kib(station.popen.pid)
    start = time.monotonic()
    outcomes = asyncio.run(_flood(int(ready["port"])))
    flood_s = time.monotonic() - start
    after = _rss_kib(station.popen.pid)
    print(f"flood of 200 took {flood_s:.1f} s; supervisor RSS {before} -> {after} KiB")
    assert len(outcomes) == 200
    assert after - before < 64 * 1024  # bounded: no 2 MiB frame was buffered 40 times
    assert run([command("station"), "send", *ctl, "still alive"]).returncode == 0
    deadline = time.monotonic() + 10
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline and not rows:
        rows = json.loads(
            run([command("medic-phone"), "log", "--home", str(home), "--json"]).stdout
        )
        time.sleep(0.2)
    assert [r["text"] for r in rows] == ["still alive"]
    status = json.loads(run([command("station"), "status", *ctl, "--json"]).stdout)
    assert len(status["sessions"]) == 1 and status["sessions"][0]["linked"]


# -- a rogue station on the LAN (issue 14, point 3) ----------------------------------


@pytest.mark.root
@pytest.mark.slow
@requires_root
def test_a_rogue_station_can_point_but_never_decide(tmp_path: Path) -> None:
    """Same name, 30 fake adverts, spoofed answers and goodbyes for the real station,
    a clear-text SESSION_ENDED for every resume: the phone pairs by code and resumes
    (a crash, then the README's same command again) within 3 s every time, and its
    session is never ended by the rogue."""
    with lan("station", "phone", "attacker") as net:
        st = lan_station(net["station"], tmp_path, "--inactivity", "3600")
        rogue = Proc(
            [
                sys.executable,
                "-m",
                "tests.rogue_station",
                "--name",
                "clinic-a",
                "--address",
                net["attacker"].address,
                "--duration",
                "120",
            ],
            prefix=net["attacker"].prefix(),
            cwd=Path(__file__).resolve().parents[2],
        )
        rogue.wait_line(lambda line: '"packets"' in line, timeout=30)
        time.sleep(1.5)  # the spoofed answers and goodbyes have gone out several times
        code = str([e for e in st.events if e["event"] in ("ready", "offer")][-1]["pair_code"])
        home = phone_home(tmp_path)
        began = time.time()
        phone = link(net["phone"], home, code, "--station", "clinic-a")
        paired = phone.wait_for("paired", timeout=20)
        pair_s = stamp(paired) - began
        st.wait_for("paired", timeout=20)
        resume_s: list[float] = []
        for _ in range(5):  # a crash, and the same command again
            phone = _crash_and_rerun(phone, net["phone"], home, code)
            began = time.time()
            up = phone.wait_for("link_up", timeout=20)
            resume_s.append(stamp(up) - began)
        hidden_s: list[float] = []
        for _ in range(5):  # the same, while the real station is away: the rogue answers
            net.unplug("station")
            refused = _rogue_counts(rogue)["resumes_refused"]
            phone = _crash_and_rerun(phone, net["phone"], home, code)
            rogue.wait_line(lambda line, n=refused: _refused_more(line, n), timeout=20)
            time.sleep(1.0)
            assert phone.popen.poll() is None and phone.count("logout") == 0
            back = time.time()
            net.plug("station")
            up = phone.wait_for("link_up", timeout=20)
            hidden_s.append(stamp(up) - back)
        tried = {a for e in phone.events if e["event"] == "connecting" for a in e["addresses"]}
        assert any(a.startswith(net["attacker"].address + ":") for a in tried)  # pointed
        send_lines(tmp_path, [f"after the rogue {i}" for i in range(20)])
        rows = wait_rows(home, 20, 20)
        counts = _rogue_counts(rogue)
        print(
            f"rogue station ({counts}): pairing by code {pair_s:.2f} s;"
            f" 5 resumes after a crash, max {max(resume_s):.2f} s from the command;"
            f" 5 more with the rogue answering first, max {max(hidden_s):.2f} s after the"
            " real station came back"
        )
        assert pair_s <= 3.0 and max(resume_s) <= 3.0 and max(hidden_s) <= 3.0
        assert counts["resumes_refused"] > 0  # the rogue did answer resumes: in vain
        assert phone.count("logout") == 0 and phone.popen.poll() is None
        assert [r["text"] for r in rows] == [f"after the rogue {i}" for i in range(20)]
        status = run([command("station"), "status", "--control", str(tmp_path / "ctl.sock"),
                      "--json"])  # fmt: skip
        sessions = json.loads(status.stdout)["sessions"]
        assert len(sessions) == 1 and sessions[0]["linked"]
        rogue.stop()
        phone.stop()
        st.stop()


def _crash_and_rerun(phone: Proc, host: Host, home: Path, code: str) -> Proc:
    phone.signal(signal.SIGKILL)
    phone.popen.wait(10)
    return link(host, home, code, "--station", "clinic-a")


def _rogue_counts(rogue: Proc) -> dict[str, int]:
    lines = [json.loads(line) for line in rogue.lines if '"packets"' in line]
    return lines[-1]


def _refused_more(line: str, before: int) -> bool:
    return '"packets"' in line and json.loads(line)["resumes_refused"] > before
