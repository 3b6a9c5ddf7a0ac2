"""Debian's Chromium under Playwright, for the kiosk page's end-to-end tests.

Browser downloads are not possible here: the project's set-up installs Debian's
``chromium`` package and Playwright drives ``/usr/bin/chromium``. Screenshots of each
step go to ``test-artifacts/kiosk/`` (or ``$FIELDSTATION_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.conftest import REPO

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
