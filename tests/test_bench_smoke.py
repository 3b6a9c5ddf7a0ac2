"""`make bench` must keep working; `make test` runs it only as a quick smoke run.

The quick run goes through every part (the in-process rigs and Mosquitto, the real
station's processes, the scale curve through the fault proxy, the one-core child under
taskset) with small sizes: its figures mean little, so only what must hold whatever
the load is checked (every figure is there and sane, every session is wiped clean).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import bench.__main__ as bench
from bench.report import TARGETS

MAIN = [
    "durable_msgs_per_s",
    "raw_msgs_per_s",
    "mqtt_msgs_per_s",
    "durable_rtt_p99_ms",
    "fsync_p99_ms",
    "tunnel_only_rtt_p99_ms",
    "raw_rtt_p99_ms",
    "recovery_p99_s",
    "mqtt_recovery_p99_s",
    "worker_pss_mb",
    "worker_uss_mb",
    "supervisor_pss_mb",
    "supervisor_uss_mb",
]
ONE_CORE = ["throughput_ratio", "rtt_over_floor", "recovery_vs_mqtt", "worker_rss_mb", "wipe_ms"]


@pytest.mark.integration
def test_bench_quick_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.skip("mosquitto is not installed (make test installs it as root)")
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err  # err says what went wrong, if anything did
    lines = [line.split() for line in captured.out.splitlines() if line.strip()]
    figures = {words[0]: words[1] for words in lines if len(words) >= 2}
    missing = [k for k in [*TARGETS, *MAIN] if k not in figures]
    assert not missing, out
    for key in [*TARGETS, *MAIN]:
        assert float(figures[key]) > 0, f"{key} = {figures[key]}"
    # Resident memory can only be at least its own part of it.
    assert float(figures["worker_rss_mb"]) >= float(figures["worker_uss_mb"]) > 5
    scale = [dict(w.split("=", 1) for w in words[1:]) for words in lines if words[0] == "scale"]
    assert [point["phones"] for point in scale] == ["1", "2"], out
    assert all(point["undelivered_at_logout"] == "0" for point in scale), out
    assert all(int(point["commands"]) > 0 for point in scale), out
    pinned = {words[1] for words in lines if words[0] == "one_core"}
    assert set(ONE_CORE) <= pinned, out
    assert list(tmp_path.iterdir()) == []  # a quick run writes nothing
