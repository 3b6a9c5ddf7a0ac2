"""Reconnect delays: exponential with full jitter, capped low.

Full jitter (a uniform draw below the exponential bound) spreads phones that lost the
same access point; the low cap (1 s) means a returning link is used within a second.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from tunnel.errors import UsageError


def reconnect_delays(
    *,
    base: float = 0.05,
    cap: float = 1.0,
    factor: float = 2.0,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Endless delays: attempt n waits uniform(0, min(cap, base * factor**n))."""
    if base <= 0 or cap < base or factor < 1:
        raise UsageError("need 0 < base <= cap and factor >= 1")
    draw = rng or random.Random()
    bound = base
    while True:
        yield draw.uniform(0, bound)
        bound = min(cap, bound * factor)
