"""`make bench` must keep working; `make test` runs it only as a quick smoke run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import bench.__main__ as bench
from bench.report import TARGETS

ALWAYS = [
    *(k for k in TARGETS if k != "mqtt_throughput_ratio"),
    "pair_code_ms",
    "supervisor_rss_mb",
    "worker_rss_mb",
    "fsync_p99_ms",
    "tunnel_only_throughput_ratio",
    "tunnel_only_rtt_p99_ratio",
]
MQTT = ["mqtt_throughput_ratio", "mqtt_msgs_per_s", "mqtt_recovery_s", "mqtt_drain_10k_s"]


@pytest.mark.integration
def test_bench_quick_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    printed = {line.split()[0] for line in out.splitlines() if line.strip()}
    missing = [k for k in ALWAYS if k not in printed]
    assert not missing, out
    if shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists():
        assert all(k in printed for k in MQTT), out + captured.err  # err says why not
    assert list(tmp_path.iterdir()) == []  # a quick run writes nothing
