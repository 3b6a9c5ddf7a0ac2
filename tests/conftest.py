"""Fixtures shared by every suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_file(*parts: str) -> Path:
    """A file from ../shared/, or a skip (a failure in CI) when it is absent."""
    path = Path(os.environ.get("FIELDSTATION_SHARED", SHARED)).joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing in CI")
        pytest.skip(f"{path} is absent (outside CI): skipping")
    return path


@pytest.fixture(autouse=True)
def _end_processes() -> Iterator[None]:
    """Whatever a test started, it does not outlive the test."""
    from tests import procs

    yield
    while procs.LIVE:
        procs.LIVE.pop().stop()
