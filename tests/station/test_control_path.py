"""A control path too long for its sessions' sockets is refused at start, not at pairing."""

from __future__ import annotations

from pathlib import Path

from station.socket_paths import UNIX_PATH_MAX, session_socket_path
from tests.procs import command, run


def test_a_control_path_too_long_for_session_sockets_is_refused_at_start(
    tmp_path: Path,
) -> None:
    # Long enough that ctl.sock fits but a session's socket beside it does not (the
    # phone used to see "paired", then "unknown session").
    deep = tmp_path / ("d" * max(1, 100 - len(str(tmp_path)) - len("/x/ctl.sock")))
    control = deep / "x" / "ctl.sock"
    assert len(str(control)) <= UNIX_PATH_MAX
    assert len(str(session_socket_path(Path(f"{control}.d"), "0" * 32))) > UNIX_PATH_MAX
    argv = [command("station"), "start", "--host", "127.0.0.1", "--no-mdns", "--port", "0"]
    done = run([*argv, "--no-ui", "--control", str(control)], timeout=30)
    assert done.returncode == 2, done.stderr
    assert "is too long" in done.stderr and "Unix sockets allow 107" in done.stderr
    assert not (deep / "x").exists()  # nothing made
