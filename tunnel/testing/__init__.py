"""Test kit: a fake clock, memory links, a seeded fault-injecting network.

Everything here is deterministic and free of asyncio and real time: ``now`` is passed
in, usually from a ``FakeClock``. ``tunnel.testing.pair`` adds a driver that joins a
phone and a station endpoint.
"""

from tunnel.testing.clock import FakeClock
from tunnel.testing.faults import (
    PROFILES,
    FaultEvent,
    FaultProfile,
    FaultRecord,
    FaultSchedule,
    FaultStats,
    FaultyLink,
    LinkConditions,
    Outage,
    get_profile,
)
from tunnel.testing.links import (
    Closed,
    Delivery,
    Direction,
    LinkCounters,
    LinkEvent,
    MemoryLink,
    Side,
    peer,
)

__all__ = [
    "PROFILES",
    "Closed",
    "Delivery",
    "Direction",
    "FakeClock",
    "FaultEvent",
    "FaultProfile",
    "FaultRecord",
    "FaultSchedule",
    "FaultStats",
    "FaultyLink",
    "LinkConditions",
    "LinkCounters",
    "LinkEvent",
    "MemoryLink",
    "Outage",
    "Side",
    "get_profile",
    "peer",
]
