"""Where the station's Unix sockets go, and whether they fit."""

from __future__ import annotations

import os
from pathlib import Path

from station.errors import ConfigError

# A Unix socket's path holds at most 107 bytes (sun_path is 108 with its NUL).
UNIX_PATH_MAX = 107


def session_socket_path(control_dir: Path, session: str) -> Path:
    """Where a session's worker listens: in the station's control directory."""
    return control_dir / f"{session[:16]}.sock"


def check_control_path(control_path: Path, control_dir: Path) -> None:
    """Refuse, at start, a control path whose sessions' sockets could not be made.

    Otherwise the station would start, a medic would pair, and the worker would fail to
    open its session's socket at that moment: the phone sees "paired", then "unknown
    session".
    """
    longest = max(
        len(os.fsencode(control_path)), len(os.fsencode(session_socket_path(control_dir, "0" * 16)))
    )
    if longest > UNIX_PATH_MAX:
        spare = len(os.fsencode(control_path)) - (longest - UNIX_PATH_MAX)
        raise ConfigError(
            f"control socket path {control_path} is too long: a session's socket beside it"
            f" would take {longest} bytes and Unix sockets allow {UNIX_PATH_MAX}; choose a"
            f" --control of at most {spare} bytes"
        )
