"""Applying the station's commands on a running link: group commit, ack after commit.

Each command is applied exactly once (``PhoneStore.apply_commands``: the command, its
message and the link's cursor in one transaction), and acknowledged to the tunnel only
after that commit. A burst that arrived together is one transaction and one fsync. A
command that arrived after its TTL is kept apart, and the station hears so before the
ack (it never counts such a command as applied) and again when the medic decides.
Every commit that made a message tells the node, which pushes it to the mirror at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from medic_phone.store import IncomingCommand, TypedMessages
from tunnel.errors import QueueFull, SessionClosed
from tunnel.session import PhoneEndpoint
from wire import WireError
from wire.app import Command, Fates, decode, encode
from wire.control import DecideReply, Failure

if TYPE_CHECKING:
    from medic_phone.node import PhoneNode

KIOSK_CHAT = "kiosk"
# A command typed at the kiosk becomes a message in the chat it was typed in, when the
# phone has that chat, or else in the kiosk chat.
TYPED_MESSAGES = TypedMessages("medic (kiosk)", KIOSK_CHAT, "Typed at the kiosk")
UNREADABLE = Command("(unreadable command)")


class CommandApplier:
    """The commands of one running link, applied in bursts."""

    def __init__(self, node: PhoneNode) -> None:
        self._node = node
        self._pending: list[tuple[int, Command]] = []
        self._flusher: asyncio.Task[None] | None = None

    def received(self, seq: int, payload: bytes) -> None:
        """A command arrived (in seq order); it is applied with the rest of its burst."""
        try:
            message = decode(payload)
        except WireError:
            message = UNREADABLE
        self._pending.append((seq, message if isinstance(message, Command) else UNREADABLE))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        node = self._node
        pump, link_id = node.pump, node.link_id
        assert pump is not None and link_id is not None
        await asyncio.sleep(0)  # let the rest of the burst arrive
        while self._pending:
            batch, self._pending = self._pending, []
            endpoint = pump.endpoint
            station = endpoint.station if isinstance(endpoint, PhoneEndpoint) else ""
            now = time.time()
            late = {seq: node.news.expired(c, now) for seq, c in batch}
            applied = await node.store.apply_commands(
                [
                    IncomingCommand(
                        link_id, seq, c.text, station, now, c.chat, late[seq] is not None
                    )
                    for seq, c in batch
                ],
                as_messages=TYPED_MESSAGES,
            )
            new = [item for item, fresh in zip(batch, applied, strict=True) if fresh]
            expired = []
            for seq, command in new:
                over = late[seq]
                if over is None:
                    node.emit({"event": "command", "seq": seq, "text": command.text})
                else:
                    expired.append(seq)
                    node.emit(
                        {
                            "event": "expired",
                            "seq": seq,
                            "late_s": round(over, 1),
                            "ttl": command.ttl,
                        }
                    )
            if pump.endpoint.ended is None:
                if expired:
                    # Said before the ack: the station never counts these as applied.
                    with contextlib.suppress(QueueFull, SessionClosed):
                        await pump.send(encode(Fates(expired=tuple(expired))))
                await pump.acknowledge(batch[-1][0])
            if len(expired) < len(new):
                node.changed_here()  # new messages: the mirror hears at once

    async def decide(self, seq: int, *, confirm: bool) -> DecideReply | Failure:
        """The medic's word on a command kept apart; the station hears it at once."""
        node = self._node
        assert node.pump is not None
        if node.link_id is None:
            return Failure("not linked")
        done = await node.store.decide(
            node.link_id, seq, confirm=confirm, as_messages=TYPED_MESSAGES, now=time.time()
        )
        if not done:
            return Failure(f"seq {seq} is not waiting on this link")
        report = Fates(confirmed=(seq,)) if confirm else Fates(discarded=(seq,))
        with contextlib.suppress(QueueFull, SessionClosed):
            await node.pump.send(encode(report))
        if confirm:
            node.changed_here()
        return DecideReply(seq, "applied" if confirm else "discarded")
