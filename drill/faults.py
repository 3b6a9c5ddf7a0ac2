"""The one fault model: what a clinic's WiFi does to the link between a phone and a station.

Three things apply it: the fault proxy on real TCP (``drill.proxy``), the clinic
simulation that puts one proxy in front of each phone (``drill.simulate``), and the
in-memory test harness, where a ``tunnel.testing.ConnectionPair`` follows the same
events on a fake clock. A timeline therefore means the same thing in a unit test, in
``station proxy`` and in ``station simulate``.

Outages, on a timeline (``FaultEvent``, ``FaultSchedule``):

* ``cut`` at ``start``: every open connection is reset; both ends learn of it at once and
  what was in flight is lost with the connection.
* ``down`` over ``[start, end)``: connections are reset when it starts and new ones are
  refused until it ends (the access point is gone).
* ``blackhole`` over ``[start, end)``, both ways or towards one end only: nothing is
  forwarded and nothing is closed. Bytes wait, as TCP retransmission would keep them,
  and arrive in order when it ends -- unless an endpoint gave up first, which only its
  own liveness timeout can tell it to do. Connections opened meanwhile are held alike.

Between outages, ``drill.profiles.LinkConditions``: latency with jitter (order is always
kept), a bandwidth cap, and the stream toxics only a proxy applies (slicer, data limit).
A ``drill.profiles.FaultProfile`` says how often outages come, how long they last and
what network lies between them; ``PROFILES`` are the named ones. The same profile and
seed always give the same timeline (``FaultSchedule.generate``).

One TCP stream never silently loses, duplicates or reorders a message, so none of
those is a network fault here. What only an attacker on the path can do (replay,
reorder, flip a bit) is played by the in-memory harness alone
(``tunnel.testing.PairFaults``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from drill.checks import number
from drill.errors import ScenarioError
from drill.profiles import FaultProfile, get_profile

FaultKind = Literal["cut", "blackhole", "down"]
Direction = Literal["both", "to_station", "to_phone"]
"""Which way a blackhole holds bytes: towards the station (what the phone sends), towards
the phone (what the station sends), or both."""

KINDS: tuple[FaultKind, ...] = ("cut", "blackhole", "down")
DIRECTIONS: tuple[Direction, ...] = ("both", "to_station", "to_phone")


# -- outages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultEvent:
    """One outage: a ``cut`` at ``start``, or a ``blackhole``/``down`` window.

    Windows are half-open, ``[start, end)``; ``end=None`` never ends. ``direction``
    applies to blackholes only.
    """

    kind: FaultKind
    start: float
    end: float | None = None
    direction: Direction = "both"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ScenarioError(f"unknown fault kind {self.kind!r} (known: {', '.join(KINDS)})")
        object.__setattr__(self, "start", number(self.start, "start"))
        if self.end is not None:
            object.__setattr__(self, "end", number(self.end, "end"))
        if self.direction not in DIRECTIONS:
            raise ScenarioError(
                f"unknown direction {self.direction!r} (known: {', '.join(DIRECTIONS)})"
            )
        if self.kind == "cut" and self.end is not None:
            raise ScenarioError("a cut is an instant: it has no end")
        if self.end is not None and not self.end > self.start:
            raise ScenarioError(f"a {self.kind} must end after it starts")
        if self.kind != "blackhole" and self.direction != "both":
            raise ScenarioError(f"a {self.kind} has no direction")

    @property
    def stop(self) -> float:
        """When it is over: ``start`` for a cut, ``math.inf`` for a window without end."""
        if self.kind == "cut":
            return self.start
        return math.inf if self.end is None else self.end

    @property
    def duration(self) -> float:
        return self.stop - self.start

    def covers(self, t: float) -> bool:
        """Whether this window is in force at ``t`` (never, for a cut)."""
        return self.kind != "cut" and self.start <= t < self.stop

    def holds(self, towards: Literal["to_station", "to_phone"]) -> bool:
        """Whether this is a blackhole that holds bytes going ``towards``."""
        return self.kind == "blackhole" and self.direction in ("both", towards)

    def shifted(self, offset: float) -> FaultEvent:
        """The same outage ``offset`` seconds later (relative events made absolute)."""
        end = None if self.end is None else self.end + offset
        return replace(self, start=self.start + offset, end=end)

    def to_dict(self) -> dict[str, object]:
        """A plain mapping (``at`` for a cut), as ``from_dict`` reads it."""
        if self.kind == "cut":
            return {"kind": "cut", "at": self.start}
        out: dict[str, object] = {"kind": self.kind, "start": self.start}
        if self.end is not None:
            out["end"] = self.end
        if self.direction != "both":
            out["direction"] = self.direction
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> FaultEvent:
        """Read ``{"kind": "cut", "at": 5}`` or ``{"kind": "down", "start": 5, "end": 9}``.

        Without ``end`` a window never ends. Unknown keys are refused, so that a typo in a
        scenario file does not silently change the drill.
        """
        unknown = set(data) - {"kind", "at", "start", "end", "direction"}
        if unknown:
            raise ScenarioError(f"unknown fault event keys: {', '.join(sorted(unknown))}")
        kind = data.get("kind")
        if kind not in KINDS:
            raise ScenarioError(f"unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
        if kind == "cut":
            if ("at" in data) == ("start" in data):
                raise ScenarioError("a cut needs exactly one of 'at' or 'start'")
            start = number(data.get("at", data.get("start")), "at")
        else:
            if "at" in data or "start" not in data:
                raise ScenarioError(f"a {kind} needs 'start' (and optionally 'end')")
            start = number(data["start"], "start")
        end = number(data["end"], "end") if "end" in data else None
        direction = data.get("direction", "both")
        if direction not in DIRECTIONS:
            raise ScenarioError(f"unknown direction {direction!r} (known: {', '.join(DIRECTIONS)})")
        return cls(kind, start, end, direction)


@dataclass(frozen=True)
class LinkState:
    """What a timeline says about the link at one instant."""

    down: bool = False
    hold_to_station: bool = False
    hold_to_phone: bool = False

    @property
    def up(self) -> bool:
        return not (self.down or self.hold_to_station or self.hold_to_phone)


@dataclass(frozen=True)
class FaultSchedule:
    """A deterministic timeline of outages, ordered by start time."""

    events: tuple[FaultEvent, ...] = ()

    def __post_init__(self) -> None:
        for event in self.events:
            if not isinstance(event, FaultEvent):
                raise ScenarioError(f"not a FaultEvent: {event!r}")
        ordered = sorted(self.events, key=lambda e: (e.start, KINDS.index(e.kind), e.stop))
        object.__setattr__(self, "events", tuple(ordered))

    @classmethod
    def generate(
        cls, profile: FaultProfile | str, *, seed: int, duration: float, start: float = 0.0
    ) -> FaultSchedule:
        """A timeline over ``[start, start + duration)`` drawn from ``random.Random(seed)``.

        Windows never overlap and are clipped to the end, so the link is whole again when
        the timeline ends. Every outage consumes the same number of draws, so changing a
        profile's weights does not move the others.
        """
        chosen = get_profile(profile)
        begin = number(start, "start")
        if not number(duration, "duration") > 0:
            raise ScenarioError("duration must be positive")
        finish = begin + duration
        rng = random.Random(seed)
        events: list[FaultEvent] = []
        t = begin
        while True:
            gap = rng.expovariate(1.0 / chosen.mean_interval)
            pick, length, one_way, which = rng.random(), rng.random(), rng.random(), rng.random()
            t += gap
            if t >= finish:
                break
            kind = _weighted(chosen.weights(), pick)
            if kind == "cut":
                events.append(FaultEvent("cut", t))
                continue
            span = chosen.min_duration + length * (chosen.max_duration - chosen.min_duration)
            end = min(t + span, finish)
            if end <= t:
                break
            direction: Direction = "both"
            if kind == "blackhole" and one_way < chosen.one_way:
                direction = "to_station" if which < 0.5 else "to_phone"
            events.append(FaultEvent(kind, t, end, direction))
            t = end
        return cls(tuple(events))

    @classmethod
    def from_events(cls, events: Iterable[FaultEvent | Mapping[str, object]]) -> FaultSchedule:
        """A timeline from explicit events or their mappings (see ``FaultEvent.from_dict``).

        Explicit windows may overlap; their effects add up.
        """
        parsed: list[FaultEvent] = []
        for index, event in enumerate(events):
            try:
                if isinstance(event, FaultEvent):
                    parsed.append(event)
                elif isinstance(event, Mapping):
                    parsed.append(FaultEvent.from_dict(event))
                else:
                    raise ScenarioError(f"an event is a table, not {event!r}")
            except ScenarioError as exc:
                raise ScenarioError(f"fault event #{index}: {exc}") from None
        return cls(tuple(parsed))

    def to_dicts(self) -> list[dict[str, object]]:
        """The timeline as plain mappings, for reports and scenario files."""
        return [event.to_dict() for event in self.events]

    def __iter__(self) -> Iterator[FaultEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def state_at(self, t: float) -> LinkState:
        """Whether the link is down, and which ways it is held, at ``t``."""
        live = [e for e in self.events if e.covers(t)]
        return LinkState(
            down=any(e.kind == "down" for e in live),
            hold_to_station=any(e.holds("to_station") for e in live),
            hold_to_phone=any(e.holds("to_phone") for e in live),
        )

    def cuts_between(self, after: float, until: float) -> int:
        """How many cuts fall in ``(after, until]``."""
        return sum(1 for e in self.events if e.kind == "cut" and after < e.start <= until)

    def boundaries(self) -> tuple[float, ...]:
        """Every instant the link changes: starts and finite ends, sorted."""
        times = {e.start for e in self.events}
        times.update(e.stop for e in self.events if math.isfinite(e.stop))
        return tuple(sorted(times))

    @property
    def end(self) -> float:
        """When the last outage is over (0 for an empty timeline)."""
        return max((e.stop for e in self.events), default=0.0)


def _weighted(weights: tuple[float, float, float], u: float) -> FaultKind:
    target = u * sum(weights)
    running = 0.0
    for kind, weight in zip(KINDS, weights, strict=True):
        running += weight
        if target < running:
            return kind
    return next(k for k, w in zip(reversed(KINDS), reversed(weights), strict=True) if w > 0)
