"""Debian's Chromium under Playwright, for the kiosk page's end-to-end tests.

Browser downloads are not possible here: the project's set-up installs Debian's
``chromium`` package and Playwright drives ``/usr/bin/chromium``. Screenshots of each
step go to ``test-artifacts/kiosk/`` (or ``$FIELDSTATION_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.conftest import REPO
from tests.procs import Proc

CHROMIUM = "/usr/bin/chromium"

# Chromium runs as root only without its sandbox; the rest keeps it off the network
# (no background requests: this machine has no route out, and tests must not try).
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
]


def artifacts(*parts: str) -> Path:
    base = Path(os.environ.get("FIELDSTATION_ARTIFACTS", REPO / "test-artifacts"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def need_chromium() -> str:
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("CI") or os.geteuid() == 0:
            pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium as root")
        pytest.skip(f"{CHROMIUM} is absent (not root, so the set-up could not install it)")
    return CHROMIUM


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """A headless Debian Chromium, shared by a module's tests (each gets a new context)."""
    executable = need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def display() -> Iterator[str]:
    """A virtual X display (Xvfb) for a browser the station launches itself."""
    need_chromium()
    if shutil.which("Xvfb") is None:
        if os.environ.get("CI") or os.geteuid() == 0:
            pytest.fail("Xvfb is missing: `make test` installs Debian's xvfb as root")
        pytest.skip("Xvfb is absent (not root, so the set-up could not install it)")
    number = next(n for n in range(90, 200) if not Path(f"/tmp/.X{n}-lock").exists())
    xvfb = Proc(["Xvfb", f":{number}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        assert time.monotonic() < deadline, f"Xvfb did not start: {xvfb.stderr}"
        time.sleep(0.05)
    yield f":{number}"
    xvfb.stop()
