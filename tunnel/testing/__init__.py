"""The tunnel's test kit: two endpoints, in-memory transports and a fake clock.

* ``ConnectionPair`` -- a ``PhoneEndpoint`` and a ``StationEndpoint`` joined by
  in-memory transports; move bytes one message at a time or until quiet, cut or
  silence a transport, inject an attacker's bytes, advance a ``FakeClock`` so that
  deadlines fire. Network faults are the one fault model's (``drill.faults``): the pair
  ``apply``-s an event or ``follow``-s a whole timeline, e.g. the ``flaky-wifi``
  profile's, on its fake clock.
* ``PairFaults`` -- plays actions on a pair: deliveries, waits, outages of the model and
  an attacker's replays, reorderings and bit flips.
* ``tunnel.testing.strategies`` -- Hypothesis strategies for those actions and for
  timelines (imported on its own: it needs ``hypothesis``).

Everything is deterministic and free of asyncio and real time. A sketch::

    pair = ConnectionPair(phone, station)
    pair.connect()
    pair.transfer()                       # the handshake
    pair.follow(FaultSchedule.generate("flaky-wifi", seed=1, duration=600))
    pair.station.send(b"hello", pair.now)
    PairFaults(pair).heal()               # reconnects, resumes, drains
"""

from tunnel.testing.clock import FakeClock
from tunnel.testing.pair import PHONE, STATION, ConnectionPair, Transport
from tunnel.testing.pair_faults import (
    Action,
    Attack,
    Deliver,
    PairFaults,
    Reorder,
    Replay,
    Tamper,
    Wait,
)

__all__ = [
    "PHONE",
    "STATION",
    "Action",
    "Attack",
    "ConnectionPair",
    "Deliver",
    "FakeClock",
    "PairFaults",
    "Reorder",
    "Replay",
    "Tamper",
    "Transport",
    "Wait",
]
