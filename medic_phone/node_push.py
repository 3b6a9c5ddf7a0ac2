"""Pushing the phone's chats and messages to the station's mirror.

A snapshot when the link first comes up, then the changes since the last version the
mirror was sent, each in parts that fit one record. When to push is decided elsewhere
(``medic_phone.chores``); this module does one push when asked. A push the tunnel
cannot take (its queue is full, the session closed) is reported, not retried here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from tunnel.errors import QueueFull, SessionClosed
from wire.app import encode_row, encode_update_parts

if TYPE_CHECKING:
    from medic_phone.node import PhoneNode

ENVELOPE = 1024  # bytes of a record kept for the update's envelope


class Pusher:
    """What the station's mirror was last sent, and sending it more."""

    def __init__(self, node: PhoneNode) -> None:
        self._node = node
        self.pushed_version = 0  # the mirror holds everything up to this version

    async def snapshot(self) -> bool:
        """Push everything the mirror shows (the link's first time up)."""
        version, chats, messages = await self._node.store.snapshot()
        return await self._rows("snapshot", version, chats, messages)

    async def changes(self) -> bool:
        """Push what changed since the last push; False if the tunnel could not take it."""
        version, chats, messages = await self._node.store.changes_since(self.pushed_version)
        if version <= self.pushed_version:
            return True
        return await self._rows("changes", version, chats, messages)

    async def _rows(
        self,
        kind: Literal["snapshot", "changes"],
        version: int,
        chats: list[dict[str, Any]],
        messages: list[dict[str, Any]],
    ) -> bool:
        """Push in parts that each fit one record: a snapshot first, then changes."""
        pump = self._node.pump
        assert pump is not None
        budget = pump.endpoint.max_payload - ENVELOPE
        part: list[str] = []
        size = 0
        for message in messages:
            encoded = encode_row(message)  # once: sized here, sent as it is
            row = len(encoded) + 1
            if part and size + row > budget:
                if not await self._send(encode_update_parts(kind, version, chats, part), None):
                    return False
                kind, chats, part, size = "changes", [], [], 0
            if row <= budget:  # a single message too large for a record is not mirrored
                part.append(encoded)
                size += row
        return await self._send(encode_update_parts(kind, version, chats, part), version)

    async def _send(self, payload: bytes, version: int | None) -> bool:
        pump = self._node.pump
        assert pump is not None
        try:
            await pump.send(payload)
        except (QueueFull, SessionClosed):
            return False  # the next snapshot or change push supersedes this one
        if version is not None:
            self.pushed_version = max(self.pushed_version, version)
        return True
