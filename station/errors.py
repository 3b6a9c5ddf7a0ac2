"""The station's errors, under one root; each says whose fault it was."""

from __future__ import annotations


class StationError(Exception):
    """Root of every error raised by the ``station`` package."""


class ConfigError(StationError):
    """The operator asked for something impossible (bad option, port in use, bad path)."""


class ControlError(StationError):
    """The local control socket is missing, refused us, or answered with an error."""


class WorkerProtocolError(StationError):
    """A worker (or the supervisor) broke the IPC framing: a bug, or a dying process."""


class QueueFullError(ControlError):
    """The session's outage queue is full; the command was refused, not dropped."""
