"""A rogue client on the LAN: 200 connections, oversized and malformed frames, idle
sockets. The supervisor's memory stays bounded and the live session goes on."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.procs import Proc, command, init_phone, link_phone, run
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
    station = Proc([command("station"), "start", "--no-mdns", "--port", "0", "--json", *ctl])
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
