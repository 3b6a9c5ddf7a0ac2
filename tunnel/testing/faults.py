"""Seeded faults for the memory links: per-message faults and outage timelines.

What a WebSocket over flaky WiFi can really suffer, and what it cannot, decides the
model. One TCP stream never silently loses, duplicates or reorders a message: it
either delivers in order or breaks. So:

* ``drop`` -- the message is lost *and* the connection is cut right after (a loss is
  only possible when the connection breaks);
* ``duplicate`` -- the message is delivered, the connection is cut, and the same bytes
  are replayed on the *next* connection, as an attacker or a confused middlebox
  would; the endpoint must refuse them. ``duplicate_mode="same_connection"`` delivers
  the copy on the same stream instead (adversarial tests only);
* ``delay`` -- latency, jitter and delay spikes; order within a connection is kept;
* ``reorder`` -- the message overtakes the previous one in flight (adversarial only);
* ``tamper`` -- one bit flipped (adversarial only);
* ``cut`` -- the connection closes right after the message arrives; both ends are told;
* ``blackhole`` -- from this message on the connection goes silent, without any close;
  the endpoints notice only through their liveness timeouts.

A ``FaultSchedule`` is the other half: a timeline of outages (a cut at ``t``, a
blackhole from ``t1`` to ``t2``, the network down from ``t1`` to ``t2`` so that
connection attempts fail), generated from a seed and a ``FaultProfile`` or given
explicitly (TOML scenarios). ``FaultyLink`` applies both to the connections it
hands out and records what happened. The same seed and the same calls give the same
run, decision for decision.

(``tunnel.testing.pair_faults`` is a different tool: chaos injected straight into a
``ConnectionPair``'s queues, for the property tests.)
"""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from tunnel.errors import LinkError, UsageError
from tunnel.testing.links import (
    Direction,
    LinkCounters,
    LinkEvent,
    MemoryLink,
    Side,
    check_side,
    direction_of,
    peer,
    receivers,
)

FaultKind = Literal["cut", "blackhole", "down"]
"""An outage on the timeline."""

DuplicateMode = Literal["next_connection", "same_connection"]
BlackholeScope = Literal["both", "one_way"]
FaultName = Literal[
    "drop", "duplicate", "replay", "delay", "reorder", "tamper", "cut", "blackhole", "down",
    "refused",
]  # fmt: skip

_KINDS: tuple[FaultKind, ...] = ("cut", "blackhole", "down")
_DIRECTIONS: tuple[Direction, ...] = ("both", "a_to_b", "b_to_a")


# -- helpers ------------------------------------------------------------------------------


def _finite(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"{what} must be a finite number, not {value!r}")
    return float(value)


def _non_negative(value: float, what: str) -> float:
    if _finite(value, what) < 0:
        raise UsageError(f"{what} must not be negative")
    return float(value)


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{what} must be a number, not {value!r}")
    return _finite(value, what)


def _check_bytes(data: object) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UsageError("a message is bytes")


def _open_at(link: MemoryLink, at: float) -> bool:
    """Whether a cut at ``at`` would change anything: a side still to learn of it later."""
    times = (link.close_time("a"), link.close_time("b"))
    return any(t is None or t > at for t in times)


def _weighted(choices: tuple[FaultKind, ...], weights: tuple[float, ...], u: float) -> FaultKind:
    target = u * sum(weights)
    running = 0.0
    for choice, weight in zip(choices, weights, strict=True):
        running += weight
        if target < running:
            return choice
    return next(c for c, w in zip(reversed(choices), reversed(weights), strict=True) if w > 0)


def _event_order(event: FaultEvent) -> tuple[float, int, float, int]:
    return (event.start, _KINDS.index(event.kind), event.stop, _DIRECTIONS.index(event.direction))


# -- per-message conditions ---------------------------------------------------------------


@dataclass(frozen=True)
class LinkConditions:
    """Latency and per-message fault probabilities (each in [0, 1]) of a network.

    Every message gets ``latency + uniform(0, jitter)``; with probability ``delay``
    it gets a further ``uniform(0, max_delay)``. ``reorder``, ``tamper`` and
    ``duplicate_mode="same_connection"`` are things no TCP stream does: they exist to
    play an attacker, not a bad network.
    """

    latency_a_to_b: float = 0.0
    latency_b_to_a: float | None = None  # None: same as a_to_b
    jitter: float = 0.0
    delay: float = 0.0
    max_delay: float = 0.0
    drop: float = 0.0
    duplicate: float = 0.0
    duplicate_mode: DuplicateMode = "next_connection"
    reorder: float = 0.0
    tamper: float = 0.0
    cut: float = 0.0
    blackhole: float = 0.0
    blackhole_scope: BlackholeScope = "both"

    def __post_init__(self) -> None:
        for name in ("latency_a_to_b", "jitter", "max_delay"):
            _non_negative(getattr(self, name), name)
        if self.latency_b_to_a is not None:
            _non_negative(self.latency_b_to_a, "latency_b_to_a")
        for name in ("delay", "drop", "duplicate", "reorder", "tamper", "cut", "blackhole"):
            p = getattr(self, name)
            if not (isinstance(p, int | float) and 0.0 <= p <= 1.0):
                raise UsageError(f"{name} is a probability in [0, 1], not {p!r}")
        if self.duplicate_mode not in ("next_connection", "same_connection"):
            raise UsageError(f"unknown duplicate_mode {self.duplicate_mode!r}")
        if self.blackhole_scope not in ("both", "one_way"):
            raise UsageError(f"unknown blackhole_scope {self.blackhole_scope!r}")

    @property
    def adversarial(self) -> bool:
        """True if these conditions do what only an attacker can."""
        return (
            self.reorder > 0
            or self.tamper > 0
            or (self.duplicate > 0 and self.duplicate_mode == "same_connection")
        )


# -- the outage timeline ------------------------------------------------------------------


@dataclass(frozen=True)
class FaultEvent:
    """One outage: a ``cut`` at ``start``, or a ``blackhole``/``down`` window.

    Windows are half-open, ``[start, end)``; ``end=None`` never ends. ``direction``
    applies to blackholes only: a one-way hole stalls one direction.
    """

    kind: FaultKind
    start: float
    end: float | None = None
    direction: Direction = "both"

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise UsageError(f"unknown fault kind {self.kind!r} (known: {', '.join(_KINDS)})")
        object.__setattr__(self, "start", _finite(self.start, "start"))
        if self.end is not None:
            object.__setattr__(self, "end", _finite(self.end, "end"))
        if self.direction not in _DIRECTIONS:
            raise UsageError(f"unknown direction {self.direction!r}")
        if self.kind == "cut":
            if self.end is not None:
                raise UsageError("a cut is an instant: it has no end")
        elif self.end is not None and not _finite(self.end, "end") > self.start:
            raise UsageError(f"a {self.kind} must end after it starts")
        if self.kind != "blackhole" and self.direction != "both":
            raise UsageError(f"a {self.kind} has no direction")

    @property
    def at(self) -> float:
        """When the outage starts."""
        return self.start

    @property
    def stop(self) -> float:
        """When the outage ends: ``start`` for a cut, ``math.inf`` for a window without end."""
        if self.kind == "cut":
            return self.start
        return math.inf if self.end is None else self.end

    def covers(self, t: float) -> bool:
        """Whether this window is in force at ``t`` (never, for a cut)."""
        return self.kind != "cut" and self.start <= t < self.stop

    def to_dict(self) -> dict[str, object]:
        """A plain mapping (``at`` for a cut), as read by ``from_dict``."""
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

        ``end`` left out: the window never ends. Unknown keys are refused, so a typo in
        a scenario file does not silently change the run.
        """
        unknown = set(data) - {"kind", "at", "start", "end", "direction"}
        if unknown:
            raise UsageError(f"unknown fault event keys: {', '.join(sorted(unknown))}")
        kind = data.get("kind")
        if kind not in _KINDS:
            raise UsageError(f"unknown fault kind {kind!r} (known: {', '.join(_KINDS)})")
        if kind == "cut":
            if ("at" in data) == ("start" in data):
                raise UsageError("a cut needs exactly one of 'at' or 'start'")
            start = _number(data.get("at", data.get("start")), "at")
        else:
            if "at" in data or "start" not in data:
                raise UsageError(f"a {kind} needs 'start' (and optionally 'end')")
            start = _number(data["start"], "start")
        end = _number(data["end"], "end") if "end" in data else None
        direction = data.get("direction", "both")
        if direction not in _DIRECTIONS:
            raise UsageError(f"unknown direction {direction!r}")
        return cls(kind, start, end, direction)


@dataclass(frozen=True)
class FaultProfile:
    """How often outages come, how long they last, and the network between them.

    Gaps between outages are exponential with mean ``mean_interval`` seconds, counted
    from the end of the previous one; a window lasts ``uniform(min_duration,
    max_duration)``. ``cut``, ``blackhole`` and ``down`` are relative weights;
    ``one_way`` is the share of blackholes that stall one direction only.
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
        if not _finite(self.mean_interval, "mean_interval") > 0:
            raise UsageError("mean_interval must be positive")
        if not 0 < _finite(self.min_duration, "min_duration") <= self.max_duration:
            raise UsageError("need 0 < min_duration <= max_duration")
        _finite(self.max_duration, "max_duration")
        weights = self.weights()
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise UsageError("fault weights must be >= 0 and not all zero")
        if not 0.0 <= self.one_way <= 1.0:
            raise UsageError("one_way is a share in [0, 1]")

    def weights(self) -> tuple[float, float, float]:
        """The weights of cut, blackhole and down, in that order."""
        return (self.cut, self.blackhole, self.down)


PROFILES: Mapping[str, FaultProfile] = MappingProxyType(
    {
        "flaky-wifi": FaultProfile(
            "flaky-wifi",
            mean_interval=15.0,
            min_duration=0.5,
            max_duration=6.0,
            cut=3.0,
            blackhole=2.0,
            down=2.0,
            one_way=0.3,
            conditions=LinkConditions(
                latency_a_to_b=0.004, jitter=0.02, delay=0.02, max_delay=0.4, drop=0.001
            ),
            description="frequent short drops and stalls of a weak access point",
        ),
        "blackout": FaultProfile(
            "blackout",
            mean_interval=90.0,
            min_duration=20.0,
            max_duration=240.0,
            cut=0.0,
            blackhole=1.0,
            down=3.0,
            conditions=LinkConditions(latency_a_to_b=0.004, jitter=0.004),
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
            conditions=LinkConditions(
                latency_a_to_b=0.06, jitter=0.09, delay=0.05, max_delay=1.5, drop=0.002
            ),
            description="a phone hotspot over mobile data: slow, jittery, stalls",
        ),
    }
)
"""The named profiles of ``station simulate``."""


def get_profile(profile: FaultProfile | str) -> FaultProfile:
    """A profile by name (or the profile itself); ``UsageError`` names the known ones."""
    if isinstance(profile, FaultProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        known = ", ".join(PROFILES)
        raise UsageError(f"unknown fault profile {profile!r} (known: {known})") from None


@dataclass(frozen=True)
class FaultSchedule:
    """A deterministic timeline of outages, ordered by start time."""

    events: tuple[FaultEvent, ...] = ()

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.events, key=_event_order))
        for event in ordered:
            if not isinstance(event, FaultEvent):
                raise UsageError(f"not a FaultEvent: {event!r}")
        object.__setattr__(self, "events", ordered)

    @classmethod
    def generate(
        cls,
        profile: FaultProfile | str,
        *,
        seed: int,
        duration: float,
        start: float = 0.0,
    ) -> FaultSchedule:
        """A timeline over ``[start, start + duration)`` drawn from ``random.Random(seed)``.

        Windows never overlap and are clipped to the end, so the network is whole
        again when the timeline ends. Every outage consumes the same number of draws,
        so changing a profile's weights does not shift the times of the others.
        """
        chosen = get_profile(profile)
        begin = _finite(start, "start")
        if not _finite(duration, "duration") > 0:
            raise UsageError("duration must be positive")
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
            kind = _weighted(_KINDS, chosen.weights(), pick)
            if kind == "cut":
                events.append(FaultEvent("cut", t))
                continue
            span = chosen.min_duration + length * (chosen.max_duration - chosen.min_duration)
            end = min(t + span, finish)
            if end <= t:
                break
            direction: Direction = "both"
            if kind == "blackhole" and one_way < chosen.one_way:
                direction = "a_to_b" if which < 0.5 else "b_to_a"
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
                parsed.append(
                    event if isinstance(event, FaultEvent) else FaultEvent.from_dict(event)
                )
            except UsageError as exc:
                raise UsageError(f"fault event #{index}: {exc}") from None
        return cls(tuple(parsed))

    def to_dicts(self) -> list[dict[str, object]]:
        """The timeline as plain mappings, for reports and scenario files."""
        return [event.to_dict() for event in self.events]

    def __iter__(self) -> Iterator[FaultEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def is_down(self, t: float) -> bool:
        """Whether a ``down`` window is in force at ``t``."""
        return any(e.kind == "down" and e.covers(t) for e in self.events)

    def is_blackholed(self, t: float, direction: Direction = "both") -> bool:
        """Whether a blackhole stalls ``direction`` (any of it, for ``"both"``) at ``t``."""
        wanted = set(receivers(direction))
        return any(
            e.kind == "blackhole" and e.covers(t) and wanted & set(receivers(e.direction))
            for e in self.events
        )

    def can_connect(self, t: float) -> bool:
        """Whether a connection attempt at ``t`` succeeds.

        Not while the network is down (the attempt fails at once), nor inside a
        blackhole, one-way included (a TCP handshake needs both directions; the attempt
        would hang until the dialler gives up).
        """
        return not any(e.covers(t) for e in self.events)

    def next_connect_time(self, t: float) -> float | None:
        """The earliest time >= ``t`` at which connecting succeeds; None: never again."""
        while True:
            blocking = [e.stop for e in self.events if e.covers(t)]
            if not blocking:
                return t
            t = max(blocking)
            if math.isinf(t):
                return None

    def boundaries(self) -> tuple[float, ...]:
        """Every instant the timeline changes: starts and finite ends, sorted."""
        times = {e.start for e in self.events}
        times.update(e.stop for e in self.events if math.isfinite(e.stop))
        return tuple(sorted(times))


# -- the network --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outage:
    """A stretch of time the link was unusable, for reports.

    A cut lasts an instant (``start == end``); ``end=None``: until the connection
    (``conn``) ended, or forever for a timeline window. ``conn`` is None when the
    outage hit the network rather than one connection.
    """

    kind: FaultKind
    start: float
    end: float | None
    conn: int | None = None


@dataclass(frozen=True)
class FaultRecord:
    """One fault decision, in order: enough to check that two runs made the same ones."""

    at: float
    kind: FaultName
    conn: int | None
    direction: Direction | None = None


@dataclass
class FaultStats(LinkCounters):
    """What a ``FaultyLink`` carried and did.

    The ``LinkCounters`` fields total all its connections (``sent`` includes
    duplicate copies and replays); the rest count fault decisions.
    """

    submitted: int = 0  # messages the endpoints handed to the network
    dropped: int = 0
    duplicated: int = 0
    replayed: int = 0  # put on the wire by the attacker: duplicates replayed, injections
    delayed: int = 0
    reordered: int = 0
    tampered: int = 0
    blackholed: int = 0  # blackholes started on a connection (per-message or manual)
    connects: int = 0
    refused: int = 0  # connection attempts that failed
    outages: list[Outage] = field(default_factory=list)


# Random numbers drawn per message whatever the faults, so that turning one fault up or
# down does not shift every later decision of the others.
_DRAWS = 11


class FaultyLink:
    """The path between endpoint ``"a"`` and endpoint ``"b"``, with seeded faults.

    It hands out connections (``MemoryLink`` objects, named by increasing ids) when
    the timeline allows, applies the per-message faults of ``conditions`` with
    ``random.Random(seed)``, applies the ``schedule``'s outages at their times, and
    keeps ``stats`` and ``faults``. Time is whatever ``now`` the caller passes; it
    must never go backwards.

    A driver loop: ``connect`` when an endpoint wants a transport and
    ``can_connect(now)``; ``send`` what the endpoints write (catching ``LinkError``: the
    sender already knows the connection is closed); ``close`` when an endpoint closes;
    feed ``poll(now)`` to the endpoints (``Delivery`` -> receive, ``Closed`` ->
    connection lost); advance the clock to the earliest of ``next_event()`` and the
    endpoints' deadlines.
    """

    def __init__(
        self,
        seed: int,
        conditions: LinkConditions | None = None,
        schedule: FaultSchedule | None = None,
    ) -> None:
        self.seed = seed
        self.conditions = conditions if conditions is not None else LinkConditions()
        self.schedule = schedule if schedule is not None else FaultSchedule()
        self.rng = random.Random(seed)
        self.stats = FaultStats()
        self.faults: list[FaultRecord] = []
        self._links: dict[int, MemoryLink] = {}
        self._last_id = 0
        self._now = -math.inf
        self._pending: deque[FaultEvent] = deque(self.schedule.events)
        self._boundaries = self.schedule.boundaries()
        self._replays: list[tuple[Side, bytes]] = []  # (towards, bytes) for the next connection

    @classmethod
    def from_profile(
        cls, profile: FaultProfile | str, *, seed: int, duration: float, start: float = 0.0
    ) -> FaultyLink:
        """A link with the profile's conditions and a timeline generated from ``seed``."""
        chosen = get_profile(profile)
        schedule = FaultSchedule.generate(chosen, seed=seed, duration=duration, start=start)
        return cls(seed, chosen.conditions, schedule)

    # -- state -----------------------------------------------------------------------

    @property
    def connections(self) -> tuple[int, ...]:
        """Ids of the connections not yet finished (a side may still have to learn of a close)."""
        return tuple(self._links)

    @property
    def current(self) -> int | None:
        """The newest connection if it is still up, else None."""
        link = self._links.get(self._last_id)
        return self._last_id if link is not None and link.is_up else None

    def link(self, conn: int) -> MemoryLink:
        """The connection ``conn``, for inspection (drive it through this object)."""
        return self._link(conn)

    def can_connect(self, now: float) -> bool:
        """Whether a connection attempt at ``now`` succeeds."""
        return self.schedule.can_connect(now)

    def next_connect_time(self, now: float) -> float | None:
        """The earliest time >= ``now`` a connection attempt succeeds; None: never."""
        return self.schedule.next_connect_time(now)

    def next_event(self) -> float | None:
        """The earliest time something happens on its own: an arrival, a close notice,
        an outage starting or ending. None: nothing will, until someone acts."""
        times = [t for t in (link.next_arrival() for link in self._links.values()) if t is not None]
        index = bisect.bisect_right(self._boundaries, self._now)
        if index < len(self._boundaries):
            times.append(self._boundaries[index])
        return min(times, default=None)

    # -- connections -----------------------------------------------------------------

    def connect(self, now: float) -> int:
        """Open a new connection at ``now`` and return its id; ``LinkError`` if the
        timeline forbids it. Replays owed from duplicated messages arrive on it first."""
        self._advance(now)
        if not self.schedule.can_connect(now):
            self.stats.refused += 1
            self._record(now, "refused", None)
            raise LinkError("network unreachable")
        self._last_id += 1
        conn = self._last_id
        c = self.conditions
        link = MemoryLink(
            conn,
            latency_a_to_b=c.latency_a_to_b,
            latency_b_to_a=c.latency_b_to_a,
            counters=self.stats,
        )
        for event in self.schedule.events:
            if event.kind == "blackhole" and event.stop > now:
                link.blackhole(event.direction, event.start, event.end)
        self._links[conn] = link
        self.stats.connects += 1
        replays, self._replays = self._replays, []
        for towards, data in replays:
            link.send(peer(towards), data, now)
            self.stats.replayed += 1
            self._record(now, "replay", conn, direction_of(peer(towards)))
        return conn

    def send(self, conn: int, side: Side, data: bytes, now: float) -> None:
        """``side`` sends one message on ``conn``; the faults decide its fate.

        ``LinkError`` if ``side`` already knows the connection is closed.
        """
        side = check_side(side)
        _check_bytes(data)
        self._advance(now)
        link = self._link(conn)
        if link.is_closed(side, now):
            raise LinkError("connection closed")
        self.stats.submitted += 1
        c = self.conditions
        u = [self.rng.random() for _ in range(_DRAWS)]
        direction = direction_of(side)
        if u[0] < c.drop:
            self.stats.dropped += 1
            self._record(now, "drop", conn, direction)
            self._cut(link, now)
            return
        if u[1] < c.blackhole:
            self._blackhole(link, now, direction if c.blackhole_scope == "one_way" else "both")
        wire = bytes(data)
        if u[2] < c.tamper and wire:
            flipped = bytearray(wire)
            flipped[int(u[3] * len(flipped))] ^= 1 << int(u[4] * 8)
            wire = bytes(flipped)
            self.stats.tampered += 1
            self._record(now, "tamper", conn, direction)
        extra = u[5] * c.jitter
        if u[6] < c.delay:
            extra += u[7] * c.max_delay
            self.stats.delayed += 1
            self._record(now, "delay", conn, direction)
        arrival = link.send(side, wire, now, extra_delay=extra)
        if u[8] < c.reorder and link.overtake(peer(side), now):
            self.stats.reordered += 1
            self._record(now, "reorder", conn, direction)
        delivered_at = arrival if arrival is not None and math.isfinite(arrival) else None
        if u[9] < c.duplicate and delivered_at is not None:
            self.stats.duplicated += 1
            self._record(now, "duplicate", conn, direction)
            if c.duplicate_mode == "same_connection":
                link.send(side, wire, now, extra_delay=extra)
            else:
                self._replays.append((peer(side), wire))
                self._cut(link, delivered_at)
        if u[10] < c.cut:
            self._record(now, "cut", conn, direction)
            self._cut(link, delivered_at if delivered_at is not None else now)

    def close(self, conn: int, side: Side, now: float) -> None:
        """``side`` closes ``conn`` cleanly: its messages in flight still arrive.

        Closing a connection that has already ended does nothing, as on a WebSocket.
        """
        self._advance(now)
        link = self._known(conn)
        if link is not None:
            link.close(side, now)

    def cut(self, now: float, conn: int | None = None) -> None:
        """Cut ``conn`` (None: every open connection) at ``now``; both sides are told.

        Cutting a connection that has already ended does nothing.
        """
        self._advance(now)
        targets = [self._known(conn)] if conn is not None else list(self._links.values())
        for link in targets:
            if link is not None and _open_at(link, now):
                self._record(now, "cut", link.conn_id)
                self._cut(link, now)

    def blackhole(
        self,
        now: float,
        *,
        conn: int | None = None,
        direction: Direction = "both",
        until: float | None = None,
    ) -> None:
        """Silence ``conn`` (None: the current one) from ``now`` until ``until``
        (None: for good), telling nobody."""
        self._advance(now)
        target = conn if conn is not None else self.current
        if target is None:
            raise LinkError("no open connection")
        self._blackhole(self._link(target), now, direction, until)

    def inject(self, conn: int, towards: Side, data: bytes, now: float) -> None:
        """Put ``data`` on ``conn`` towards ``towards`` as an attacker would (no faults)."""
        towards = check_side(towards)
        _check_bytes(data)
        self._advance(now)
        link = self._link(conn)
        if link.is_closed(peer(towards), now):
            raise LinkError("connection closed")
        link.send(peer(towards), bytes(data), now)
        self.stats.replayed += 1
        self._record(now, "replay", conn, direction_of(peer(towards)))

    def poll(self, now: float) -> list[LinkEvent]:
        """Every delivery and close notice due by ``now``, in time order."""
        self._advance(now)
        events: list[LinkEvent] = []
        for conn in sorted(self._links):
            events.extend(self._links[conn].poll(now))
        events.sort(key=lambda event: event.at)  # stable: each connection and side in order
        for conn in [conn for conn, link in self._links.items() if link.finished]:
            del self._links[conn]
        return events

    # -- plumbing ----------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        now = _finite(now, "now")
        if now < self._now:
            raise UsageError("time went backwards")
        self._now = now
        while self._pending and self._pending[0].start <= now:
            event = self._pending.popleft()
            self.stats.outages.append(Outage(event.kind, event.start, event.end))
            self._record(event.start, event.kind, None, event.direction)
            if event.kind != "blackhole":  # holes were laid on each connection at connect
                for link in self._links.values():
                    self._cut(link, event.start, outage=False)

    def _link(self, conn: int) -> MemoryLink:
        link = self._known(conn)
        if link is None:
            raise LinkError(f"connection {conn} is closed")
        return link

    def _known(self, conn: int) -> MemoryLink | None:
        """The connection, None if it has ended, ``UsageError`` if it never existed."""
        if not 0 < conn <= self._last_id:
            raise UsageError(f"no connection {conn}")
        return self._links.get(conn)

    def _cut(self, link: MemoryLink, at: float, *, outage: bool = True) -> None:
        if outage and _open_at(link, at):
            self.stats.outages.append(Outage("cut", at, at, link.conn_id))
        link.cut(at)

    def _blackhole(
        self, link: MemoryLink, now: float, direction: Direction, until: float | None = None
    ) -> None:
        link.blackhole(direction, now, until)
        self.stats.blackholed += 1
        self.stats.outages.append(Outage("blackhole", now, until, link.conn_id))
        self._record(now, "blackhole", link.conn_id, direction)

    def _record(
        self, at: float, kind: FaultName, conn: int | None, direction: Direction | None = None
    ) -> None:
        self.faults.append(FaultRecord(at, kind, conn, direction))
