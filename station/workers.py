"""Starting, talking to, and ending session worker processes (supervisor side)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from station import ipc
from station.errors import WorkerProtocolError

STOP_GRACE = 3.0  # seconds a worker has to end after STOP before it is killed


@dataclass
class WorkerInfo:
    """What the supervisor knows of a worker: ids, counts and states, never content."""

    id: int
    started_at: float
    offer_id: str | None = None
    pair_uri: str | None = None
    pair_code: str | None = None
    offer_expires: float | None = None
    session: str | None = None
    fingerprint: str | None = None
    device: str | None = None
    control: str | None = None
    paired_at: float | None = None
    linked: bool = False
    depth: int = 0
    mirrored: int = 0  # messages in the worker's mirror (a count, never content)
    mirror_version: int = 0
    last_input: float = 0.0
    ended_reason: str | None = None
    undelivered: int | None = None
    page: str | None = None  # the session page's address (its worker serves it)
    policy_sent: tuple[float, str] | None = None  # the last logout deadline told
    hardening: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[["WorkerHandle", dict[str, Any]], Awaitable[None]]
DataSink = Callable[[int, bytes], Awaitable[None]]
CloseSink = Callable[[int, str], Awaitable[None]]


class WorkerHandle:
    """One worker process and its pipe."""

    def __init__(
        self,
        info: WorkerInfo,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: ipc.FrameWriter,
    ) -> None:
        self.info = info
        self.process = process
        self._reader = reader
        self._writer = writer
        self.conns: set[int] = set()
        self.reader_task: asyncio.Task[None] | None = None
        self.stop_requested: str | None = None
        self._stop_sent = False

    @classmethod
    async def spawn(
        cls,
        worker_id: int,
        *,
        name: str,
        addresses: list[tuple[str, int]],
        control_dir: str,
        offer_ttl: float,
        queue_limit: int,
        ui_origin: str | None = None,
    ) -> WorkerHandle:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [
            sys.executable,
            "-I",
            "-B",
            "-m",
            "station.worker",
            "--fd",
            str(child.fileno()),
            "--name",
            name,
            "--control-dir",
            control_dir,
            "--offer-ttl",
            str(offer_ttl),
            "--ppid",
            str(os.getpid()),
            "--queue-limit",
            str(queue_limit),
        ]
        if ui_origin is not None:
            argv += ["--ui-origin", ui_origin]
        for host, port in addresses:
            argv += ["--address", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                env=_worker_env(),
            )
        finally:
            child.close()
        reader, raw_writer = await asyncio.open_unix_connection(sock=parent)
        info = WorkerInfo(worker_id, time.time())
        return cls(info, process, reader, ipc.FrameWriter(raw_writer))

    def start(self, on_event: EventSink, on_send: DataSink, on_close: CloseSink) -> None:
        self.reader_task = asyncio.create_task(self._read(on_event, on_send, on_close))

    async def _read(self, on_event: EventSink, on_send: DataSink, on_close: CloseSink) -> None:
        try:
            while True:
                frame = await ipc.read_frame(self._reader)
                if frame is None:
                    break
                if frame.type is ipc.FrameType.SEND:
                    await on_send(frame.conn, frame.body)
                elif frame.type is ipc.FrameType.CLOSE:
                    await on_close(frame.conn, frame.body.decode("ascii", "replace"))
                elif frame.type is ipc.FrameType.EVENT:
                    await on_event(self, frame.json())
                else:
                    raise WorkerProtocolError(f"worker sent a {frame.type.name} frame")
        except (WorkerProtocolError, ConnectionError, ValueError):
            self.kill()

    async def send(self, frame: ipc.Frame) -> bool:
        try:
            await self._writer.write(frame)
        except (ConnectionError, OSError):
            return False
        return True

    def request_stop(self, reason: str) -> None:
        """Mark the worker as ending (the first reason wins); ``stop`` tells it."""
        if self.stop_requested is None:
            self.stop_requested = reason

    async def stop(self, reason: str) -> None:
        """Ask the worker to log out; kill it if it has not ended within the grace."""
        self.request_stop(reason)
        if not self._stop_sent:
            self._stop_sent = True
            body = json.dumps({"reason": self.stop_requested}).encode()
            await self.send(ipc.Frame(ipc.FrameType.STOP, body=body))
        try:
            async with asyncio.timeout(STOP_GRACE):
                await self.process.wait()
        except TimeoutError:
            self.kill()
            await self.process.wait()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)

    async def wait_closed(self) -> int:
        code = await self.process.wait()
        if self.reader_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader_task
        self._writer.close()
        return code


def _worker_env() -> dict[str, str]:
    # A minimal environment: nothing from the operator's shell leaks into a session.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    if "SQLITE_TMPDIR" in os.environ:
        env["SQLITE_TMPDIR"] = os.environ["SQLITE_TMPDIR"]
    return env
