"""``make bench``: Field Station against its baselines, side by side in one run.

* ``throughput_ratio``: commands per second through the tunnel, each applied durably
  by the real phone node in its SQLite store and acknowledged, over raw ``websockets``
  messages per second (200-byte payloads, echo-acked in windows of the same size).
* ``rtt_p99_ratio``: p99 of one command (station send -> applied in the phone's store
  -> ack at the station) over the p99 of a raw ``websockets`` echo. ``fsync_p99_ms``
  is the disk's floor for any durable round trip, measured in the same run.
* ``drain_10k_s``, ``recovery_p99_s``: a 10k backlog after an outage; link resets.
* ``pair_uri_ms``, ``pair_code_ms``: pairing on loopback.
* ``wipe_ms``, ``supervisor_rss_mb``, ``worker_rss_mb``: the real ``station`` and
  ``medic-phone`` processes.
* ``mqtt_throughput_ratio``: our durable throughput over Mosquitto's at QoS 1 with a
  persistent session and the same durable apply-then-ack subscriber (``bench/mqtt.py``).

Prints a table, writes ``bench/results.json`` and ``bench/RESULTS.md``. ``--quick`` is
the smoke run ``make test`` uses: it checks every part works; its figures mean little.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from bench import report
from bench.durable import DurableRig, fsync_floor, p99
from bench.mqtt import MosquittoMissing, mqtt_figures
from bench.raw import raw_rtt, raw_throughput
from bench.station_procs import station_figures
from bench.tunnel_pair import pairing_ms, tunnel_rtt, tunnel_throughput

HERE = Path(__file__).parent


async def measure(quick: bool) -> dict[str, Any]:
    count, rounds = (2_000, 200) if quick else (20_000, 2_000)
    drain, drops = (1_000, 10) if quick else (10_000, 50)
    raw_tp = await raw_throughput(count)
    raw_p99 = p99(await raw_rtt(rounds))
    bare_tp = await tunnel_throughput(count)
    bare_p99 = p99(await tunnel_rtt(rounds))
    rig = DurableRig()
    async with rig.linked():
        # The round trips first: after the burst, the phone is busy pushing the burst's
        # messages back to the mirror for a while.
        durable_p99 = p99(await rig.rtt(rounds // 2))
        durable_tp = await rig.throughput(count)
        drained = await rig.drain(drain)
        recovery = p99(await rig.recovery(drops))
    floor = p99(fsync_floor(rounds // 2))
    pairing = await pairing_ms(3 if quick else 10)
    procs = await station_figures(1 if quick else 5, 200 if quick else 1_000)
    results: dict[str, Any] = {
        "throughput_ratio": round(durable_tp / raw_tp, 3),
        "rtt_p99_ratio": round(durable_p99 / raw_p99, 2),
        "drain_10k_s": round(drained * 10_000 / drain, 3),
        "recovery_p99_s": round(recovery, 3),
        "pair_uri_ms": round(pairing["pair_uri_ms"], 1),
        "pair_code_ms": round(pairing["pair_code_ms"], 1),
        "wipe_ms": round(procs["wipe_ms"], 1),
        "wipe_max_ms": round(procs["wipe_max_ms"], 1),
        "supervisor_rss_mb": round(procs["supervisor_rss_mb"], 1),
        "worker_rss_mb": round(procs["worker_rss_mb"], 1),
        "raw_msgs_per_s": round(raw_tp),
        "durable_msgs_per_s": round(durable_tp),
        "raw_rtt_p99_ms": round(raw_p99 * 1000, 3),
        "durable_rtt_p99_ms": round(durable_p99 * 1000, 3),
        "fsync_p99_ms": round(floor * 1000, 3),
        "rtt_p99_over_fsync": round(durable_p99 / floor, 2),
        "tunnel_only_msgs_per_s": round(bare_tp),
        "tunnel_only_throughput_ratio": round(bare_tp / raw_tp, 3),
        "tunnel_only_rtt_p99_ms": round(bare_p99 * 1000, 3),
        "tunnel_only_rtt_p99_ratio": round(bare_p99 / raw_p99, 2),
    }
    try:
        mqtt = await asyncio.to_thread(mqtt_figures, count, drain)
    except MosquittoMissing as exc:
        if not quick:
            raise
        print(f"mqtt figures left out: {exc}", file=sys.stderr)
    else:
        results.update(
            {
                "mqtt_throughput_ratio": round(durable_tp / mqtt["mqtt_msgs_per_s"], 2),
                "mqtt_msgs_per_s": round(mqtt["mqtt_msgs_per_s"]),
                "mqtt_recovery_s": round(mqtt["mqtt_recovery_s"], 3),
                "mqtt_drain_10k_s": round(mqtt["mqtt_drain_10k_s"], 3),
            }
        )
    return results


async def profile_durable(count: int) -> None:
    rig = DurableRig()
    async with rig.linked():
        await rig.throughput(count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: checks it works")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the durable path with pyinstrument into bench/profiles/durable.txt",
    )
    parser.add_argument("--out", type=Path, default=HERE, help="where results go")
    args = parser.parse_args(argv)
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        with profiler:
            asyncio.run(profile_durable(20_000))
        text = profiler.output_text(show_all=False)
        target = args.out / "profiles"
        target.mkdir(parents=True, exist_ok=True)
        (target / "durable.txt").write_text(text)
        print("\n".join(text.splitlines()[:60]))
        return 0
    try:
        results = asyncio.run(measure(args.quick))
    except MosquittoMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    results["quick"] = args.quick
    results["date"] = report.today()
    results["machine"] = report.machine()
    results["targets"] = {k: f"{op} {t}" for k, (op, t) in report.TARGETS.items()}
    report.print_table(results)
    if not args.quick:
        report.write_json(results, args.out / "results.json")
        report.write_markdown(results, args.out / "RESULTS.md")
        print(f"written to {args.out / 'results.json'} and {args.out / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
