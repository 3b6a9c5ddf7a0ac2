"""What flows on the session's link once it is up: messages, acks, pings and notices.

The endpoint (``tunnel.endpoint``) decides which transport is the link and when the
session ends; this part only moves the reliable channel's messages over whatever link
there is, and keeps the caller's outbox. It is a base class of ``Endpoint`` rather than
an object of its own because both halves read the same few fields on every record (the
link, the ack cursor, the outbox) and the record path is the hot one.

Acks are cumulative and cheap to delay: a burst is acknowledged by one frame (when the
caller says its input is idle, or after ``ack_delay``), and a backlog goes as runs of
consecutive messages that each fill a record.
"""

from __future__ import annotations

from typing import Generic

from tunnel.channel import ReliableChannel
from tunnel.conn import Conn, Driver, Outbox
from tunnel.errors import UsageError
from tunnel.events import Acked, Event, MessageReceived, NoticeReceived
from tunnel.frames import (
    DATA_OVERHEAD,
    MAX_RUN,
    RUN_ITEM_OVERHEAD,
    RUN_OVERHEAD,
    Ack,
    Data,
    DataRun,
    Frame,
    Notice,
    Ping,
    Pong,
    encode_frame,
)
from tunnel.queue import OutageQueue
from tunnel.records import OVERHEAD as RECORD_OVERHEAD
from tunnel.settings import Settings

# Every frame but Close, which carries no ack.
LinkFrame = Data | DataRun | Ack | Ping | Pong | Notice


class DataPath(Generic[Driver]):
    """The reliable channel over the current link, and the outbox the caller drains."""

    def __init__(self, settings: Settings, queue: OutageQueue, channel: ReliableChannel) -> None:
        self.settings = settings
        self._queue = queue
        self.channel = channel
        self._active: Conn[Driver] | None = None  # the link, if one is up
        self._out = Outbox()
        self._acked_cursor = 0  # what we may acknowledge (durable, on the phone)
        self._ack_sent = 0
        self._ack_due: float | None = None

    # -- what the application does -----------------------------------------------------

    def _submit(self, payload: bytes, now: float) -> int:
        if len(payload) > self.max_payload:
            raise UsageError(
                f"a message of {len(payload)} bytes does not fit in one record"
                f" (at most {self.max_payload}): split it"
            )
        seq = self.channel.submit(payload)
        self._flush(now)
        return seq

    def acknowledge(self, seq: int, now: float) -> None:
        """Manual-ack mode: the application has durably applied everything through ``seq``.

        The ack goes at once: the application batched already (one commit, one ack)."""
        if seq > self.channel.delivered:
            raise UsageError("acknowledging a message that was never delivered")
        if seq > self._acked_cursor:
            self._acked_cursor = seq
            self._ack_due = now
        self._flush(now)

    def input_idle(self, now: float) -> None:
        """The caller has fed everything its transports had buffered: acknowledge now.

        A burst read in one go is acknowledged by one frame, and a lone message at
        once, instead of after ``ack_delay`` (which stays as the fallback for callers
        that never say so)."""
        if self._ack_due is not None:
            self._ack_due = now
            self._flush(now)

    def notify(self, payload: bytes, now: float) -> bool:
        """Send a notice (latest-state, unsequenced) if the link is up; False if not.

        Nothing is queued: the caller sends its current state again on ``LinkUp``."""
        if self._active is None:
            return False
        if len(payload) > self.max_payload:
            raise UsageError("a notice must fit in one record")
        self._send_frame(self._active, Notice(self._acked_cursor, payload), now)
        self._flush(now)
        return True

    # -- what the caller takes out ------------------------------------------------------

    @property
    def has_output(self) -> bool:
        """Whether events, bytes or close requests wait to be taken."""
        return bool(self._out.data or self._out.events or self._out.closes)

    def data_to_send(self) -> list[tuple[int, bytes]]:
        out, self._out.data = self._out.data, []
        return out

    def close_requests(self) -> list[tuple[int, str]]:
        out, self._out.closes = self._out.closes, []
        return out

    def events(self) -> list[Event]:
        out, self._out.events = self._out.events, []
        return out

    @property
    def max_payload(self) -> int:
        """The largest message ``send`` takes: a record less its header, tag and frame."""
        return self.settings.max_record - RECORD_OVERHEAD - DATA_OVERHEAD

    @property
    def undelivered(self) -> int:
        """Messages we sent that the peer has not acknowledged (queued or in flight)."""
        return self._queue.depth

    @property
    def queue(self) -> OutageQueue:
        return self._queue

    # -- frames in -----------------------------------------------------------------------

    def _on_frame(self, c: Conn[Driver], frame: LinkFrame, now: float) -> None:
        """A frame on the link. Close is the session's business (``Endpoint._on_close``)."""
        if self.channel.on_ack(frame.ack):
            self._out.events.append(Acked(self.channel.acked))
        if isinstance(frame, Data):
            self._on_data(frame.seq, frame.payload, now)
        elif isinstance(frame, DataRun):
            for i, payload in enumerate(frame.payloads):
                self._on_data(frame.first_seq + i, payload, now)
        elif isinstance(frame, Ping):
            self._send_frame(c, Pong(self._acked_cursor, frame.token), now)
        elif isinstance(frame, Notice):
            self._out.events.append(NoticeReceived(frame.payload))

    def _on_data(self, seq: int, payload: bytes, now: float) -> None:
        if self.channel.on_data(seq, payload):
            self._out.events.append(MessageReceived(seq, payload))
            if self.settings.auto_ack:
                self._acked_cursor = self.channel.delivered
                self._arm_ack(now)

    # -- frames out ----------------------------------------------------------------------

    def _send_frame(self, c: Conn[Driver], frame: Frame, now: float) -> None:
        if c.sender is None:
            raise UsageError(f"transport {c.id} is {c.state.value} without keys")
        self._out.data.append((c.id, c.sender.seal(encode_frame(frame))))
        c.last_sent = now
        self._ack_sent = max(self._ack_sent, getattr(frame, "ack", 0))

    def _send_runs(self, c: Conn[Driver], sendable: list[tuple[int, bytes]], now: float) -> None:
        """A backlog goes as runs of consecutive messages, each filling one record."""
        budget = self.max_payload + DATA_OVERHEAD - RUN_OVERHEAD
        run: list[bytes] = []
        first = sendable[0][0]
        size = 0
        for seq, payload in sendable:
            cost = RUN_ITEM_OVERHEAD + len(payload)
            if run and (size + cost > budget or len(run) == MAX_RUN):
                self._send_frame(c, self._run_frame(first, run), now)
                run, first, size = [], seq, 0
            run.append(payload)
            size += cost
        self._send_frame(c, self._run_frame(first, run), now)

    def _run_frame(self, first: int, payloads: list[bytes]) -> Data | DataRun:
        if len(payloads) == 1:
            return Data(first, self._acked_cursor, payloads[0])
        return DataRun(first, self._acked_cursor, tuple(payloads))

    def _arm_ack(self, now: float) -> None:
        # Ack at once when a quarter window is waiting, else after a short delay so
        # that a burst is acknowledged by one frame or by the data flowing back.
        if self._acked_cursor - self._ack_sent >= max(1, self.settings.window // 4):
            self._ack_due = now
        elif self._ack_due is None:
            self._ack_due = now + self.settings.ack_delay

    def _flush(self, now: float) -> None:
        c = self._active
        if c is None:
            # No link: the next activation acknowledges everything anyway.
            self._ack_due = None
            return
        sendable = self.channel.take_sendable()
        if len(sendable) == 1:
            seq, payload = sendable[0]
            self._send_frame(c, Data(seq, self._acked_cursor, payload), now)
        elif sendable:
            self._send_runs(c, sendable, now)
        if self._ack_due is not None and self._ack_due <= now:
            self._ack_due = None
            if self._acked_cursor > self._ack_sent:
                self._send_frame(c, Ack(self._acked_cursor), now)
