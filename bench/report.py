"""The benchmark's table, ``results.json``, ``soak.json`` and ``RESULTS.md`` (with the
machine). The generated part of ``RESULTS.md`` is rewritten from the JSON files; the
notes after the marker are kept across runs."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import sqlite3
import subprocess
import tempfile
from pathlib import Path
from typing import Any

# figure -> (comparison, target): issue 19, and issue 7's that still stand.
TARGETS: dict[str, tuple[str, float]] = {
    "throughput_ratio": (">=", 0.6),
    "mqtt_throughput_ratio": (">=", 3.0),
    "rtt_over_floor": ("<=", 3.0),
    "tunnel_only_rtt_p99_ratio": ("<=", 3.0),
    "recovery_vs_mqtt": ("<=", 1.0),
    "worker_rss_mb": ("<=", 30.0),
    "supervisor_rss_mb": ("<=", 30.0),
    "sessions_pss_total_mb": ("<=", 1024.0),
    "pairing_at_max_p95_ms": ("<=", 300.0),
    "drain_10k_s": ("<=", 2.0),
    "pair_uri_ms": ("<=", 300.0),
    "wipe_ms": ("<=", 200.0),
}
NOT_FIGURES = ("machine", "targets", "quick", "date", "reps", "scale", "one_core")
SCALE_COLUMNS = (
    ("phones", "phones"),
    ("delivery_p50_ms", "delivery p50 (ms)"),
    ("delivery_p99_ms", "delivery p99 (ms)"),
    ("recovery_p99_ms", "recovery p99 (ms)"),
    ("cpu_s_per_1k", "station CPU s / 1k cmds"),
    ("station_pss_sum_mb", "station PSS total (MB)"),
    ("station_rss_sum_mb", "station RSS sum (MB)"),
    ("worker_rss_max_mb", "largest worker RSS (MB)"),
    ("pairing_p95_ms", "pairing p95 (ms)"),
    ("pairing_at_n_p95_ms", "pairing with N live, p95 (ms)"),
    ("commands", "commands"),
    ("recovery_samples", "resets seen"),
    ("undelivered_at_logout", "undelivered at logout"),
)
NOTES_MARKER = "<!-- notes below are kept across runs -->"


def verdict(key: str, value: Any) -> str:
    if key not in TARGETS or not isinstance(value, int | float):
        return ""
    op, target = TARGETS[key]
    met = value >= target if op == ">=" else value <= target
    return "met" if met else "MISSED"


def figures(results: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in results.items() if k not in NOT_FIGURES}


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for key, value in figures(results).items():
        target = " ".join(str(t) for t in TARGETS[key]) if key in TARGETS else ""
        rows.append((key, str(value), target, verdict(key, value)))
    # The targets first, in the order; then everything else as measured.
    order = {key: i for i, key in enumerate(TARGETS)}
    return sorted(rows, key=lambda row: order.get(row[0], len(order)))


def print_table(results: dict[str, Any]) -> None:
    rows = [("figure", "value", "target", ""), *table(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for key, value, target, met in rows:
        print(f"{key:<{widths[0]}}  {value:>{widths[1]}}  {target:<{widths[2]}}  {met}".rstrip())
    for point in results.get("scale", []):
        print("scale " + " ".join(f"{k}={point[k]}" for k, _ in SCALE_COLUMNS))
    for key, value in figures(results.get("one_core", {})).items():
        print(f"one_core {key} {value} {verdict(key, value)}".rstrip())


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    versions = {}
    for package in ("websockets", "aiosqlite", "pynacl", "paho-mqtt"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "absent"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "mosquitto": _mosquitto_version(),
        "store filesystem": _fstype(Path(tempfile.gettempdir())),
        "load average at the start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        **versions,
    }


def _mosquitto_version() -> str:
    from bench.mqtt import MosquittoMissing, find_mosquitto

    try:
        executable = find_mosquitto()
    except MosquittoMissing:
        return "absent"
    out = subprocess.run(
        [executable, "-h"], capture_output=True, text=True, timeout=5, check=False
    ).stdout
    first = out.splitlines()[0] if out else ""
    return first.replace("mosquitto version ", "") or "unknown"


def _fstype(path: Path) -> str:
    target, best, fstype = str(path.resolve()), "", "unknown"
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) >= 3 and target.startswith(fields[1]) and len(fields[1]) > len(best):
                best, fstype = fields[1], fields[2]
    return f"{fstype} ({path})"


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _figure_rows(results: dict[str, Any]) -> list[str]:
    return [
        "| figure | value | target | |",
        "| --- | ---: | --- | --- |",
        *(f"| `{k}` | {v} | {t} | {m} |" for k, v, t, m in table(results)),
    ]


def _scale_rows(points: list[dict[str, Any]]) -> list[str]:
    return [
        "| " + " | ".join(title for _, title in SCALE_COLUMNS) + " |",
        "|" + " ---: |" * len(SCALE_COLUMNS),
        *("| " + " | ".join(str(p[k]) for k, _ in SCALE_COLUMNS) + " |" for p in points),
    ]


def _one_core_rows(results: dict[str, Any]) -> list[str]:
    pinned = figures(results.get("one_core", {}))
    rows = [
        "| figure | both cores | one core | target | one core |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for key, value in pinned.items():
        target = " ".join(str(t) for t in TARGETS[key]) if key in TARGETS else ""
        rows.append(
            f"| `{key}` | {results.get(key, '')} | {value} | {target} | {verdict(key, value)} |"
        )
    return rows


def _soak_rows(soak: dict[str, Any]) -> list[str]:
    keys = [k for k in soak if k not in ("samples", "date")]
    rows = ["| figure | value |", "| --- | ---: |", *(f"| `{k}` | {soak[k]} |" for k in keys)]
    rows += [
        "",
        "| cycle | elapsed (s) | supervisor RSS (MB) | PSS (MB) | descriptors | children |",
    ]
    rows.append("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in soak.get("samples", []):
        rows.append(
            f"| {s['cycle']} | {s['elapsed_s']} | {s['supervisor_rss_mb']} |"
            f" {s['supervisor_pss_mb']} | {s['descriptors']} | {s['children']} |"
        )
    return rows


def write_markdown(results: dict[str, Any] | None, soak: dict[str, Any] | None, path: Path) -> None:
    """The generated part is rewritten; the notes after the marker are kept."""
    notes = ""
    if path.exists():
        text = path.read_text()
        if NOTES_MARKER in text:
            notes = text.split(NOTES_MARKER, 1)[1].lstrip("\n")
    lines = ["# Benchmark results", ""]
    if results is not None:
        lines += [
            f"Generated by `make bench` on {results['date']}. Each ratio's two figures are",
            "measured in the same run, on the same machine, one after the other. A p99 that a",
            "ratio is built on is the median of the p99s of several repetitions (listed below).",
            "",
            "## Machine",
            "",
            *(f"- {k}: {v}" for k, v in results["machine"].items()),
            "",
            "## Figures",
            "",
            *_figure_rows(results),
            "",
            "Repetitions (each a p99 over "
            f"{results['reps']['rounds']} round trips; recovery over "
            f"{results['reps']['resets']} resets):",
            "",
            *(f"- `{k}`: {v}" for k, v in results["reps"].items() if isinstance(v, list)),
            "",
        ]
        if results.get("scale"):
            lines += [
                "## Scale curve",
                "",
                *_scale_rows(results["scale"]),
                "",
                "![the scale curve](scale.svg)",
                "",
            ]
        if results.get("one_core"):
            lines += [
                "## One core (`taskset -c 0`)",
                "",
                *_one_core_rows(results),
                "",
            ]
    if soak is not None:
        lines += [
            f"## Soak (`python -m bench --soak`, {soak.get('date', '')})",
            "",
            *_soak_rows(soak),
            "",
        ]
    lines += [NOTES_MARKER, ""]
    path.write_text("\n".join(lines) + notes)


def today() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
