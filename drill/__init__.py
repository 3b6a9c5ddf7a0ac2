"""Drills of what a clinic's WiFi does to Field Station, with one fault model.

* ``drill.faults`` -- the model: outages on a timeline (cut, down, blackhole);
  ``drill.profiles`` -- the network between them and the named profiles (``flaky-wifi``,
  ``blackout``, ``hotspot``) that timelines are generated from.
* ``drill.scenario`` -- each phone's link in a drill: generated from a profile and a seed,
  or read from a TOML scenario file.
* ``drill.proxy`` -- the fault proxy that applies the model to real TCP (``station proxy``).
* ``drill.simulate`` -- a whole clinic through one proxy per phone (``station simulate``).

The in-memory test kit (``tunnel.testing``) applies the same model to a pair of tunnel
endpoints on a fake clock. Nothing here imports the test kit.
"""

from drill.errors import DrillError, ListenError, ScenarioError, SimulationError
from drill.faults import Direction, FaultEvent, FaultKind, FaultSchedule, LinkState
from drill.profiles import PROFILES, FaultProfile, LinkConditions, get_profile

__all__ = [
    "PROFILES",
    "Direction",
    "DrillError",
    "FaultEvent",
    "FaultKind",
    "FaultProfile",
    "FaultSchedule",
    "LinkConditions",
    "LinkState",
    "ListenError",
    "ScenarioError",
    "SimulationError",
    "get_profile",
]
