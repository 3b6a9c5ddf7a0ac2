"""`make bench` must keep working; `make test` runs it only as a quick smoke run."""

from __future__ import annotations

import pytest

import bench.__main__ as bench


@pytest.mark.integration
def test_bench_quick_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "throughput_ratio" in out and "rtt_p99_ratio" in out
