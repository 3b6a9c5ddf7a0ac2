"""The running phone node behind ``medic-phone link``.

It pairs (or resumes a link it already has), then stays linked: it reconnects and
resumes across drops until logout or Ctrl-C. Each station command is applied exactly
once (the command and the receive cursor in one SQLite transaction, acknowledged to
the tunnel only after that commit), and the phone's chats and messages are pushed to
the station: a snapshot when the link comes up, then the changes since.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medic_phone.errors import PhoneError
from medic_phone.store import IncomingCommand, PhoneStore, TypedMessages
from station.mirror import Command, MirrorError, decode_command, encode_update
from tunnel.aio.pump import EndpointPump
from tunnel.aio.websocket import PhoneConnector
from tunnel.errors import QueueFull, SessionClosed
from tunnel.events import (
    Event,
    LinkDown,
    LinkUp,
    MessageReceived,
    Paired,
    PairingFailed,
    SessionEnded,
    Settings,
    StateChanged,
)
from tunnel.identity import PhoneIdentity
from tunnel.session import PhoneEndpoint, PhoneState

PUSH_INTERVAL = 0.2  # seconds between checks for local changes to push
KIOSK_CHAT = "kiosk"
# A command typed at the kiosk becomes a message in the chat it was typed in, when the
# phone has that chat, or else in the kiosk chat.
_TYPED = TypedMessages("medic (kiosk)", KIOSK_CHAT, "Typed at the kiosk")
Emit = Callable[[dict[str, Any]], None]


class LinkFailed(PhoneError):
    """Pairing or linking could not complete (wrong code, used offer, station gone)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to link: from a URI, a code plus discovery, or a saved link."""

    key: str  # what identifies this pairing in the store: the offer id or the code
    urls: tuple[str, ...]
    station: str
    uri_offer: tuple[bytes, bytes, bytes] | None = None
    code: str | None = None


class PhoneNode:
    def __init__(
        self,
        store: PhoneStore,
        identity: PhoneIdentity,
        emit: Emit,
        *,
        home: Path,
        settings: Settings | None = None,
    ) -> None:
        self.store = store
        self.identity = identity
        self.emit = emit
        self.home = home
        self.settings = settings or Settings(auto_ack=False)
        self.link_id: str | None = None
        self.pump: EndpointPump | None = None
        self._pushed_version = 0
        self._links_up = 0
        self._ended: str | None = None
        self._pairing_failed: str | None = None
        self._pending: list[tuple[int, Command]] = []
        self._flusher: asyncio.Task[None] | None = None

    # -- running -----------------------------------------------------------------------

    async def run(self, target: Target) -> int:
        saved = await self.store.find_link(target.key)
        if saved is not None:
            link_id, blob, delivered = saved
            state = PhoneState.from_bytes(blob)
            state = PhoneState(
                state.session_id, state.secret, state.next_seq, delivered, state.station
            )
            endpoint = PhoneEndpoint(self.settings, state=state)
            self.link_id = link_id
        else:
            endpoint = PhoneEndpoint(
                self.settings,
                identity=self.identity,
                uri_offer=target.uri_offer,
                code=target.code,
            )
        self._target = target
        self.pump = EndpointPump(endpoint, self._on_event)
        urls = list(target.urls)
        index = 0

        def next_url() -> str:
            nonlocal index
            url = urls[index % len(urls)]
            index += 1
            return url

        connector = PhoneConnector(self.pump, next_url)
        control = await self._open_control()
        pusher = asyncio.create_task(self._push_loop())
        try:
            await connector.run()
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
            await self.pump.aclose()
            control.close()
            with contextlib.suppress(FileNotFoundError):
                (self.home / "node.sock").unlink()
        if self._pairing_failed is not None:
            raise LinkFailed(f"pairing failed: {self._pairing_failed}")
        return 0

    # -- tunnel events -----------------------------------------------------------------

    async def _on_event(self, event: Event) -> None:
        assert self.pump is not None
        endpoint = self.pump.endpoint
        assert isinstance(endpoint, PhoneEndpoint)
        if isinstance(event, Paired):
            self.link_id = event.session_id.hex()
            await self.store.create_link(self.link_id, station=event.station, key=self._target.key)
            self.emit({"event": "paired", "station": event.station, "session": self.link_id})
        elif isinstance(event, StateChanged):
            assert self.link_id is not None
            await self.store.save_link_state(self.link_id, endpoint.export_state().to_bytes())
        elif isinstance(event, LinkUp):
            self._links_up += 1
            if self._links_up > 1 or event.resumed:
                self.emit({"event": "link_up"})
            if self._links_up == 1:
                await self._push_snapshot()
        elif isinstance(event, LinkDown):
            self.emit({"event": "link_down"})
        elif isinstance(event, MessageReceived):
            await self._apply(event.seq, event.payload)
        elif isinstance(event, PairingFailed):
            self._pairing_failed = event.reason
        elif isinstance(event, SessionEnded):
            self._ended = event.reason
            if self.link_id is not None:
                await self.store.end_link(self.link_id, event.reason)
                self.emit({"event": "logout", "reason": _logout_reason(event)})

    async def _apply(self, seq: int, payload: bytes) -> None:
        # Group commit: a burst of commands is applied in one transaction (one fsync),
        # and acknowledged to the tunnel only after that commit.
        try:
            command = decode_command(payload)
        except MirrorError:
            command = Command("(unreadable command)")
        self._pending.append((seq, command))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        assert self.pump is not None and self.link_id is not None
        await asyncio.sleep(0)  # let the rest of the burst arrive
        while self._pending:
            batch, self._pending = self._pending, []
            endpoint = self.pump.endpoint
            station = endpoint.station if isinstance(endpoint, PhoneEndpoint) else ""
            now = time.time()
            applied = await self.store.apply_commands(
                [
                    IncomingCommand(self.link_id, seq, c.text, station, now, c.chat)
                    for seq, c in batch
                ],
                as_messages=_TYPED,
            )
            new = [item for item, fresh in zip(batch, applied, strict=True) if fresh]
            for seq, command in new:
                self.emit({"event": "command", "seq": seq, "text": command.text})
            if self.pump.endpoint.ended is None:
                await self.pump.acknowledge(batch[-1][0])

    # -- pushing the phone's state ------------------------------------------------------

    async def _push_snapshot(self) -> None:
        version, chats, messages = await self.store.snapshot()
        await self._push_rows("snapshot", version, chats, messages)

    async def _push_loop(self) -> None:
        while True:
            await asyncio.sleep(PUSH_INTERVAL)
            if self.pump is None or self.pump.endpoint.session_id is None:
                continue
            if self._links_up == 0:
                continue
            version, chats, messages = await self.store.changes_since(self._pushed_version)
            if version > self._pushed_version:
                await self._push_rows("changes", version, chats, messages)

    async def _push_rows(
        self, kind: str, version: int, chats: list[dict[str, Any]], messages: list[dict[str, Any]]
    ) -> None:
        """Push in parts that each fit one record: a snapshot first, then changes."""
        assert self.pump is not None
        budget = self.pump.endpoint.max_payload - 1024  # room for the envelope
        part: list[dict[str, Any]] = []
        size = 0
        for message in messages:
            row = len(json.dumps(message)) + 1
            if part and size + row > budget:
                await self._push(encode_update(kind, version, chats, part), None)
                kind, chats, part, size = "changes", [], [], 0
            if row <= budget:  # a single message too large for a record is not mirrored
                part.append(message)
                size += row
        await self._push(encode_update(kind, version, chats, part), version)

    async def _push(self, payload: bytes, version: int | None) -> None:
        assert self.pump is not None
        try:
            await self.pump.send(payload)
        except (QueueFull, SessionClosed):
            return  # the next snapshot or change push supersedes this one
        if version is not None:
            self._pushed_version = max(self._pushed_version, version)

    # -- local control (unlink) --------------------------------------------------------

    async def _open_control(self) -> asyncio.AbstractServer:
        path = self.home / "node.sock"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self._handle_control, path=str(path))
        finally:
            os.umask(old)
        return server

    async def _handle_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await reader.readline()
            request = json.loads(line or b"{}")
            reply: dict[str, object]
            if request.get("op") == "unlink" and self.pump is not None:
                await self.pump.close("remote")
                reply = {"ok": True}
            else:
                reply = {"ok": False, "error": "unknown request"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()


def _logout_reason(event: SessionEnded) -> str:
    if not event.by_peer:
        return "remote" if event.reason == "remote" else event.reason
    return event.reason
