"""The link each phone of a drill gets: a timeline of outages and the network between them.

From a named profile and a seed (one timeline per phone, the same for the same seed), or
from a TOML scenario file::

    [[phone]]                      # one table per phone; phones beyond the last repeat them
    latency = 0.05                 # optional conditions (see drill.faults.LinkConditions)
    bandwidth = 48000
    events = [
        { kind = "down", start = 2.0, end = 4.0 },
        { kind = "blackhole", start = 6.0, end = 8.0, direction = "to_phone" },
        { kind = "cut", at = 9.5 },
    ]
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from drill.errors import ScenarioError
from drill.faults import FaultSchedule
from drill.profiles import FaultProfile, LinkConditions, get_profile

# Generated timelines are retried with the next seeds until they hold an outage, so that
# every phone of a drill meets at least one.
_ATTEMPTS = 100
_TABLE_KEYS = {"events", "latency", "jitter", "bandwidth", "slicer", "slicer_delay", "limit"}


@dataclass(frozen=True)
class PhoneLink:
    """One phone's link in a drill."""

    schedule: FaultSchedule
    conditions: LinkConditions


def generated_links(
    profile: FaultProfile | str, *, seed: int, phones: int, duration: float
) -> list[PhoneLink]:
    """One link per phone from ``profile``: a timeline over ``[0, duration)`` from a seed
    derived from ``seed`` and the phone's index, with at least one outage when any of
    the first attempts gives one."""
    chosen = get_profile(profile)
    links = []
    for index in range(phones):
        schedule = FaultSchedule()
        for attempt in range(_ATTEMPTS):
            schedule = FaultSchedule.generate(
                chosen, seed=seed * 1000 + index * 100 + attempt, duration=duration
            )
            if schedule.events:
                break
        links.append(PhoneLink(schedule, chosen.conditions))
    return links


def scenario_links(
    path: Path, phones: int, *, base: LinkConditions | None = None
) -> list[PhoneLink]:
    """The links of a TOML scenario file for ``phones`` phones (tables repeat in order).

    A table's conditions default to ``base`` (flaky-wifi's network when not given).
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"scenario {path}: {exc}") from None
    tables = data.get("phone", [])
    if not isinstance(tables, list) or not tables:
        raise ScenarioError(f"scenario {path}: no [[phone]] tables")
    defaults = base if base is not None else get_profile("flaky-wifi").conditions
    parsed = []
    for number, table in enumerate(tables, start=1):
        try:
            parsed.append(_table(table, defaults))
        except ScenarioError as exc:
            raise ScenarioError(f"scenario {path}: [[phone]] #{number}: {exc}") from None
    return [parsed[i % len(parsed)] for i in range(phones)]


def _table(table: object, defaults: LinkConditions) -> PhoneLink:
    if not isinstance(table, Mapping):
        raise ScenarioError("not a table")
    unknown = set(table) - _TABLE_KEYS
    if unknown:
        raise ScenarioError(f"unknown keys: {', '.join(sorted(unknown))}")
    events = table.get("events", [])
    if not isinstance(events, list):
        raise ScenarioError("events is a list of tables")
    return PhoneLink(
        FaultSchedule.from_events(events), LinkConditions.from_dict(table, base=defaults)
    )
