"""The reliable channel: sequence numbers, cumulative acks, resend on resume.

Pure bookkeeping, no crypto: everything submitted waits in the outage queue until the
peer acknowledges it; on each new link the peer states its receive cursor and the rest
is sent again; the receiving side delivers each sequence number once, in order.
"""

from __future__ import annotations

from collections import deque

from tunnel.errors import MalformedRecord, ReorderedRecord, UsageError
from tunnel.queue import OutageQueue


class ReliableChannel:
    def __init__(
        self,
        queue: OutageQueue,
        *,
        window: int = 1024,
        next_seq: int = 1,
        delivered: int = 0,
        may_renumber: bool = False,
    ) -> None:
        if window < 1 or next_seq < 1 or delivered < 0:
            raise UsageError("window, next_seq or delivered out of range")
        self._queue = queue
        self.window = window
        # Only a sender whose messages are idempotent state (the phone's mirror pushes)
        # may renumber them after a restart; a station's commands keep their seqs.
        self.may_renumber = may_renumber
        self.next_seq = max(next_seq, queue.last_seq + 1)
        self.delivered = delivered
        first = next(iter(queue.items()), None)
        self.acked = first[0] - 1 if first is not None else self.next_seq - 1
        self.lost = 0  # ours the peer never got and we no longer hold (see rewind)
        self._sent_through = self.acked  # highest seq written to the current link
        self._unsent: deque[tuple[int, bytes]] = deque(queue.items())

    @property
    def in_flight(self) -> int:
        return self._sent_through - self.acked

    @property
    def sent_through(self) -> int:
        """The highest seq written to the current link (resent ones count again)."""
        return self._sent_through

    @property
    def queued(self) -> int:
        """Submitted and not yet acknowledged (in flight or waiting)."""
        return self._queue.depth

    def submit(self, payload: bytes) -> int:
        seq = self.next_seq
        self._queue.put(seq, payload)  # raises QueueFull: nothing changes then
        self.next_seq += 1
        self._unsent.append((seq, payload))
        return seq

    def take_sendable(self) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        room = self.window - self.in_flight
        while self._unsent and room > 0:
            seq, payload = self._unsent.popleft()
            out.append((seq, payload))
            self._sent_through = seq
            room -= 1
        return out

    def on_ack(self, ack: int) -> int:
        if ack <= self.acked:
            return 0
        if ack > self._sent_through:
            raise MalformedRecord("ack beyond what was sent")
        newly = ack - self.acked
        self.acked = ack
        self._queue.ack_through(ack)
        return newly

    def on_data(self, seq: int, payload: bytes) -> bool:
        if seq <= self.delivered:
            return False
        if seq != self.delivered + 1:
            raise ReorderedRecord("sequence gap on an ordered link")
        self.delivered = seq
        return True

    def gap(self, peer_delivered: int) -> tuple[int, int] | None:
        """Sends the peer acknowledged before but no longer has: ``(first, last)``.

        A peer cursor behind our acknowledged cursor means the peer's store went back
        (restored from an older copy): those messages are gone from both sides."""
        if peer_delivered < self.acked:
            return peer_delivered + 1, self.acked
        return None

    def rewind(self, peer_delivered: int) -> None:
        """A new link: the peer has everything through ``peer_delivered``; resend the rest.

        A cursor outside ``[acked, next_seq)`` only happens after our own restart from
        a saved state older than our last sends (the peer's cursor comes from an
        authenticated resume, so it is the truth), or after the peer's store went back
        (``gap``). A channel that may renumber (the phone's pushes: idempotent state)
        then renumbers what it still holds to follow the peer's cursor: ahead, the peer
        got messages we no longer count; behind, it never got messages we no longer
        hold (``lost``). A channel that may not (the station's commands: a seq is fixed
        when it is queued) refuses: its caller names the gap instead.
        """
        if peer_delivered >= self.next_seq or peer_delivered < self.acked:
            if not self.may_renumber:
                raise UsageError(
                    f"peer cursor {peer_delivered} outside [{self.acked}, {self.next_seq}):"
                    " this channel never renumbers"
                )
            if peer_delivered < self.acked:
                self.lost += self.acked - peer_delivered
            self.next_seq = self._queue.renumber(peer_delivered + 1)
            self.acked = peer_delivered
        elif peer_delivered > self.acked:
            self._queue.ack_through(peer_delivered)
            self.acked = peer_delivered
        self._sent_through = self.acked
        self._unsent = deque((s, p) for s, p in self._queue.items() if s > self.acked)
