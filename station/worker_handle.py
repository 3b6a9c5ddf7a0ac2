"""Starting, talking to, and ending session worker processes (supervisor side).

Nothing here waits on a worker. Frames to a worker go into its pipe's buffer at once;
only a phone's relay task (``send``) waits for room, and only up to a deadline, so
one slow worker slows only its own phone. A logout starts its deadline when it is
decided: STOP, then SIGKILL when the deadline passes, whatever state the worker is in
(stopped, wedged, or not reading its pipe).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from wire import WireError, pipe

# A worker has this long after the logout decision to end by itself; then SIGKILL.
# Its own drain of the queue (worker.DRAIN_GRACE) fits inside.
STOP_GRACE = 0.8
# A phone's relay waits at most this long for room in a worker's pipe, then drops
# that phone's socket (the phone resumes); the pipe's buffer is bounded by it.
PIPE_HIGH_WATER = 4 * 1024 * 1024
PIPE_DEADLINE = 5.0


@dataclass
class WorkerInfo:
    """What the supervisor knows of a worker: ids, counts and states, never content."""

    id: int
    started_at: float
    offer_id: str | None = None
    pair_uri: str | None = None
    pair_code: str | None = None
    offer_expires: float | None = None
    previous_offer_id: str | None = None  # still valid during its grace after a rotation
    code_paused_until: float = 0.0  # monotonic: code pairing paused after wrong codes
    session: str | None = None
    fingerprint: str | None = None
    device: str | None = None
    control: str | None = None
    paired_at: float | None = None
    linked: bool = False
    mirrored: int = 0  # messages in the worker's mirror (a count, never content)
    mirror_version: int = 0
    last_input: float = 0.0
    ended_reason: str | None = None
    logout_emitted: bool = False
    page: str | None = None  # the session page's address (its worker serves it)
    device_name: str | None = None  # the name the phone was given at `init`
    battery: int | None = None
    commands: dict[str, int] = field(default_factory=dict)  # counts by fate
    oldest_queued_at: float | None = None  # unix time, of the oldest not yet applied
    last_heard: float | None = None  # unix time
    policy_sent: tuple[float, str] | None = None  # the last logout deadline told
    hardening: pipe.Hardening | None = None
    ledger: CommandLedger = field(default_factory=lambda: CommandLedger())


class CommandLedger:
    """Which commands the phone has not acknowledged: seqs from the worker's events.

    The supervisor keeps its own account so that a worker killed at logout (stopped,
    wedged) still gets an exact ``undelivered`` list: the worker reports each command's
    seq before it answers the sender, and every ack, so nothing in flight is missed.
    """

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self.acked = 0
        self.queued_total = 0

    def queued(self, seq: int) -> None:
        if seq > self.acked and (not self._pending or seq > self._pending[-1]):
            self._pending.append(seq)
            self.queued_total += 1

    def acked_through(self, through: int) -> None:
        self.acked = max(self.acked, through)
        while self._pending and self._pending[0] <= self.acked:
            self._pending.popleft()

    def settle(self, unacked: list[int]) -> None:
        """The worker's final word: exactly these seqs were never acknowledged."""
        self._pending = deque(sorted(set(unacked)))

    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def undelivered(self) -> list[int]:
        return list(self._pending)


EventSink = Callable[["WorkerHandle", pipe.WorkerEvent], None]
DataSink = Callable[[int, bytes], None]
CloseSink = Callable[[int, str], None]


class WorkerHandle:
    """One worker process and its pipe."""

    def __init__(
        self,
        info: WorkerInfo,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.info = info
        self.process = process
        self._reader = reader
        self._writer = writer
        self.conns: set[int] = set()
        self.reader_task: asyncio.Task[None] | None = None
        self.stop_requested: str | None = None
        self.stop_decided_at: float | None = None
        self._stop_sent = False
        self._pipe_broken = False
        self.protocol_error: str | None = None

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
        command_ttl: float | None = None,
        extra: Sequence[str] = (),
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
        if command_ttl is not None:
            argv += ["--command-ttl", repr(command_ttl)]
        for host, port in addresses:
            argv += ["--address", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        argv += extra
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
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        info = WorkerInfo(worker_id, time.time())
        return cls(info, process, reader, writer)

    def start(self, on_event: EventSink, on_send: DataSink, on_close: CloseSink) -> None:
        self.reader_task = asyncio.create_task(self._read(on_event, on_send, on_close))

    async def _read(self, on_event: EventSink, on_send: DataSink, on_close: CloseSink) -> None:
        # The sinks never wait: each event is handled as it arrives, whatever the
        # state of the phone's socket or of any other session.
        try:
            while (message := await pipe.read(self._reader)) is not None:
                match message:
                    case pipe.Send(conn, data):
                        on_send(conn, data)
                    case pipe.CloseConn(conn, reason):
                        on_close(conn, reason)
                    case (
                        pipe.Open()
                        | pipe.Data()
                        | pipe.Lost()
                        | pipe.Stop()
                        | pipe.PolicyDeadline()
                    ):
                        raise WireError(f"a worker sent a {type(message).__name__}")
                    case _:
                        on_event(self, message)
        except (WireError, ConnectionError) as exc:
            # A worker that breaks the pipe's framing is broken: it goes.
            self.protocol_error = str(exc)
            self.kill()

    # -- frames to the worker -------------------------------------------------------

    def post(self, message: pipe.ToWorker) -> bool:
        """Put a frame in the pipe's buffer without waiting; False if the pipe is gone."""
        if self._pipe_broken or self._writer.is_closing():
            return False
        try:
            self._writer.write(pipe.encode(message))
        except (ConnectionError, OSError, RuntimeError):
            self._pipe_broken = True
            return False
        return True

    async def send(self, message: pipe.ToWorker) -> bool:
        """Post a frame, then wait (up to ``PIPE_DEADLINE``) while the pipe is over its
        high-water mark. For a phone's relay task: its phone waits, nobody else does."""
        if not self.post(message):
            return False
        transport = self._writer.transport
        if transport.get_write_buffer_size() <= PIPE_HIGH_WATER:
            return True
        try:
            async with asyncio.timeout(PIPE_DEADLINE):
                await self._writer.drain()
        except TimeoutError:
            return False
        except (ConnectionError, OSError):
            self._pipe_broken = True
            return False
        return True

    # -- ending ----------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Mark the worker as ending (the first reason wins) and start its deadline."""
        if self.stop_requested is None:
            self.stop_requested = reason
            self.stop_decided_at = asyncio.get_running_loop().time()

    async def stop(self, reason: str) -> None:
        """Log the worker out: STOP at once, SIGKILL at the deadline; returns when the
        process is gone and its last events have been read."""
        self.request_stop(reason)
        assert self.stop_decided_at is not None
        if not self._stop_sent:
            self._stop_sent = True
            self.post(pipe.Stop(self.stop_requested or reason))
        try:
            async with asyncio.timeout_at(self.stop_decided_at + STOP_GRACE):
                await self.process.wait()
        except TimeoutError:
            self.kill()
        await self.wait_closed()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)

    async def wait_closed(self) -> int:
        code = await self.process.wait()
        if self.reader_task is not None:
            # The process is gone; what it wrote before is still in the pipe: read it.
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
