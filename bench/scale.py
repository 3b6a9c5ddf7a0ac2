"""The station as sessions add up: N phones through the real station and the fault proxy.

For each N, a fresh ``station start`` and a ``FaultProxy`` in front of it; N phones pair
one after another through the proxy (their stores on a tmpfs: see ``PHONES_DIR``). Then,
for ``duration`` seconds, every phone is sent ``rate`` commands a second (as ``station
send`` sends them) while the proxy cuts every link every ``cut_every`` seconds. Figures:

* delivery latency: from the send to the commit on the phone, for commands whose
  flight does not overlap an outage of their phone (an outage: from a cut until that
  phone applies the command sent right after the cut);
* recovery: from a cut to the first command applied after it, per phone and cut;
* CPU seconds of the station's processes (supervisor and workers) per 1,000 commands
  delivered during the window;
* memory of the station's processes at the end of the window (RSS summed, PSS summed:
  the true total; the largest worker's RSS);
* pairing with N sessions live and busy: a visitor phone pairs and logs out, repeatedly.

Then every session is logged out; each must be wiped with 0 undelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procinfo
from bench.fleet import BenchPhone, logout, phone
from bench.station_proc import BenchProcessError, Station
from bench.stats import median, p95, p99
from drill.proxy import FaultProxy


@dataclass
class Window:
    """What one phone saw during the measured window."""

    sent: list[tuple[int, float]] = field(default_factory=list)  # (seq, sent at)
    probes: list[tuple[int, float]] = field(default_factory=list)  # (seq, cut at)


@dataclass(frozen=True)
class ScaleConfig:
    duration: float = 20.0
    rate: float = 5.0  # commands per second per phone
    cut_every: float = 2.0
    visitors: int = 10  # pairings measured with N sessions live
    pin: str | None = None  # taskset CPU list for the station


# The phones' stores: in RAM where there is a tmpfs. 32 real phones commit to 32 flash
# chips; 32 stores on this one disk would measure the bench's disk (their fsyncs queue
# behind each other), not the station. The durable path's own cost on a disk is in the
# main figures.
PHONES_DIR = "/dev/shm" if Path("/dev/shm").is_dir() else None


async def scale_point(phones: int, config: ScaleConfig) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp_dir,
        tempfile.TemporaryDirectory(dir=PHONES_DIR) as phones_dir,
    ):
        tmp, homes = Path(tmp_dir), Path(phones_dir)
        station = await Station.start(tmp, max_sessions=phones + 1, pin=config.pin)
        proxy = FaultProxy(("127.0.0.1", 0), ("127.0.0.1", station.port))
        await proxy.start()
        url = f"ws://127.0.0.1:{proxy.port}/"
        try:
            async with contextlib.AsyncExitStack() as stack:
                fleet = [
                    await stack.enter_async_context(phone(homes / f"phone-{i}"))
                    for i in range(phones + 1)
                ]
                visitor, fleet = fleet[-1], fleet[:-1]
                return await _run(station, proxy, url, fleet, visitor, config)
        finally:
            await proxy.stop()
            await station.stop()


async def _run(
    station: Station,
    proxy: FaultProxy,
    url: str,
    fleet: list[BenchPhone],
    visitor: BenchPhone,
    config: ScaleConfig,
) -> dict[str, Any]:
    first_pairings = [await p.pair(station, await station.next_offer(), url) for p in fleet]
    windows = {id(p): Window() for p in fleet}
    stop = asyncio.Event()
    pids = station.pids()
    cpu_before = sum(procinfo.cpu_seconds(pid) for pid in pids)
    started = time.perf_counter()
    senders = [asyncio.create_task(_sender(p, windows[id(p)], config.rate, stop)) for p in fleet]
    cutter = asyncio.create_task(_cutter(proxy, fleet, windows, config.cut_every, stop))
    try:
        await asyncio.sleep(config.duration)
        memory = [procinfo.memory(pid) for pid in station.pids()]
        stop.set()
        await asyncio.gather(*senders, cutter)
    finally:
        stop.set()
        for task in (*senders, cutter):
            task.cancel()
        await asyncio.gather(*senders, cutter, return_exceptions=True)
    for p in fleet:  # everything sent in the window is applied before the clock stops
        for seq, _ in windows[id(p)].sent + windows[id(p)].probes:
            await p.wait_applied(seq)
    elapsed = time.perf_counter() - started
    cpu = sum(procinfo.cpu_seconds(pid) for pid in pids) - cpu_before
    delivered = sum(len(w.sent) + len(w.probes) for w in windows.values())
    # A visitor pairs (and logs out) while the N sessions stay live and linked.
    visits = []
    for _ in range(config.visitors):
        visits.append(await visitor.pair(station, await station.next_offer(), url))
        assert visitor.session is not None
        await logout(station, visitor.session)
        await visitor.finish()
    undelivered = 0
    for p in fleet:
        assert p.session is not None
        undelivered += (await logout(station, p.session)).undelivered
        await p.finish()
    latencies, recoveries = _latencies(fleet, windows)
    workers = memory[1:]
    return {
        "phones": len(fleet),
        "commands": delivered,
        "window_s": round(elapsed, 1),
        "delivery_p50_ms": round(median(latencies) * 1000, 2),
        "delivery_p99_ms": round(p99(latencies) * 1000, 2),
        "delivery_samples": len(latencies),
        "recovery_p50_ms": round(median(recoveries) * 1000, 1),
        "recovery_p99_ms": round(p99(recoveries) * 1000, 1),
        "recovery_samples": len(recoveries),
        "cpu_s_per_1k": round(cpu / delivered * 1000, 3),
        "pairing_p95_ms": round(p95(first_pairings) * 1000, 1),
        "pairing_at_n_p95_ms": round(p95(visits) * 1000, 1) if visits else None,
        "station_rss_sum_mb": round(sum(m.rss_mb for m in memory), 1),
        "station_pss_sum_mb": round(sum(m.pss_mb for m in memory), 1),
        "supervisor_rss_mb": round(memory[0].rss_mb, 1),
        "worker_rss_max_mb": round(max(m.rss_mb for m in workers), 1),
        "worker_pss_mean_mb": round(sum(m.pss_mb for m in workers) / len(workers), 1),
        "workers": len(workers),
        "undelivered_at_logout": undelivered,
    }


async def _sender(p: BenchPhone, window: Window, rate: float, stop: asyncio.Event) -> None:
    start, n = time.perf_counter(), 0
    while not stop.is_set():
        window.sent.append(await p.send(f"scale command {n}"))
        n += 1
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()


async def _cutter(
    proxy: FaultProxy,
    fleet: list[BenchPhone],
    windows: dict[int, Window],
    every: float,
    stop: asyncio.Event,
) -> None:
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every):
                await stop.wait()
        if stop.is_set():
            return
        cut = time.perf_counter()
        proxy.cut()
        sent = await asyncio.gather(*(p.send("after the cut") for p in fleet))
        for p, (seq, _) in zip(fleet, sent, strict=True):
            windows[id(p)].probes.append((seq, cut))


def _latencies(
    fleet: list[BenchPhone], windows: dict[int, Window]
) -> tuple[list[float], list[float]]:
    latencies: list[float] = []
    recoveries: list[float] = []
    for p in fleet:
        window = windows[id(p)]
        outages = [(cut, p.applied[seq]) for seq, cut in window.probes]
        recoveries += [end - start for start, end in outages]
        for seq, sent in window.sent:
            done = p.applied[seq]
            if not any(sent <= end and done >= start for start, end in outages):
                latencies.append(done - sent)
    if not latencies or not recoveries:
        raise BenchProcessError("the window was too short to measure anything")
    return latencies, recoveries


async def scale_curve(counts: list[int], config: ScaleConfig) -> list[dict[str, Any]]:
    return [await scale_point(n, config) for n in counts]
