"""Fixtures for the station suites."""

from tests.browser import chromium

__all__ = ["chromium"]  # Debian's Chromium under Playwright, one per module
