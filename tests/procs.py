"""Real processes for integration tests: the `station` and `medic-phone` commands.

Each process's JSON event lines are read by a thread into a list, so tests can wait
for an event with a deadline. Every process is killed at the end of its test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
LIVE: list[Proc] = []  # every process started in the current test; the fixture ends them


def command(name: str) -> str:
    return str(BIN / name)


class Proc:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        prefix: Sequence[str] = (),
        cwd: Path | None = None,
        stdin: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = [*prefix, *argv]
        self.popen = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            env=dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1"),
            cwd=cwd,
            start_new_session=True,
        )
        LIVE.append(self)
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._stdout_done = False
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.popen.stdout is not None
        for raw in iter(self.popen.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                try:
                    value = json.loads(line)
                except ValueError:
                    value = None
                if isinstance(value, dict):
                    self.events.append(value)
                self._cond.notify_all()
        with self._cond:
            self._stdout_done = True
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for raw in iter(self.popen.stderr.readline, b""):
            with self._cond:
                self.stderr.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def wait_for(
        self,
        kind: str,
        *,
        timeout: float = 15.0,
        where: Callable[[dict[str, Any]], bool] | None = None,
        after: int = 0,
    ) -> dict[str, Any]:
        """The first event of this kind (from index ``after``) matching ``where``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[after:]:
                    if event.get("event") == kind and (where is None or where(event)):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or self._stdout_done:
                    raise AssertionError(
                        f"no {kind!r} event from {self.argv[:3]} within {timeout} s;"
                        f" events={self.events[-5:]} stderr={self.stderr[-5:]}"
                    )
                self._cond.wait(min(left, 0.1))

    def wait_line(self, predicate: Callable[[str], bool], *, timeout: float = 15.0) -> str:
        """The first line of output (JSON or not) that matches."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self._stdout_done:
                    raise AssertionError(
                        f"no matching line from {self.argv[:3]} within {timeout} s;"
                        f" lines={self.lines[-5:]} stderr={self.stderr[-5:]}"
                    )
                self._cond.wait(min(left, 0.1))

    def write(self, line: str) -> None:
        """A line on the process's stdin (started with ``stdin=True``)."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(line.encode() + b"\n")
        self.popen.stdin.flush()

    def count(self, kind: str) -> int:
        with self._cond:
            return sum(1 for e in self.events if e.get("event") == kind)

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(5)
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        # Closing a pipe while its reader thread is inside readline() breaks that read
        # ("PyMemoryView_FromBuffer(): info->buf must not be NULL"), so each pipe is
        # closed only once its reader saw EOF; one a grandchild still holds open is left
        # to its daemon reader, which ends when the pipe does.
        for reader, stream in zip(
            self._readers, (self.popen.stdout, self.popen.stderr), strict=True
        ):
            reader.join(5)
            if stream is not None and not reader.is_alive():
                stream.close()
        return self.popen.returncode


def run(
    argv: Sequence[str],
    *,
    stdin: str | None = None,
    timeout: float = 30.0,
    prefix: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


# ``station start`` as the tests run it: 127.0.0.1, any port, no mDNS, JSON events.
STATION_START = (
    command("station"),
    "start",
    "--host",
    "127.0.0.1",
    "--no-mdns",
    "--port",
    "0",
    "--json",
)


def start_station(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> Proc:
    """``station start`` on 127.0.0.1 (any port, no mDNS, JSON events), once it is ready;
    its control socket is ``tmp_path / "ctl.sock"``."""
    proc = Proc(
        [
            *STATION_START,
            "--control",
            str(tmp_path / "ctl.sock"),
            *extra,
        ],
        env=env,
    )
    proc.wait_for("ready", timeout=30)
    return proc


def kiosk_link(tmp_path: Path) -> str:
    """A fresh one-use link to the kiosk page (``station open``) of the station that
    ``start_station(tmp_path)`` started."""
    result = run([command("station"), "open", "--control", str(tmp_path / "ctl.sock")])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def init_phone(home: Path, *extra: str) -> Path:
    """``medic-phone init`` at ``home``; returns ``home``."""
    result = run([command("medic-phone"), "init", "--home", str(home), *extra])
    assert result.returncode == 0, result.stderr
    return home


def link_phone(station: Proc, home: Path, pair_uri: str, *extra: str) -> Proc:
    """``medic-phone link`` from ``home`` (JSON events), once both sides say paired."""
    phone = Proc([command("medic-phone"), "link", pair_uri, "--home", str(home), "--json", *extra])
    phone.wait_for("paired", timeout=20)
    station.wait_for("paired")
    return phone
