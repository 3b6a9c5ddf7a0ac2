"""The wipe package's errors, under one root."""

from __future__ import annotations


class WipeError(Exception):
    """Root of every error raised by the ``wipe`` package."""


class NotInMemory(WipeError):
    """A database connection that would not stay in RAM (a pragma did not read back)."""
