"""Fixtures shared by every suite."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
_OWN_BASETEMP = pytest.StashKey[Path]()


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


def pytest_configure(config: pytest.Config) -> None:
    """Short temporary paths: a station's session sockets live beside its control socket,
    and a Unix socket's path holds 107 bytes (pytest's default base, plus pytest-xdist's
    per-worker directory, plus a long test name, leaves too little)."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="fs-")
        config.stash[_OWN_BASETEMP] = Path(config.option.basetemp)


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_BASETEMP, None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)
