"""The network between outages and the named fault profiles (see ``drill.faults``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from drill.checks import non_negative, number, positive_int
from drill.errors import ScenarioError

# -- the network between outages -------------------------------------------------------------


@dataclass(frozen=True)
class LinkConditions:
    """What the path does to every byte while it is up.

    ``latency`` plus ``uniform(0, jitter)`` seconds per chunk, never reordering;
    ``bandwidth`` bytes per second each way; ``slicer`` forwards in pieces of at most so
    many bytes, ``slicer_delay`` apart; ``limit`` resets a connection after so many bytes.
    """

    latency: float = 0.0
    jitter: float = 0.0
    bandwidth: int | None = None
    slicer: int | None = None
    slicer_delay: float = 0.0
    limit: int | None = None

    def __post_init__(self) -> None:
        for name in ("latency", "jitter", "slicer_delay"):
            object.__setattr__(self, name, non_negative(getattr(self, name), name))
        for name in ("bandwidth", "slicer", "limit"):
            positive_int(getattr(self, name), name)

    @classmethod
    def from_dict(cls, data: Mapping[str, object], base: LinkConditions) -> LinkConditions:
        """``base`` with the keys of ``data`` that name a condition replaced."""
        known = {"latency", "jitter", "bandwidth", "slicer", "slicer_delay", "limit"}
        return replace(base, **{k: v for k, v in data.items() if k in known})  # type: ignore[arg-type]


# -- profiles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultProfile:
    """How often outages come, how long they last, and the network between them.

    Gaps between outages are exponential with mean ``mean_interval`` seconds, counted from
    the end of the previous one; a window lasts ``uniform(min_duration, max_duration)``.
    ``cut``, ``blackhole`` and ``down`` are relative weights; ``one_way`` is the share of
    blackholes that hold one direction only.
    """

    name: str
    mean_interval: float
    min_duration: float
    max_duration: float
    cut: float = 1.0
    blackhole: float = 1.0
    down: float = 1.0
    one_way: float = 0.0
    conditions: LinkConditions = field(default_factory=LinkConditions)
    description: str = ""

    def __post_init__(self) -> None:
        if not number(self.mean_interval, "mean_interval") > 0:
            raise ScenarioError("mean_interval must be positive")
        number(self.max_duration, "max_duration")
        if not 0 < number(self.min_duration, "min_duration") <= self.max_duration:
            raise ScenarioError("need 0 < min_duration <= max_duration")
        weights = [non_negative(w, "a fault weight") for w in self.weights()]
        if sum(weights) <= 0:
            raise ScenarioError("fault weights must not all be zero")
        if not 0.0 <= number(self.one_way, "one_way") <= 1.0:
            raise ScenarioError("one_way is a share in [0, 1]")

    def weights(self) -> tuple[float, float, float]:
        """The weights of cut, blackhole and down, in that order."""
        return (self.cut, self.blackhole, self.down)


PROFILES: Mapping[str, FaultProfile] = MappingProxyType(
    {
        "flaky-wifi": FaultProfile(
            "flaky-wifi",
            mean_interval=12.0,
            min_duration=1.0,
            max_duration=10.0,
            cut=2.0,
            blackhole=2.0,
            down=3.0,
            conditions=LinkConditions(latency=0.004, jitter=0.02),
            description="drops every 5-20 s lasting 1-10 s, some blackholes without a close",
        ),
        "blackout": FaultProfile(
            "blackout",
            mean_interval=90.0,
            min_duration=20.0,
            max_duration=240.0,
            cut=0.0,
            blackhole=1.0,
            down=3.0,
            conditions=LinkConditions(latency=0.004, jitter=0.004),
            description="rare, long outages: the network is gone for minutes",
        ),
        "hotspot": FaultProfile(
            "hotspot",
            mean_interval=40.0,
            min_duration=1.0,
            max_duration=20.0,
            cut=2.0,
            blackhole=2.0,
            down=1.0,
            one_way=0.2,
            conditions=LinkConditions(latency=0.06, jitter=0.09, bandwidth=48_000),
            description="a phone hotspot over mobile data: slow, late, jittery, stalls",
        ),
    }
)
"""The named profiles of ``station simulate`` and ``station proxy``."""


def get_profile(profile: FaultProfile | str) -> FaultProfile:
    """A profile by name (or the profile itself); ``ScenarioError`` names the known ones."""
    if isinstance(profile, FaultProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ScenarioError(f"unknown fault profile {profile!r} (known: {known})") from None
