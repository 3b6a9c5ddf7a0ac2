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
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from medic_phone.connect import Linker
from medic_phone.errors import PhoneError
from medic_phone.link_control import ControlSocket, LinkLock, link_tag
from medic_phone.station_news import StationNews, device_notice
from medic_phone.store import IncomingCommand, PhoneStore, TypedMessages
from medic_phone.targets import Target
from tunnel.aio.pump import EndpointPump
from tunnel.errors import QueueFull, SessionClosed
from tunnel.events import (
    AttemptFailed,
    Event,
    LinkDown,
    LinkUp,
    MessageReceived,
    NoticeReceived,
    Paired,
    PairingFailed,
    ResumeGap,
    SessionEnded,
    Settings,
    StateChanged,
)
from tunnel.identity import PhoneIdentity
from tunnel.refusal import gap_message
from tunnel.session import PhoneEndpoint, PhoneState
from wire import WireError
from wire.app import (
    Command,
    Fates,
    Policy,
    Receipt,
    ReceiptKey,
    decode,
    encode,
    encode_row,
    encode_update_parts,
)
from wire.control import (
    Decide,
    DecideReply,
    Failure,
    Info,
    InfoReply,
    LogoutDeadline,
    Unlink,
    UnlinkReply,
)

PUSH_INTERVAL = 0.2  # seconds between checks for local changes to push
CONTACT_DELAY = 1.0  # seconds before the last contact with the station is written down
KIOSK_CHAT = "kiosk"
# A command typed at the kiosk becomes a message in the chat it was typed in, when the
# phone has that chat, or else in the kiosk chat.
TYPED_MESSAGES = TypedMessages("medic (kiosk)", KIOSK_CHAT, "Typed at the kiosk")
Emit = Callable[[dict[str, Any]], None]


class LinkFailed(PhoneError):
    """Pairing or linking could not complete (wrong code, used offer, station gone)."""


__all__ = ["LinkFailed", "PhoneNode", "Target"]


class PhoneNode:
    def __init__(
        self,
        store: PhoneStore,
        identity: PhoneIdentity,
        emit: Emit,
        *,
        home: Path,
        settings: Settings | None = None,
        device_name: str = "medic-phone",
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
        self._gap: str | None = None  # a resume gap the station named
        self._pending: list[tuple[int, Command]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._ended_event = asyncio.Event()
        self._ended_how: SessionEnded | None = None
        self.news = StationNews()
        self.device_name = device_name
        self.linker: Linker | None = None
        self.last_contact: float | None = None
        self._contact_writer: asyncio.Task[None] | None = None

    # -- running -----------------------------------------------------------------------

    async def run(self, target: Target) -> int:
        # One process per link: a second `link` of it is refused, never raced.
        lock = LinkLock.acquire(self.home, target.key)
        try:
            return await self._run(target)
        finally:
            lock.release()

    async def _run(self, target: Target) -> int:
        saved = await self.store.find_link(target.key)
        if saved is not None:
            link_id, blob, delivered = saved
            state = PhoneState.from_bytes(blob)
            state = PhoneState(
                state.session_id,
                state.secret,
                state.next_seq,
                delivered,
                state.station,
                state.addresses,
            )
            endpoint = PhoneEndpoint(self.settings, state=state, parallel=True)
            self.link_id = link_id
        else:
            endpoint = PhoneEndpoint(
                self.settings,
                identity=self.identity,
                uri_offer=target.uri_offer,
                code=target.code,
                parallel=True,
            )
        self._target = target
        self.pump = EndpointPump(endpoint, self._on_event)
        self.linker = linker = Linker(
            self.pump,
            target,
            self.emit,
            persist=self._save_state,
            saved_addresses=endpoint.addresses,
        )
        control = ControlSocket(self.home / f"link-{link_tag(target.key)}.sock", self._request)
        await control.start()
        pusher = asyncio.create_task(self._push_loop())
        try:
            await linker.run()
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
            if self._contact_writer is not None and not self._contact_writer.done():
                self._contact_writer.cancel()
                await self._write_contact(0)  # the last contact, before the store closes
            await self.pump.aclose()
            await control.stop()
        if self._pairing_failed is not None:
            raise LinkFailed(f"pairing failed: {self._pairing_failed}")
        if self._gap is not None:
            raise LinkFailed(
                f"resume refused: {self._gap} (was this phone's store restored from an older"
                " copy?); the station keeps the session until it logs out"
            )
        return 0

    # -- tunnel events -----------------------------------------------------------------

    async def _save_state(self) -> None:
        assert self.pump is not None
        endpoint = self.pump.endpoint
        assert isinstance(endpoint, PhoneEndpoint)
        if self.link_id is not None and endpoint.ended is None:
            await self.store.save_link_state(self.link_id, endpoint.export_state().to_bytes())

    async def _on_event(self, event: Event) -> None:
        assert self.pump is not None
        endpoint = self.pump.endpoint
        assert isinstance(endpoint, PhoneEndpoint)
        if isinstance(event, LinkUp | LinkDown | AttemptFailed) and self.linker is not None:
            await self.linker.on_event(event)
        if isinstance(event, Paired):
            self.link_id = event.session_id.hex()
            await self.store.create_link(self.link_id, station=event.station, key=self._target.key)
            self.emit({"event": "paired", "station": event.station, "session": self.link_id})
        elif isinstance(event, StateChanged):
            assert self.link_id is not None
            await self.store.save_link_state(self.link_id, endpoint.export_state().to_bytes())
        elif isinstance(event, NoticeReceived):
            await self._on_notice(event.payload)
        elif isinstance(event, LinkUp):
            self._note_contact()
            await self.pump.notify(encode(device_notice(self.device_name)))
            self._links_up += 1
            if self._links_up > 1 or event.resumed:
                self.emit({"event": "link_up"})
            if self._links_up == 1:
                await self._push_snapshot()
        elif isinstance(event, LinkDown):
            self._note_contact()
            self.emit({"event": "link_down"})
        elif isinstance(event, MessageReceived):
            await self._apply(event.seq, event.payload)
        elif isinstance(event, PairingFailed):
            self._pairing_failed = event.reason
            self.emit({"event": "pairing_failed", "reason": event.reason})
        elif isinstance(event, ResumeGap):
            # Authenticated by the station: this store lost commands it had applied.
            self._gap = gap_message(event.first, event.last)
            self.emit(
                {
                    "event": "resume_gap",
                    "first": event.first,
                    "last": event.last,
                    "reason": self._gap,
                }
            )
        elif isinstance(event, SessionEnded):
            if self.linker is not None:
                await self.linker.on_event(event)
            self._ended_how = event
            self._ended_event.set()
            self._ended = event.reason
            details = endpoint.ended_details
            if details is not None and details.receipt and self.link_id is not None:
                await self._ended_receipt(details.receipt)
            if self.link_id is not None and self._gap is None:
                await self.store.end_link(self.link_id, event.reason)
                self.emit({"event": "logout", "reason": _logout_reason(event)})

    def _note_contact(self) -> None:
        """The station was heard now. The store learns it a moment later, in the
        background (for `medic-phone links` once this process is gone): never on the path
        of a link coming back, where a commit would hold up the resume."""
        self.last_contact = time.time()
        if self._contact_writer is None or self._contact_writer.done():
            self._contact_writer = asyncio.create_task(self._write_contact(CONTACT_DELAY))

    async def _write_contact(self, delay: float) -> None:
        await asyncio.sleep(delay)  # the latest contact of a burst of link changes
        if self.link_id is not None and self.last_contact is not None:
            with contextlib.suppress(PhoneError):
                await self.store.touch_link(self.link_id, self.last_contact)

    async def _apply(self, seq: int, payload: bytes) -> None:
        # Group commit: a burst of commands is applied in one transaction (one fsync),
        # and acknowledged to the tunnel only after that commit.
        try:
            message = decode(payload)
        except WireError:
            message = Command("(unreadable command)")
        command = message if isinstance(message, Command) else Command("(unreadable command)")
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
            late = {seq: self.news.expired(c, now) for seq, c in batch}
            applied = await self.store.apply_commands(
                [
                    IncomingCommand(
                        self.link_id, seq, c.text, station, now, c.chat, late[seq] is not None
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
                    self.emit({"event": "command", "seq": seq, "text": command.text})
                else:
                    expired.append(seq)
                    self.emit(
                        {
                            "event": "expired",
                            "seq": seq,
                            "late_s": round(over, 1),
                            "ttl": command.ttl,
                        }
                    )
            if self.pump.endpoint.ended is None:
                if expired:
                    # Said before the ack: the station never counts these as applied.
                    with contextlib.suppress(QueueFull, SessionClosed):
                        await self.pump.send(encode(Fates(expired=tuple(expired))))
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
        self,
        kind: Literal["snapshot", "changes"],
        version: int,
        chats: list[dict[str, Any]],
        messages: list[dict[str, Any]],
    ) -> None:
        """Push in parts that each fit one record: a snapshot first, then changes."""
        assert self.pump is not None
        budget = self.pump.endpoint.max_payload - 1024  # room for the envelope
        part: list[str] = []
        size = 0
        for message in messages:
            encoded = encode_row(message)  # once: sized here, sent as it is
            row = len(encoded) + 1
            if part and size + row > budget:
                await self._push(encode_update_parts(kind, version, chats, part), None)
                kind, chats, part, size = "changes", [], [], 0
            if row <= budget:  # a single message too large for a record is not mirrored
                part.append(encoded)
                size += row
        await self._push(encode_update_parts(kind, version, chats, part), version)

    async def _push(self, payload: bytes, version: int | None) -> None:
        assert self.pump is not None
        try:
            await self.pump.send(payload)
        except (QueueFull, SessionClosed):
            return  # the next snapshot or change push supersedes this one
        if version is not None:
            self._pushed_version = max(self._pushed_version, version)

    # -- local control (unlink) --------------------------------------------------------

    async def _on_notice(self, payload: bytes) -> None:
        try:
            notice = decode(payload)
        except WireError:
            return  # unsequenced and superseded by the next one: nothing to lose
        if isinstance(notice, Policy):
            self.news.on_policy(notice)
        elif isinstance(notice, ReceiptKey):
            if self.news.learn_key(notice) and self.link_id is not None:
                await self.store.set_receipt_key(self.link_id, notice.key)
        elif isinstance(notice, Receipt):
            await self.keep_receipt(notice)

    async def _ended_receipt(self, raw: bytes) -> None:
        """The receipt the station's authenticated SESSION_ENDED carried (we were away)."""
        assert self.link_id is not None
        if self.news.receipt_key is None:
            key = await self.store.receipt_key(self.link_id)
            if key is not None:
                self.news.learn_key(ReceiptKey(key))
        await self.keep_receipt(Receipt(body=raw[64:], signature=raw[:64]))

    async def keep_receipt(self, receipt: Receipt) -> None:
        """A wipe receipt: checked, kept with the link, and told to the medic."""
        facts = self.news.check_receipt(receipt)
        if facts is None or self.link_id is None or facts.session != self.link_id:
            self.emit({"event": "receipt", "verified": False})
            return
        await self.store.add_receipt(self.link_id, receipt.body, receipt.signature, time.time())
        self.emit(
            {
                "event": "receipt",
                "verified": True,
                "session": facts.session,
                "station": facts.station,
                "reason": facts.reason,
                "ended": facts.ended,
                "undelivered_seqs": list(facts.undelivered),
                "summary": facts.undelivered_text(),
            }
        )

    async def _request(self, request: object) -> object:
        assert self.pump is not None
        endpoint = self.pump.endpoint
        assert isinstance(endpoint, PhoneEndpoint)
        match request:
            case Info():
                return InfoReply(
                    pid=os.getpid(),
                    station=endpoint.station or self._target.station,
                    session=self.link_id,
                    linked=endpoint.linked,
                    logout_pending=endpoint.logout_pending is not None,
                    policy=self._policy(),
                    last_contact=self.last_contact,
                    queued=endpoint.undelivered,
                )
            case Decide(seq, confirm):
                return await self.decide(seq, confirm=confirm)
            case Unlink(wait):
                if not 0 <= wait <= 3600:
                    return Failure("wait must be 0 to 3600 seconds")
                return await self._unlink(wait)
        return Failure(f"not a request of a phone link: {type(request).__name__}")

    def _policy(self) -> LogoutDeadline | None:
        policy = self.news.policy
        return None if policy is None else LogoutDeadline(policy.logout_at, policy.reason)

    async def decide(self, seq: int, *, confirm: bool) -> DecideReply | Failure:
        """The medic's word on a command kept apart; the station hears it at once."""
        assert self.pump is not None
        if self.link_id is None:
            return Failure("not linked")
        done = await self.store.decide(
            self.link_id, seq, confirm=confirm, as_messages=TYPED_MESSAGES, now=time.time()
        )
        if not done:
            return Failure(f"seq {seq} is not waiting on this link")
        report = Fates(confirmed=(seq,)) if confirm else Fates(discarded=(seq,))
        with contextlib.suppress(QueueFull, SessionClosed):
            await self.pump.send(encode(report))
        return DecideReply(seq, "applied" if confirm else "discarded")

    async def _unlink(self, wait: float) -> UnlinkReply:
        """Log the station out and say whether it heard: the session ends only when the
        station answers our Close; until then the logout is owed and goes again on
        every reconnection, also after ``wait`` has run out."""
        assert self.pump is not None
        endpoint = self.pump.endpoint
        assert isinstance(endpoint, PhoneEndpoint)
        if endpoint.session_id is None:
            await self.pump.close("remote")  # not paired yet: just stop pairing
            return UnlinkReply(reached=False, paired=False)
        if endpoint.ended is None:
            await self.pump.close("remote", confirm=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._ended_event.wait()
        how = self._ended_how
        if how is not None and (how.confirmed or how.by_peer):
            return UnlinkReply(
                reached=True, already_ended=how.by_peer, reason=how.reason, station=endpoint.station
            )
        return UnlinkReply(
            reached=False,
            station=endpoint.station,
            waited_s=wait,
            last_contact=self.last_contact,
            policy=self._policy(),
        )


def _logout_reason(event: SessionEnded) -> str:
    if not event.by_peer:
        return "remote" if event.reason == "remote" else event.reason
    return event.reason
