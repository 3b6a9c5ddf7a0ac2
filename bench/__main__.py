"""``make bench``: Field Station against its baselines, side by side in one run.

* ``throughput_ratio``: commands per second through the tunnel, each applied durably
  by the real phone node in its SQLite store and acknowledged, over raw ``websockets``
  messages per second (200-byte payloads, echo-acked in windows of the same size);
  ``mqtt_throughput_ratio``: the same over Mosquitto's at QoS 1 with a persistent
  session and the same durable apply-then-ack subscriber (``bench/mqtt.py``).
* ``rtt_over_floor``: p99 of one command (station send -> applied in the phone's store
  -> ack at the station) over the p99 of one ``synchronous=FULL`` SQLite commit on the
  same disk; ``tunnel_only_rtt_p99_ratio``: the bare tunnel's over a raw echo's. Each
  p99 is the median of several repetitions of 1,000 round trips.
* ``recovery_vs_mqtt``: p99, over 50 resets by the fault proxy, from the cut to the
  first command applied on the phone, over the same for Mosquitto's subscriber.
* memory of the real ``station start`` processes (RSS, PSS, USS), the wipe, pairing.
* the scale curve: 1, 8 and 32 phones through the real station and the fault proxy
  (a table in ``RESULTS.md`` and ``scale.svg``); the targets for 32 sessions.
* the main figures again with everything pinned to one core (``taskset -c 0``).

Writes ``bench/results.json``, ``bench/RESULTS.md`` and ``bench/scale.svg``.
``--quick`` is the smoke run ``make test`` uses: every part, small; it writes nothing.
``--soak`` is the long pair -> commands -> logout loop (``bench/soak.py``), on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import report
from bench.chart import scale_svg
from bench.figures import Sizes, run
from bench.mqtt import MosquittoMissing, find_mosquitto

HERE = Path(__file__).parent
PARTS = ("main", "stations", "scale")
ONE_CORE = "0"


def one_core(quick: bool) -> dict[str, Any]:
    """The main and station figures in a child pinned to one core with ``taskset``: the
    station's processes, the phone and the baselines all share that core."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "one_core.json"
        argv = [
            "taskset", "-c", ONE_CORE, sys.executable, "-m", "bench",
            "--part", "main", "--part", "stations", "--json-to", str(out),
        ]  # fmt: skip
        if quick:
            argv.append("--quick")
        subprocess.run(argv, check=True, timeout=1800, stdout=subprocess.DEVNULL)
        pinned: dict[str, Any] = json.loads(out.read_text())
    pinned.pop("reps", None)
    return pinned


def profile(what: str, out: Path) -> int:
    from pyinstrument import Profiler

    from bench.durable import DurableRig

    async def durable() -> None:
        rig = DurableRig()
        async with rig.linked():
            if what == "rtt":
                await rig.rtt(200)
                await rig.rtt(2_000)
            else:
                await rig.throughput(20_000)

    # Every task's frames, not just the main one's: the phone's apply runs in its own.
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    with profiler:
        asyncio.run(durable())
    text = profiler.output_text(show_all=False)
    target = out / "profiles"
    target.mkdir(parents=True, exist_ok=True)
    (target / f"{what}.txt").write_text(text)
    print("\n".join(text.splitlines()[:80]))
    return 0


def soak_main(cycles: int, out: Path) -> int:
    from bench.soak import soak

    result = asyncio.run(soak(cycles))
    result["date"] = report.today()
    report.write_json(result, out / "soak.json")
    report.write_markdown(report.read_json(out / "results.json"), result, out / "RESULTS.md")
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    return 0 if result["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: checks it works")
    parser.add_argument("--profile", choices=["durable", "rtt"], help="pyinstrument profile")
    parser.add_argument("--soak", action="store_true", help="the soak, on its own")
    parser.add_argument("--cycles", type=int, default=1_000, help="soak cycles")
    parser.add_argument("--out", type=Path, default=HERE, help="where results go")
    parser.add_argument("--part", action="append", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--json-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profile:
        return profile(args.profile, args.out)
    if args.soak:
        return soak_main(args.cycles, args.out)
    try:
        find_mosquitto()
    except MosquittoMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    sizes = Sizes(args.quick)
    parts = set(args.part or PARTS)
    results = run(sizes, parts)
    if args.json_to is not None:  # a part of a run (the one-core child)
        report.write_json(results, args.json_to)
        return 0
    results["one_core"] = one_core(args.quick)
    results["quick"] = args.quick
    results["date"] = report.today()
    results["machine"] = report.machine()
    results["targets"] = {k: f"{op} {t}" for k, (op, t) in report.TARGETS.items()}
    report.print_table(results)
    if not args.quick:
        caption = f"bench/scale.svg, {results['date']}: each point one run of `make bench`"
        (args.out / "scale.svg").write_text(scale_svg(results["scale"], caption))
        report.write_json(results, args.out / "results.json")
        report.write_markdown(
            results, report.read_json(args.out / "soak.json"), args.out / "RESULTS.md"
        )
        print(f"written to {args.out}/results.json, RESULTS.md and scale.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
