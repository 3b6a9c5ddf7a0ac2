"""`make demo` must keep working: a short run of it, checked by its exit status."""

from __future__ import annotations

import pytest

from tunnel import demo


@pytest.mark.integration
def test_demo_runs_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--seconds", "4", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "nothing lost" in out and "outages:" in out
