"""The benchmark's figures, part by part. Each ratio's two sides come from the same run.

* main (in-process, real sockets): raw ``websockets``, the bare tunnel, the durable
  path (the real phone node and its store), the disk's fsync floor, Mosquitto.
* stations: the real ``station start`` processes (memory, wipe).
* scale: 1, 8 and 32 phones through the real station and the fault proxy.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.durable import DurableRig, fsync_floor
from bench.mqtt import mqtt_recovery, mqtt_throughput_and_drain
from bench.raw import raw_rtt, raw_throughput
from bench.scale import ScaleConfig, scale_curve
from bench.stations import station_figures
from bench.stats import median, p99, spread
from bench.tunnel_pair import pairing_ms, tunnel_rtt, tunnel_throughput


class Sizes:
    """How much of everything: ``quick`` is the smoke run's (every part, each small)."""

    def __init__(self, quick: bool) -> None:
        self.count = 1_000 if quick else 20_000  # throughput
        self.reps, self.rounds = (2, 50) if quick else (5, 1_000)  # round trips
        self.drain = 500 if quick else 10_000
        self.drops = 3 if quick else 50  # resets, for recovery
        self.pairings = 2 if quick else 10
        self.station_rounds, self.station_commands = (1, 50) if quick else (3, 1_000)
        self.scale = [1, 2] if quick else [1, 8, 32]
        self.scale_config = (
            ScaleConfig(duration=1.5, rate=5.0, cut_every=0.6, visitors=1)
            if quick
            else ScaleConfig(duration=20.0, rate=5.0, cut_every=2.0, visitors=10)
        )


async def main_figures(sizes: Sizes) -> dict[str, Any]:
    raw_runs = await raw_rtt(sizes.rounds, sizes.reps)
    bare_runs = await tunnel_rtt(sizes.rounds, sizes.reps)
    rig = DurableRig()
    durable_p99s: list[float] = []
    floor_p99s: list[float] = []
    async with rig.linked():
        # Round trips first (after a burst the phone pushes its messages back for a
        # while), each repetition next to one of the fsync floor on the store's disk.
        await rig.rtt(min(200, sizes.rounds))  # warm: the cursor and the chat are known
        for _ in range(sizes.reps):
            durable_p99s.append(p99(await rig.rtt(sizes.rounds)))
            floor_p99s.append(p99(fsync_floor(sizes.rounds, rig.home.parent)))
        raw_tp = await raw_throughput(sizes.count)
        durable_tp = await rig.throughput(sizes.count)
        drained = await rig.drain(sizes.drain)
    bare_tp = await tunnel_throughput(sizes.count)
    mqtt = await mqtt_throughput_and_drain(sizes.count, sizes.drain)
    proxied = DurableRig(via_proxy=True)
    async with proxied.linked():
        ours = await proxied.recovery(sizes.drops)
    theirs = await mqtt_recovery(sizes.drops)
    pairing = await pairing_ms(sizes.pairings)
    raw_p99 = median([p99(r) for r in raw_runs])
    bare_p99 = median([p99(r) for r in bare_runs])
    durable_p99, floor = median(durable_p99s), median(floor_p99s)
    return {
        "throughput_ratio": round(durable_tp / raw_tp, 3),
        "mqtt_throughput_ratio": round(durable_tp / mqtt["mqtt_msgs_per_s"], 2),
        "rtt_over_floor": round(durable_p99 / floor, 2),
        "tunnel_only_rtt_p99_ratio": round(bare_p99 / raw_p99, 2),
        "recovery_vs_mqtt": round(p99(ours) / p99(theirs), 2),
        "durable_msgs_per_s": round(durable_tp),
        "raw_msgs_per_s": round(raw_tp),
        "mqtt_msgs_per_s": round(mqtt["mqtt_msgs_per_s"]),
        "tunnel_only_msgs_per_s": round(bare_tp),
        "durable_rtt_p99_ms": round(durable_p99 * 1000, 3),
        "fsync_p99_ms": round(floor * 1000, 3),
        "tunnel_only_rtt_p99_ms": round(bare_p99 * 1000, 3),
        "raw_rtt_p99_ms": round(raw_p99 * 1000, 3),
        "recovery_p99_s": round(p99(ours), 4),
        "mqtt_recovery_p99_s": round(p99(theirs), 4),
        "recovery_p50_s": round(median(ours), 4),
        "mqtt_recovery_p50_s": round(median(theirs), 4),
        "drain_10k_s": round(drained * 10_000 / sizes.drain, 3),
        "mqtt_drain_10k_s": round(mqtt["mqtt_drain_10k_s"], 3),
        "pair_uri_ms": round(pairing["pair_uri_ms"], 1),
        "pair_code_ms": round(pairing["pair_code_ms"], 1),
        "reps": {
            "durable_rtt_p99_ms": spread(durable_p99s, 1000),
            "fsync_p99_ms": spread(floor_p99s, 1000),
            "tunnel_only_rtt_p99_ms": spread([p99(r) for r in bare_runs], 1000),
            "raw_rtt_p99_ms": spread([p99(r) for r in raw_runs], 1000),
            "rounds": sizes.rounds,
            "resets": sizes.drops,
        },
    }


async def station_part(sizes: Sizes, pin: str | None = None) -> dict[str, Any]:
    figures = await station_figures(sizes.station_rounds, sizes.station_commands, pin=pin)
    return {key: round(value, 1) for key, value in figures.items()}


async def scale_part(sizes: Sizes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    points = await scale_curve(sizes.scale, sizes.scale_config)
    top = points[-1]
    derived = {
        "sessions_at_max": top["phones"],
        "sessions_pss_total_mb": top["station_pss_sum_mb"],
        "sessions_rss_total_mb": top["station_rss_sum_mb"],
        "pairing_at_max_p95_ms": top["pairing_at_n_p95_ms"],
    }
    return points, derived


async def all_parts(sizes: Sizes, parts: set[str], pin: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if "main" in parts:
        results.update(await main_figures(sizes))
    if "stations" in parts:
        results.update(await station_part(sizes, pin))
    if "scale" in parts:
        points, derived = await scale_part(sizes)
        results.update(derived)
        results["scale"] = points
    return results


def run(sizes: Sizes, parts: set[str], pin: str | None = None) -> dict[str, Any]:
    return asyncio.run(all_parts(sizes, parts, pin))
