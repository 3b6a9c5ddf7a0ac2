"""A real ``station start`` for the benchmark, on 127.0.0.1 without mDNS, and the JSON-lines
control sockets it and its workers answer on.

The station's events (``--json``, one per line) are read as they come; a waiter asks
for the next matching one. ``pin`` runs it under ``taskset`` (one core: a small kiosk).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench import procinfo
from wire.codec import Registry
from wire.control import STATION_REQUESTS, Failure, Status, StatusReply, decode_reply

BIN = Path(sys.executable).parent
Event = dict[str, Any]
R = TypeVar("R")


class BenchProcessError(RuntimeError):
    """A station or phone did not do what the benchmark needed in time."""


class ControlClient:
    """One connection to a control socket (``wire.control``): typed requests in turn."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, path: Path | str) -> ControlClient:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 22)
        return cls(reader, writer)

    async def ask(
        self, request: object, requests: Registry, expected: type[R], within: float = 30.0
    ) -> R:
        """The reply to ``request``; a refusal (``Failure``) is a benchmark error."""
        async with self._lock, asyncio.timeout(within):
            self._writer.write(requests.encode(request) + b"\n")
            line = await self._reader.readline()
        if not line:
            raise BenchProcessError(f"the control socket closed on {type(request).__name__}")
        reply = decode_reply(line, expected)
        if isinstance(reply, Failure):
            raise BenchProcessError(f"{type(request).__name__} refused: {reply.error}")
        return reply

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


class Station:
    """``station start`` as a child process, with its events and its control socket."""

    def __init__(self, proc: asyncio.subprocess.Process, control: Path, stderr: Path) -> None:
        self.proc = proc
        self.control_path = control
        self.stderr_path = stderr
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.control: ControlClient | None = None
        self.port = 0

    @classmethod
    async def start(
        cls, tmp: Path, *, max_sessions: int = 16, pin: str | None = None, ui: bool = True
    ) -> Station:
        control = tmp / "ctl.sock"
        argv = [
            str(BIN / "station"), "start", "--host", "127.0.0.1", "--no-mdns", "--port", "0",
            "--json", "--control", str(control), "--max-sessions", str(max_sessions),
        ]  # fmt: skip
        if not ui:
            argv.append("--no-ui")
        if pin is not None:
            argv = ["taskset", "-c", pin, *argv]
        stderr = tmp / "station.stderr"
        with stderr.open("wb") as stderr_file:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr_file,
                start_new_session=True,
                limit=1 << 22,
            )
        station = cls(proc, control, stderr)
        try:
            ready = await station.wait_for(lambda e: e.get("event") == "ready", 60)
            station.port = int(ready["port"])
            station.control = await ControlClient.connect(control)
        except BaseException:
            await station.stop()
            raise
        return station

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    self.events.append(event)
                    self._changed.set()
        self._changed.set()

    async def wait_for(
        self, match: Callable[[Event], bool], within: float = 30.0, *, after: int = 0
    ) -> Event:
        """The first event from index ``after`` on that ``match`` accepts."""
        seen = after
        try:
            async with asyncio.timeout(within):
                while True:
                    for event in self.events[seen:]:
                        if match(event):
                            return event
                    seen = max(seen, len(self.events))
                    if self._reader.done():
                        raise BenchProcessError(f"the station exited: {self._last_words()}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pass
        raise BenchProcessError(f"no matching station event within {within} s")

    def _last_words(self) -> str:
        """The end of the station's stderr: why it exited, in its own words."""
        try:
            lines = self.stderr_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no stderr)"
        return " | ".join(lines[-3:]) or "(nothing on stderr)"

    async def ask(self, request: object, expected: type[R]) -> R:
        assert self.control is not None
        return await self.control.ask(request, STATION_REQUESTS, expected)

    async def status(self) -> StatusReply:
        return await self.ask(Status(), StatusReply)

    async def next_offer(self, within: float = 60.0) -> str:
        """The standby worker's pairing URI, once it has one."""
        deadline = time.monotonic() + within
        while True:
            status = await self.status()
            if status.pair_uri:
                return status.pair_uri
            if time.monotonic() > deadline:
                raise BenchProcessError(f"no pairing offer within {within} s")
            await asyncio.sleep(0.02)

    def pids(self) -> list[int]:
        """The supervisor and its workers, alive now."""
        return [self.pid, *procinfo.children(self.pid)]

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.close()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
