"""The station and the phone as users run them: ``wipe_ms`` and resident memory.

Real processes: ``station start`` (supervisor and a worker per session) and
``medic-phone link``, on 127.0.0.1. Each round pairs a fresh phone, sends commands until
the phone has applied them all, reads the processes' resident memory, then logs the
session out and times how long the worker takes to be gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wire import jsonlines
from wire.control import STATION_REQUESTS, Failure, Logout, LogoutReply, Status, StatusReply

BIN = Path(sys.executable).parent


class BenchProcessError(RuntimeError):
    """A station or phone process did not do what the benchmark needed in time."""


class JsonProcess:
    """A child that prints one JSON event per line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, *argv: str) -> JsonProcess:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        return cls(proc)

    async def wait_for(
        self, kind: str, within: float = 20.0, *, after: int = 0, **match: Any
    ) -> dict[str, Any]:
        """The first such event from index ``after`` of the events seen so far."""
        for event in self.events[after:]:
            if event.get("event") == kind and all(event.get(k) == v for k, v in match.items()):
                return event
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(within):
                while line := await self.proc.stdout.readline():
                    with contextlib.suppress(ValueError):
                        event = json.loads(line)
                        self.events.append(event)
                        if event.get("event") == kind and all(
                            event.get(k) == v for k, v in match.items()
                        ):
                            return dict(event)
        except TimeoutError:
            pass
        raise BenchProcessError(f"no {kind!r} event within {within} s")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchProcessError(f"no VmRSS for pid {pid}")


async def _run(*argv: str, stdin: bytes | None = None) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate(stdin)
    if proc.returncode != 0:
        raise BenchProcessError(f"{Path(argv[0]).name} {argv[1]} failed: {err.decode()[-300:]}")
    return out


def _wait_gone(pidfd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


async def station_figures(rounds: int, commands: int) -> dict[str, float]:
    """Median/max wipe time over ``rounds`` sessions; RSS with ``commands`` mirrored."""
    wipes: list[float] = []
    supervisor_rss: list[float] = []
    worker_rss: list[float] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        ctl = tmp / "ctl.sock"
        station = await JsonProcess.start(
            str(BIN / "station"), "start", "--no-mdns", "--port", "0", "--json",
            "--control", str(ctl),
        )  # fmt: skip
        phone: JsonProcess | None = None
        try:
            await station.wait_for("ready")
            for round_no in range(rounds):
                status = _status(ctl)
                seen = len(station.events)
                home = tmp / f"phone-{round_no}"
                await _run(str(BIN / "medic-phone"), "init", "--home", str(home))
                phone = await JsonProcess.start(
                    str(BIN / "medic-phone"), "link", str(status.pair_uri),
                    "--home", str(home), "--json",
                )  # fmt: skip
                paired = await station.wait_for("paired", after=seen)
                lines = "".join(f"command {i}\n" for i in range(commands)).encode()
                await _run(str(BIN / "station"), "send", "--control", str(ctl), "-", stdin=lines)
                await phone.wait_for("command", 60, seq=commands)
                status = _status(ctl)
                [session] = [s for s in status.sessions if s.session == paired["session"]]
                worker = session.pid
                supervisor_rss.append(rss_mb(status.pid))
                worker_rss.append(rss_mb(worker))
                pidfd = os.pidfd_open(worker)
                try:
                    start = time.perf_counter()
                    reply = await asyncio.to_thread(
                        jsonlines.ask,
                        ctl,
                        Logout(str(paired["session"])),
                        STATION_REQUESTS,
                        LogoutReply,
                    )
                    if isinstance(reply, Failure):
                        raise BenchProcessError(f"logout refused: {reply.error}")
                    if not await asyncio.to_thread(_wait_gone, pidfd, 10.0):
                        raise BenchProcessError("the worker outlived its logout by 10 s")
                    wipes.append((time.perf_counter() - start) * 1000)
                finally:
                    os.close(pidfd)
                await phone.wait_for("logout")
                await phone.stop()
                phone = None
        finally:
            if phone is not None:
                await phone.stop()
            await station.stop()
    return {
        "wipe_ms": sorted(wipes)[len(wipes) // 2],
        "wipe_max_ms": max(wipes),
        "supervisor_rss_mb": max(supervisor_rss),
        "worker_rss_mb": max(worker_rss),
    }


def _status(ctl: Path) -> StatusReply:
    reply = jsonlines.ask(ctl, Status(), STATION_REQUESTS, StatusReply)
    if isinstance(reply, Failure):
        raise BenchProcessError(f"status refused: {reply.error}")
    return reply
