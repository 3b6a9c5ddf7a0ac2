"""``python -m bench --soak``: a day of pair -> commands -> logout, in a row.

One real ``station start``; one phone (a real ``PhoneNode`` and its store, reused as a
medic's phone would be). Each cycle pairs with the station's current offer, sends 20
commands through the session worker's control socket, waits until the phone has
committed all of them, and logs the session out. Every cycle must be wiped with 0
undelivered and the phone must see its logout. At rest between cycles the supervisor
has one child (the standby worker); at the end its open descriptors and children must
be back to their counts after the first cycle, and its resident memory may have grown
by at most 5 MB. Bounded: ``cycles`` and a deadline.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import procinfo
from bench.fleet import BenchPhone, logout, phone
from bench.station_proc import BenchProcessError, Station

RSS_GROWTH_MB = 5.0
WARM_UP = 10  # cycles before the warm baseline (first allocations, caches)


async def soak(
    cycles: int,
    *,
    commands: int = 20,
    deadline_s: float = 3600.0,
    pin: str | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        station = await Station.start(tmp, pin=pin)
        try:
            async with phone(tmp / "phone") as medic:
                return await _cycles(station, medic, cycles, commands, deadline_s, progress)
        finally:
            await station.stop()


async def _rest(station: Station) -> tuple[int, int]:
    """(descriptors, children) of the supervisor once only the standby worker is left."""
    for _ in range(500):
        await station.next_offer()
        kids = procinfo.children(station.pid)
        if len(kids) == 1:
            return procinfo.descriptors(station.pid), len(kids)
        await asyncio.sleep(0.01)
    raise BenchProcessError("the supervisor never came back to one child at rest")


async def _cycles(
    station: Station,
    medic: BenchPhone,
    cycles: int,
    commands: int,
    deadline_s: float,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{station.port}/"
    start = time.monotonic()
    samples: list[dict[str, Any]] = []
    pairing: list[float] = []
    wiped_clean = 0
    base: dict[str, Any] = {}
    done = 0
    for cycle in range(1, cycles + 1):
        if time.monotonic() - start > deadline_s:
            progress(f"soak: deadline of {deadline_s:.0f} s reached after {done} cycles")
            break
        pairing.append(await medic.pair(station, await station.next_offer(), url))
        last = 0
        for i in range(commands):
            last, _ = await medic.send(f"soak {cycle}.{i}")
        await medic.wait_applied(last, within=60)
        session = medic.session
        assert session is not None
        seen = len(station.events)
        ended = await logout(station, session)

        def wiped(event: dict[str, Any], session: str = session) -> bool:
            return event.get("event") == "wiped" and event.get("session") == session

        await station.wait_for(wiped, after=seen)
        await medic.wait_logged_out()
        await medic.finish()
        if ended.undelivered == 0 and len(medic.applied) == commands:
            wiped_clean += 1
        done = cycle
        if cycle in (1, WARM_UP) or cycle % 50 == 0 or cycle == cycles:
            fds, kids = await _rest(station)
            sample = {
                "cycle": cycle,
                "elapsed_s": round(time.monotonic() - start, 1),
                "supervisor_rss_mb": round(procinfo.memory(station.pid).rss_mb, 2),
                "supervisor_pss_mb": round(procinfo.memory(station.pid).pss_mb, 2),
                "descriptors": fds,
                "children": kids,
            }
            samples.append(sample)
            if cycle in (1, WARM_UP):
                base[str(cycle)] = sample
            progress(
                f"soak: cycle {cycle}/{cycles}, supervisor {sample['supervisor_rss_mb']} MB,"
                f" {fds} descriptors, {kids} child, {wiped_clean} wiped clean"
            )
    first, warm, end = samples[0], base.get(str(WARM_UP), samples[0]), samples[-1]
    growth = end["supervisor_rss_mb"] - warm["supervisor_rss_mb"]
    return {
        "cycles": done,
        "cycles_asked": cycles,
        "commands_per_cycle": commands,
        "wiped_clean": wiped_clean,
        "elapsed_s": round(time.monotonic() - start, 1),
        "pairing_p50_ms": round(sorted(pairing)[len(pairing) // 2] * 1000, 1),
        "supervisor_rss_first_mb": first["supervisor_rss_mb"],
        "supervisor_rss_warm_mb": warm["supervisor_rss_mb"],
        "supervisor_rss_end_mb": end["supervisor_rss_mb"],
        "supervisor_rss_growth_mb": round(growth, 2),
        "supervisor_rss_growth_from_first_mb": round(
            end["supervisor_rss_mb"] - first["supervisor_rss_mb"], 2
        ),
        "descriptors_first": first["descriptors"],
        "descriptors_end": end["descriptors"],
        "children_first": first["children"],
        "children_end": end["children"],
        "ok": bool(
            done == cycles
            and wiped_clean == cycles
            and growth <= RSS_GROWTH_MB
            and end["descriptors"] == first["descriptors"]
            and end["children"] == first["children"]
        ),
        "samples": samples,
    }
