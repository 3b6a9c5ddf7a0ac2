"""The running phone node behind ``medic-phone link``.

It pairs (or resumes a link it already has), then stays linked: it reconnects and
resumes across drops until logout or Ctrl-C. The node routes the tunnel's events to
the part that owns each job:

* ``node_apply``: each station command applied exactly once (group commit, ack after
  the commit), and the medic's decisions on the ones kept apart;
* ``node_push``: the phone's chats and messages pushed to the station's mirror, a
  snapshot when the link first comes up, then the changes since;
* ``node_notices``: the station's notices and the session's wipe receipt;
* ``node_control``: the link's control socket (``info``, ``unlink``, ``decide``,
  ``changed``).

Its background work runs on deadlines (``medic_phone.chores``), never on a tick: a
push goes out right after the commit that made the change, or when another process
that wrote to the store says so (``changed``), with a ``data_version`` recheck as the
backstop for a writer that did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medic_phone.chores import Chores
from medic_phone.connect import Linker
from medic_phone.errors import PhoneError
from medic_phone.link_control import ControlSocket, LinkLock, link_tag, tell_links
from medic_phone.node_apply import KIOSK_CHAT, TYPED_MESSAGES, CommandApplier
from medic_phone.node_control import ControlHandler
from medic_phone.node_notices import NoticeKeeper
from medic_phone.node_push import Pusher
from medic_phone.station_news import StationNews, device_notice
from medic_phone.store import PhoneStore
from medic_phone.targets import Target
from tunnel.aio.pump import EndpointPump
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
    StateChanged,
)
from tunnel.identity import PhoneIdentity
from tunnel.refusal import gap_message
from tunnel.session import PhoneEndpoint, PhoneState
from tunnel.settings import Settings
from wire.app import Receipt, encode
from wire.control import DecideReply, Failure

Emit = Callable[[dict[str, Any]], None]
log = logging.getLogger(__name__)


class LinkFailed(PhoneError):
    """Pairing or linking could not complete (wrong code, used offer, station gone)."""


__all__ = ["KIOSK_CHAT", "TYPED_MESSAGES", "LinkFailed", "PhoneNode", "Target"]


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
        self.news = StationNews()
        self.device_name = device_name
        self.linker: Linker | None = None
        self.last_contact: float | None = None
        self._contact_written: float | None = None  # the last contact the store has
        self.target_station = ""
        self._target_key = ""
        self.ended = asyncio.Event()  # the session is over (logged out)
        self.ended_how: SessionEnded | None = None
        self.chores = Chores()  # when the background work is due (a test may swap it)
        self._links_up = 0
        self._pairing_failed: str | None = None
        self._gap: str | None = None  # a resume gap the station named
        self._applier = CommandApplier(self)
        self._pusher = Pusher(self)
        self._notices = NoticeKeeper(self)
        self._control = ControlHandler(self)
        self._wake = asyncio.Event()
        self._socket: Path | None = None
        self._tell_others = False  # this process changed the store: other links hear
        self._telling: asyncio.Future[int] | None = None
        self._tell_after = False  # a push came while a telling ran

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
        self._target_key = target.key
        self.target_station = target.station
        self.pump = EndpointPump(endpoint, self._on_event)
        self.linker = linker = Linker(
            self.pump,
            target,
            self.emit,
            persist=self._save_state,
            saved_addresses=endpoint.addresses,
        )
        self._socket = self.home / f"link-{link_tag(target.key)}.sock"
        control = ControlSocket(self._socket, self._control)
        await control.start()
        chores = asyncio.create_task(self._do_chores())
        try:
            await linker.run()
        finally:
            self._tell_others = False  # nothing new is told once the link stops
            chores.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chores
            if self.last_contact != self._contact_written:
                await self._write_contact()  # the last contact, before the store closes
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
            await self.store.create_link(self.link_id, station=event.station, key=self._target_key)
            self.emit({"event": "paired", "station": event.station, "session": self.link_id})
        elif isinstance(event, StateChanged):
            assert self.link_id is not None
            await self.store.save_link_state(self.link_id, endpoint.export_state().to_bytes())
        elif isinstance(event, NoticeReceived):
            await self._notices.notice(event.payload)
        elif isinstance(event, LinkUp):
            self._heard()
            await self.pump.notify(encode(device_notice(self.device_name)))
            self._links_up += 1
            if self._links_up > 1 or event.resumed:
                self.emit({"event": "link_up"})
            if self._links_up == 1 and not await self._pusher.snapshot():
                self.chores.push_failed(self._now())
            self.chores.linked(self._now())
            self._wake.set()
        elif isinstance(event, LinkDown):
            self._heard()
            self.emit({"event": "link_down"})
        elif isinstance(event, MessageReceived):
            self._applier.received(event.seq, event.payload)
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
            self.ended_how = event
            self.ended.set()
            self.chores.ended()
            details = endpoint.ended_details
            if details is not None and details.receipt and self.link_id is not None:
                await self._notices.ended_receipt(details.receipt)
            if self.link_id is not None and self._gap is None:
                await self.store.end_link(self.link_id, event.reason)
                self.emit({"event": "logout", "reason": _logout_reason(event)})

    # -- what the parts tell the node --------------------------------------------------

    def changed_here(self) -> None:
        """This process committed a change the mirror needs (commands became messages)."""
        self._tell_others = True
        self.changed_elsewhere()

    def changed_elsewhere(self) -> None:
        """The store holds a change the mirror may not have: push it now."""
        before = self.chores.next_deadline()
        self.chores.changed(self._now())
        self._wake_if_sooner(before)

    def _heard(self) -> None:
        """The station was heard now. The store learns it a moment later (for `medic-phone
        links` once this process is gone): never on the path of a link coming back,
        where a commit would hold up the resume."""
        self.last_contact = time.time()
        before = self.chores.next_deadline()
        self.chores.heard(self._now())
        self._wake_if_sooner(before)

    def _wake_if_sooner(self, before: float | None) -> None:
        """Wake the chores only when something became due sooner than they sleep for: a
        stream of commits (one a command) then wakes them once a push, not once each."""
        after = self.chores.next_deadline()
        if after is not None and (before is None or after < before):
            self._wake.set()

    async def decide(self, seq: int, *, confirm: bool) -> DecideReply | Failure:
        """The medic's word on a command kept apart; the station hears it at once."""
        return await self._applier.decide(seq, confirm=confirm)

    async def keep_receipt(self, receipt: Receipt) -> None:
        """A wipe receipt: checked, kept with the link, and told to the medic."""
        await self._notices.keep_receipt(receipt)

    # -- background work, on deadlines -------------------------------------------------

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def _do_chores(self) -> None:
        """Sleep until the next chore's deadline or a wake-up; do what is due."""
        seen: int | None = None
        with contextlib.suppress(PhoneError):
            seen = await self.store.data_version()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(self.chores.next_deadline()):
                    await self._wake.wait()
            self._wake.clear()
            due = self.chores.due(self._now())
            if due.contact:
                await self._write_contact()
            if due.recheck:
                with contextlib.suppress(PhoneError):
                    version = await self.store.data_version()
                    if version != seen:  # another connection committed
                        seen = version
                        self.chores.changed(self._now())
            if due.push:
                await self._push()

    async def _push(self) -> None:
        try:
            pushed = await self._pusher.changes()
        except PhoneError as exc:
            log.warning("push failed: %s", type(exc).__name__)
            pushed = False
        if not pushed:
            self.chores.push_failed(self._now())
        self._tell()

    def _tell(self) -> None:
        """The other links of this phone hear of this process's changes, once a push (one
        telling at a time, through a blocking client off the loop: a wedged link stalls
        nothing). A push during a telling is told when that telling is done."""
        if not self._tell_others:
            return
        if self._telling is not None and not self._telling.done():
            self._tell_after = True
            return
        self._tell_others = self._tell_after = False
        self._telling = asyncio.ensure_future(
            asyncio.to_thread(tell_links, self.home, skip=self._socket)
        )
        self._telling.add_done_callback(self._told)

    def _told(self, telling: asyncio.Future[int]) -> None:
        if not telling.cancelled() and telling.exception() is not None:
            log.warning("telling other links failed: %s", type(telling.exception()).__name__)
        if self._tell_after:
            self._tell()  # a push came meanwhile (commits alone wait for their push)

    async def _write_contact(self) -> None:
        at = self.last_contact
        if self.link_id is not None and at is not None:
            with contextlib.suppress(PhoneError):
                await self.store.touch_link(self.link_id, at)
                self._contact_written = at


def _logout_reason(event: SessionEnded) -> str:
    if not event.by_peer:
        return "remote" if event.reason == "remote" else event.reason
    return event.reason
