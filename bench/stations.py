"""The station's processes as users run them: memory of each, and the wipe.

A real ``station start`` (supervisor and a worker per session) on 127.0.0.1. Each round
pairs a phone, sends ``commands`` commands through the session's control socket until
the phone has committed them all (and pushed them back: the worker's mirror holds
them), reads the memory of the supervisor and of the session's worker, then logs the
session out and times how long the worker takes to be gone.
"""

from __future__ import annotations

import asyncio
import os
import select
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procinfo
from bench.fleet import logout, phone
from bench.station_proc import BenchProcessError, Station
from bench.stats import median


def _wait_gone(pidfd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


async def station_figures(rounds: int, commands: int, pin: str | None = None) -> dict[str, Any]:
    """Median/max wipe time over ``rounds`` sessions; the largest memory figures seen."""
    wipes: list[float] = []
    supervisor: list[procinfo.Memory] = []
    workers: list[procinfo.Memory] = []
    pairing: list[float] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        station = await Station.start(tmp, pin=pin)
        url = f"ws://127.0.0.1:{station.port}/"
        try:
            async with phone(tmp / "phone") as medic:
                for _ in range(rounds):
                    pairing.append(await medic.pair(station, await station.next_offer(), url))
                    last = 0
                    for i in range(commands):
                        last, _ = await medic.send(f"command {i}")
                    await medic.wait_applied(last)
                    worker = await _worker_pid(station, medic.session, commands)
                    supervisor.append(procinfo.memory(station.pid))
                    workers.append(procinfo.memory(worker))
                    pidfd = os.pidfd_open(worker)
                    try:
                        start = time.perf_counter()
                        assert medic.session is not None
                        await logout(station, medic.session)
                        if not await asyncio.to_thread(_wait_gone, pidfd, 10.0):
                            raise BenchProcessError("the worker outlived its logout by 10 s")
                        wipes.append((time.perf_counter() - start) * 1000)
                    finally:
                        os.close(pidfd)
                    await medic.finish()
        finally:
            await station.stop()
    top_sup = max(supervisor, key=lambda m: m.rss_mb)
    top_worker = max(workers, key=lambda m: m.rss_mb)
    return {
        "wipe_ms": median(wipes),
        "wipe_max_ms": max(wipes),
        "pair_station_ms": median(pairing) * 1000,
        "supervisor_rss_mb": top_sup.rss_mb,
        "supervisor_pss_mb": top_sup.pss_mb,
        "supervisor_uss_mb": top_sup.uss_mb,
        "worker_rss_mb": top_worker.rss_mb,
        "worker_pss_mb": top_worker.pss_mb,
        "worker_uss_mb": top_worker.uss_mb,
    }


async def _worker_pid(station: Station, session: str | None, mirrored: int) -> int:
    """The session's worker, once its mirror holds what the phone pushed back."""
    deadline = time.monotonic() + 30
    while True:
        status = await station.status()
        for entry in status.sessions:
            if entry.session == session and entry.mirrored >= mirrored:
                return entry.pid
        if time.monotonic() > deadline:
            raise BenchProcessError("the worker's mirror never caught up with the phone")
        await asyncio.sleep(0.05)
