"""Fixtures for the station suites."""

from tests.browser import chromium, display

__all__ = ["chromium", "display"]  # Chromium under Playwright (one per module); Xvfb
