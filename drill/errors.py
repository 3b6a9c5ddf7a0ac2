"""The drill package's errors, under one root.

* ``ScenarioError`` -- the drill was asked for something that does not exist or does not
  make sense: an unknown profile, a bad fault event, an unreadable scenario file (the
  caller's input).
* ``ListenError`` -- the proxy cannot listen where it was told (the machine's state).
* ``SimulationError`` -- the clinic did not come up or did not answer: a station or phone
  process failed or fell silent (the system under drill).
"""

from __future__ import annotations


class DrillError(Exception):
    """Root of every error raised by the ``drill`` package."""


class ScenarioError(DrillError, ValueError):
    """A profile, fault event, timeline or scenario file that cannot be used."""


class ListenError(DrillError):
    """The fault proxy cannot listen on the address it was given."""


class SimulationError(DrillError):
    """A process of the simulated clinic failed or did not answer in time."""
