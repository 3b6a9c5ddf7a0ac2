"""Checks of the numbers a drill is given; ``ScenarioError`` names the field."""

from __future__ import annotations

import math

from drill.errors import ScenarioError


def number(value: object, what: str) -> float:
    """``value`` as a finite float."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{what} must be a finite number, not {value!r}")
    return float(value)


def non_negative(value: object, what: str) -> float:
    """``value`` as a finite float >= 0."""
    result = number(value, what)
    if result < 0:
        raise ScenarioError(f"{what} must not be negative")
    return result


def positive_int(value: object, what: str) -> int | None:
    """``value`` as a whole number >= 1, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ScenarioError(f"{what} must be a whole number >= 1, not {value!r}")
    return value
