"""The station supervisor: the long-lived daemon behind ``station start``.

It advertises the station, accepts phones' WebSockets, reads only the clear hello of
each (version and routing id) and relays the opaque rest to the worker process that
owns the offer or the session. It enforces the logout policy itself and ends workers;
it never holds session keys or plaintext.

Nothing in it waits on one session: each worker's events are handled as they arrive
(no await), records for a phone leave from that socket's own bounded buffer
(``PhoneSocket``), and frames for a worker go into its pipe's buffer. So a dead link
or a stopped worker never delays another session, the policy or the control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from zeroconf import InterfaceChoice

from lan.addresses import WILDCARDS, is_loopback, reachable_addresses
from lan.watch import NetChange, NetWatch
from station.accept import (
    AcceptGate,
    GatedConnection,
    deepen_listen_queue,
    open_descriptors,
    quiet_accept_errors,
    raise_descriptor_limit,
    serve_options,
    unproven_budget,
)
from station.control import ControlServer
from station.ended_sessions import EndedSessions
from station.errors import ConfigError
from station.kiosk.browser import KioskBrowser
from station.kiosk.pairing_screen import PairingScreen
from station.lock import DirectoryLock, LockHeld
from station.phone_socket import PhoneSocket
from station.policy import (
    INACTIVITY,
    MAX_SESSION,
    WIPE_EVERY,
    LogoutPolicy,
    PolicyConfig,
    SessionTimes,
)
from station.safedir import private_dir
from station.workers import WorkerHandle, WorkerInfo
from tunnel.aio.websocket import ws_options
from tunnel.errors import MalformedRecord
from tunnel.events import Settings
from tunnel.handshake import MessageType, RefuseCode, encode_refusal, parse_hello
from tunnel.queue import DEFAULT_MAX_COUNT
from tunnel.refusal import code_paused_message
from wire import pipe
from wire.control import STATION_REQUESTS, AcceptCounts, SessionStatus, Status, StatusReply

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 5.0  # a fallback: the accept gate's pre-hello deadline comes first


@dataclass(frozen=True)
class StationConfig:
    name: str = "field-station"
    host: str = "0.0.0.0"  # noqa: S104 (all interfaces: phones are on the LAN)
    port: int = 8765
    mdns: bool = True
    inactivity: float = INACTIVITY
    max_session: float = MAX_SESSION
    wipe_every: float = WIPE_EVERY
    control: Path | None = None
    offer_ttl: float = 30.0
    max_sessions: int = 16
    queue_limit: int = DEFAULT_MAX_COUNT
    command_ttl: float | None = None  # seconds; a command older on arrival is kept apart
    ui: bool = True  # serve the kiosk page on 127.0.0.1
    ui_port: int = 0
    kiosk_browser: str | None = None  # a Chromium to launch on the kiosk page


Emit = Callable[[dict[str, Any]], None]


def rfc3339_now() -> str:
    """The time of an event, as every JSON event carries it (``ts``): RFC 3339, UTC."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class Supervisor:
    def __init__(self, config: StationConfig, emit: Emit) -> None:
        self.config = config
        self._emit = emit
        self.settings = Settings()
        self.workers: dict[int, WorkerHandle] = {}
        self.standby: WorkerHandle | None = None
        self._next_worker = 0
        self._conns: dict[int, tuple[PhoneSocket, WorkerHandle]] = {}
        self._next_conn = 0
        self.gate = AcceptGate("phones")
        self._netwatch: NetWatch | None = None
        self.listen_addresses: list[str] = []  # where phones reach us now
        self.mdns_note: str | None = None  # why mDNS is off, when it is
        self._peers: dict[str, None] = {}  # addresses of phones that proved themselves
        self._offered: list[str] = []  # the addresses the standby's offers name
        self._server: Server | None = None
        self._control: ControlServer | None = None
        self._advertiser: Any = None
        self._stopping = asyncio.Event()
        self._started = time.monotonic()
        self.port = config.port
        self.control_path = config.control or default_control_path()
        self.control_dir = Path(str(self.control_path) + ".d")
        self._spawn_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ready = False
        self._first_offer = asyncio.Event()
        self._hardening_shown = False
        self.screen: PairingScreen | None = None
        self.browser: KioskBrowser | None = None
        self._browser_lock = asyncio.Lock()
        self._lock: DirectoryLock | None = None  # ours: the control path and its directory
        self._policy_wake = asyncio.Event()
        self.ended: dict[str, dict[str, Any]] = {}  # session -> its wiped event, for logout
        self.ended_sessions = EndedSessions()  # authenticated answers for ended sessions
        # Wrong-code streak (failures, last failure, paused until; monotonic), carried to
        # each new standby so that a medic pairing does not reset an attacker's back-off.
        self._code_streak: tuple[int, float, float] | None = None

    def emit(self, event: dict[str, Any]) -> None:
        self._emit({**event, "ts": rfc3339_now()})

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        try:
            await self._start()
            await self._stopping.wait()
        finally:
            await self._shutdown()

    def stop(self) -> None:
        self._stopping.set()

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        # Keep a reference: the loop holds tasks only weakly.
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self) -> None:
        from wipe.preflight import run_preflight

        # Before anything else: refuse directories another user could steer (checked
        # before any chmod, through descriptors). A refusal leaves the lock untaken, so
        # the shutdown touches nothing.
        private_dir(self.control_path.parent, make_private=False)
        private_dir(self.control_dir)
        # One owner per control path: taken before anything is created or removed, so
        # a second station fails without touching the first one's files.
        try:
            self._lock = DirectoryLock.acquire(self.control_dir)
        except LockHeld:
            raise ConfigError(
                f"another station{_holder(self.control_path)} is running with control socket"
                f" {self.control_path}: stop it first, or choose another --control"
            ) from None
        checks = run_preflight()
        self.emit(
            {
                "event": "preflight",
                "checks": [
                    {"name": c.name, "status": c.status, "detail": c.detail} for c in checks
                ],
            }
        )
        nofile, _ = raise_descriptor_limit()
        asyncio.get_running_loop().set_exception_handler(quiet_accept_errors)
        try:
            self._server = await serve(
                self._handle_socket,
                self.config.host,
                self.config.port,
                **ws_options(self.settings.max_record),  # type: ignore[arg-type]
                **serve_options(self.gate, proven_at_handshake=False),
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {self.config.port} on {self.config.host} is already in use"
                    " (another station? choose --port)"
                ) from None
            raise ConfigError(
                f"cannot listen on {self.config.host}:{self.config.port}: {exc}"
            ) from None
        deepen_listen_queue(self._server.sockets)
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        self.listen_addresses = reachable_addresses(self.config.host)
        if self.config.host in WILDCARDS:
            self._netwatch = NetWatch(self._net_changed)
            self._netwatch.start()
        self._control = ControlServer(self.control_path, self)
        await self._control.start()
        if self.config.ui:
            self.screen = PairingScreen(
                port=self.config.ui_port, state=self._screen_state, offer_uri=self._offer_uri
            )
            await self.screen.start()
        # What is left for unproven sockets once everything else has its descriptors.
        self.gate.total = unproven_budget(nofile, open_descriptors(), self.config.max_sessions)
        if self.config.mdns and is_loopback(self.config.host):
            self.mdns_note = (
                f"mDNS off: the station listens on {self.config.host} only, which phones"
                " on the LAN cannot reach (leave out --host to listen on all interfaces)"
            )
        await self._ensure_standby()
        if self.config.mdns and self.mdns_note is None:
            from station.mdns import StationAdvertiser

            # Announce once there is an offer, so the first answer a phone sees is true.
            async with asyncio.timeout(30):
                await self._first_offer.wait()
            interfaces: Any = (
                InterfaceChoice.All if self.config.host in WILDCARDS else [self.config.host]
            )
            self._advertiser = StationAdvertiser(
                name=self.config.name,
                port=self.port,
                addresses=self.listen_addresses,
                interfaces=interfaces,
            )
            await self._advertiser.start(offer_open=True)
            self.emit(
                {
                    "event": "advertised",
                    "name": self.config.name,
                    "addresses": [f"{a}:{self.port}" for a in self._advertiser.addresses],
                }
            )
        self._spawn(self._policy_loop())
        if self.config.kiosk_browser and self.screen is not None:
            self.browser = KioskBrowser(self.config.kiosk_browser, self.screen, self.emit)
            await self.browser.start()

    async def _shutdown(self) -> None:
        if self._lock is None:
            return  # we never owned anything: another station's files stay as they are
        if self._server is not None:
            # Stop accepting, but keep the phones' sockets: their Close frames go next.
            self._server.close(close_connections=False)
        await asyncio.gather(
            *(self.logout(w, "shutdown") for w in list(self.workers.values())),
            return_exceptions=True,
        )
        if self._netwatch is not None:
            await self._netwatch.stop()
        if self._advertiser is not None:
            with contextlib.suppress(Exception):
                await self._advertiser.stop()
        if self.browser is not None:
            async with self._browser_lock:  # not while a logout renews it
                await self.browser.stop()
        if self.screen is not None:
            await self.screen.close()
        if self._control is not None:
            await self._control.stop()
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
        self.ended_sessions.clear()
        # Workers remove their own sockets; a killed one cannot. Leave nothing behind.
        if self._control is not None:
            for leftover in self.control_dir.glob("*.sock"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            with contextlib.suppress(OSError):
                self.control_dir.rmdir()
        self._lock.release()

    def addresses(self) -> list[tuple[str, int]]:
        """Where phones reach the station now: the URI's ``a=`` and the mDNS records."""
        self._offered = list(self.listen_addresses or [self.config.host])
        return [(a, self.port) for a in self._offered]

    def _net_changed(self, change: NetChange) -> None:
        addresses = reachable_addresses(self.config.host)
        log.debug("network changed: %s; reachable now %s", change, addresses)
        moved = addresses != self.listen_addresses
        self.listen_addresses = addresses
        if moved:
            self.emit({"event": "addresses", "addresses": [f"{a}:{self.port}" for a in addresses]})
        if all(is_loopback(a) for a in addresses):
            return  # no LAN interface is up: no offer or announcement could be used anyway
        if addresses != self._offered:
            self._renew_standby()
        if self._advertiser is None:
            return
        if addresses != self._advertiser.addresses:
            self._spawn(self._advertiser.set_addresses(addresses))
        elif change.came_up or change.added:
            # Back on the LAN: say so at once, so phones reconnect without waiting.
            self._spawn(self._advertiser.reannounce(unicast_to=list(self._peers)))

    # -- workers ---------------------------------------------------------------------

    async def _ensure_standby(self) -> None:
        async with self._spawn_lock:
            if self.standby is not None or self._stopping.is_set():
                return
            paired = sum(1 for w in self.workers.values() if w.info.session)
            if paired >= self.config.max_sessions:
                return
            self._next_worker += 1
            handle = await WorkerHandle.spawn(
                self._next_worker,
                name=self.config.name,
                addresses=self.addresses(),
                control_dir=str(self.control_dir),
                offer_ttl=self.config.offer_ttl,
                queue_limit=self.config.queue_limit,
                command_ttl=self.config.command_ttl,
                ui_origin=self.screen.origin if self.screen is not None else None,
                extra=self._code_streak_args(),
            )
            self.workers[handle.info.id] = handle
            self.standby = handle
            handle.start(self._on_worker_event, self._on_worker_send, self._on_worker_close)
            self._spawn(self._reap(handle))

    async def _reap(self, handle: WorkerHandle) -> None:
        code = await handle.wait_closed()
        info = handle.info
        self.workers.pop(info.id, None)
        for conn in list(handle.conns):
            entry = self._conns.pop(conn, None)
            if entry is not None:
                entry[0].close(4000, "session ended")
        if self.standby is handle:
            self.standby = None
        if info.session is not None:
            reason = (
                info.ended_reason
                or handle.stop_requested
                or ("crashed" if code != 0 else "shutdown")
            )
            self._emit_logout(handle, reason)
            # The process is gone and its last events are read: the ledger is final.
            undelivered = info.ledger.undelivered
            wiped = {
                "event": "wiped",
                "session": info.session,
                "reason": reason,
                "undelivered": len(undelivered),
                "undelivered_seqs": undelivered,
                "queued_total": info.ledger.queued_total,
                "exit": code,
            }
            self.ended[info.session] = {**wiped, "at": time.time(), "name": info.device_name}
            while len(self.ended) > 64:
                self.ended.pop(next(iter(self.ended)))
            self.emit(wiped)
            if self.browser is not None and not self._stopping.is_set():
                # The browser's profile saw the session's page: it goes with the session.
                self._spawn(self._renew_browser())
            self._screen_changed()
        self._policy_wake.set()
        if not self._stopping.is_set():
            await self._ensure_standby()
            self._update_advert()

    def _on_worker_event(self, handle: WorkerHandle, event: pipe.WorkerEvent) -> None:
        """One worker event, handled at once: nothing here waits."""
        info = handle.info
        session = info.session
        match event:
            case pipe.OfferShown():
                self._offer_shown(info, event)
            case pipe.SessionPaired():
                self._paired(handle, event)
            case pipe.LinkUp() | pipe.LinkDown() if session:
                info.linked = isinstance(event, pipe.LinkUp)
                self.emit({"event": event.KIND, "session": session})
            case pipe.Queued(seq) if session:
                info.ledger.queued(seq)
                self.emit(
                    {"event": "queued", "session": session, "seq": seq, "depth": info.ledger.depth}
                )
            case pipe.Acked(through) if session:
                before = info.ledger.depth
                info.ledger.acked_through(through)
                if info.ledger.depth != before:
                    self.emit(
                        {
                            "event": "delivered",
                            "session": session,
                            "through": info.ledger.acked,
                            "depth": info.ledger.depth,
                        }
                    )
            case pipe.Activity():
                info.last_input = time.monotonic()
                self._policy_wake.set()
            case pipe.Commands(counts, oldest, heard):
                info.commands = dict(counts)
                info.oldest_queued_at = oldest
                info.last_heard = heard if heard is not None else info.last_heard
            case pipe.DeviceSeen(name, battery) if session:
                info.device_name, info.battery = name[:64], battery
                self.emit({"event": "device", "session": session, "name": name, "battery": battery})
                self._screen_changed()
            case pipe.Ended(reason, seqs):
                info.ended_reason = handle.stop_requested or reason
                info.ledger.settle(list(seqs))  # the worker's own queue, read as it ended
                self._emit_logout(handle, info.ended_reason)
            case pipe.Mirrored(version, _, messages):
                info.mirrored, info.mirror_version = messages, version
            case pipe.MirrorError(reason):
                # The phone sent something the worker cannot read: said, never dropped quietly.
                self.emit({"event": "mirror_error", "session": session, "reason": reason})
            case pipe.Hardening(measures):
                info.hardening = event
                if not self._hardening_shown:
                    self._hardening_shown = True
                    shown = {
                        n: {"applied": m.applied, "detail": m.detail} for n, m in measures.items()
                    }
                    self.emit({"event": "hardening", "worker": info.id, **shown})
            case pipe.PairingFailed(reason):
                self.emit({"event": "pairing_failed", "reason": reason})
            case pipe.CodePaused():
                self._code_paused(info, event)
            case pipe.SessionRefusal(refusal) if session:
                self.ended_sessions.add(session, refusal)
            case pipe.ResumeGap(first, last) if session:
                self.emit({"event": "resume_gap", "session": session, "first": first, "last": last})
            case _:
                # Session events of a worker that never paired: a bug in the worker.
                log.warning("worker %d sent %s before pairing", info.id, type(event).__name__)
        if isinstance(event, pipe.SessionPaired | pipe.LinkUp | pipe.LinkDown | pipe.Ended):
            self._screen_changed()

    def _offer_shown(self, info: WorkerInfo, event: pipe.OfferShown) -> None:
        info.offer_id = event.offer_id
        info.previous_offer_id = event.previous_offer_id
        info.pair_uri = event.pair_uri
        info.pair_code = event.pair_code
        info.offer_expires = float(event.expires_at)
        info.code_paused_until = time.monotonic() + event.code_paused_s
        out: dict[str, Any] = {
            "event": "ready" if not self._ready else "offer",
            "pair_uri": info.pair_uri,
            "pair_code": info.pair_code,
            "expires_at": info.offer_expires,
        }
        self._first_offer.set()
        if not self._ready:
            self._ready = True
            out.update(
                name=self.config.name,
                port=self.port,
                addresses=[f"{a}:{self.port}" for a in self.listen_addresses],
                mdns=self.config.mdns and self.mdns_note is None,
                mdns_note=self.mdns_note,
                control=str(self.control_path),
                ui=self.screen.url if self.screen is not None else None,
            )
        self.emit(out)
        self._update_advert()

    def _paired(self, handle: WorkerHandle, event: pipe.SessionPaired) -> None:
        info = handle.info
        info.session = event.session
        info.fingerprint = event.fingerprint
        info.device = event.device
        info.control = event.control
        info.page = event.page
        info.paired_at = info.last_input = time.monotonic()
        info.linked = True
        info.offer_id = info.pair_uri = info.pair_code = info.previous_offer_id = None
        if self.standby is handle:
            self.standby = None
        self.emit(
            {
                "event": "paired",
                "session": info.session,
                "device": info.device,
                "fingerprint": info.fingerprint,
            }
        )
        self._policy_wake.set()
        self._spawn(self._ensure_standby())

    def _screen_changed(self) -> None:
        if self.screen is not None:
            self._spawn(self.screen.changed())

    def _code_paused(self, info: WorkerInfo, event: pipe.CodePaused) -> None:
        """Wrong codes: one line per pause (the back-off bounds them), never an offer line."""
        paused = event.paused_s
        now = time.monotonic()
        info.code_paused_until = now + paused
        info.pair_code = event.pair_code or info.pair_code
        self._code_streak = (event.failures, now, now + paused)
        self.emit(
            {
                "event": "code_paused",
                "paused_s": paused,
                "failures": event.failures,
                "pair_code": info.pair_code,
                "message": code_paused_message(paused),
            }
        )
        self._update_advert()
        # Show the code again when the pause ends.
        asyncio.get_running_loop().call_later(paused + 0.05, self._screen_changed)

    def _code_streak_args(self) -> list[str]:
        if self._code_streak is None:
            return []
        streak, last, until = self._code_streak
        now = time.monotonic()
        return [
            f"--code-streak={streak}",
            f"--code-quiet-s={now - last:.3f}",
            f"--code-paused-s={max(0.0, until - now):.3f}",
        ]

    def code_pause(self) -> float:
        """Seconds code pairing stays paused at the open offer (0: codes work)."""
        standby = self.standby.info if self.standby is not None else None
        if standby is None or standby.pair_uri is None:
            return 0.0
        return max(0.0, standby.code_paused_until - time.monotonic())

    def _on_worker_send(self, conn: int, data: bytes) -> None:
        entry = self._conns.get(conn)
        if entry is not None:
            ws = entry[0].ws
            if data[:1] == _ACCEPT and isinstance(ws, GatedConnection):
                ws.prove()  # the worker accepted its Noise handshake: a real phone
                self._remember_peer(ws)
            entry[0].send(data)

    def _renew_standby(self) -> None:
        """The open offer's URI names addresses that changed: a fresh standby worker
        shows one with the new ones (not while a phone is pairing with this one)."""
        standby = self.standby
        if standby is None or standby.conns or standby.info.session is not None:
            return
        self._spawn(standby.stop("the station's addresses changed"))

    def _remember_peer(self, ws: ServerConnection) -> None:
        peer = ws.remote_address
        if isinstance(peer, tuple) and peer:
            self._peers.pop(str(peer[0]), None)
            self._peers[str(peer[0])] = None
            while len(self._peers) > 32:
                self._peers.pop(next(iter(self._peers)))

    def _on_worker_close(self, conn: int, reason: str) -> None:
        entry = self._conns.pop(conn, None)
        if entry is not None:
            entry[1].conns.discard(conn)
            entry[0].close(4000, reason)

    def _update_advert(self) -> None:
        if self._advertiser is not None:
            open_offer = self.standby is not None and self.standby.info.pair_uri is not None
            self._spawn(self._advertiser.set_offer_open(open_offer))
        self._screen_changed()

    # -- the kiosk page --------------------------------------------------------------

    async def _renew_browser(self) -> None:
        assert self.browser is not None
        async with self._browser_lock:  # two logouts at once: one restart after the other
            if self._stopping.is_set():
                return  # the shutdown stops it for good
            await self.browser.restart()

    def _screen_state(self) -> dict[str, Any]:
        """What the pairing screen shows: ids, states and page addresses, no content."""
        standby = self.standby.info if self.standby is not None else None
        offer = None
        if standby is not None and standby.pair_uri is not None:
            paused = self.code_pause()
            offer = {
                "id": standby.offer_id,
                "code": standby.pair_code,
                "expires_at": standby.offer_expires,
                "code_paused_s": round(paused),
                "notice": code_paused_message(paused) if paused > 0 else None,
            }
        sessions = [
            {
                "id": str(h.info.session)[:16],
                "fingerprint": h.info.fingerprint,
                "name": h.info.device_name,
                "page": h.info.page,
                "linked": h.info.linked,
            }
            for h in self.find(None)
            if h.info.page and h.stop_requested is None and h.info.ended_reason is None
        ]
        full = len(self.find(None)) >= self.config.max_sessions
        return {
            "type": "state",
            "station": self.config.name,
            "offer": offer,
            "full": full and offer is None,
            "sessions": sessions,
            "wiped": self._recent_wipes(),
        }

    def _recent_wipes(self) -> list[dict[str, Any]]:
        """The last few logouts of the past 10 minutes: ids, reasons and seqs, no content."""
        now = time.time()
        recent = [w for w in self.ended.values() if now - float(w.get("at", 0)) < 600]
        return [
            {
                "id": str(w["session"])[:16],
                "name": w.get("name"),
                "reason": w["reason"],
                "at": w["at"],
                "count": w["undelivered"],
                "undelivered": w["undelivered_seqs"][:20],
            }
            for w in recent[-5:]
        ]

    def _offer_uri(self, offer_id: str) -> str | None:
        standby = self.standby.info if self.standby is not None else None
        if standby is None or not offer_id or standby.offer_id != offer_id:
            return None
        return standby.pair_uri

    # -- phones ----------------------------------------------------------------------

    async def _handle_socket(self, ws: ServerConnection) -> None:
        # The accept gate (station.accept) has bounded this socket since its TCP accept.
        await self._relay(ws)

    async def _relay(self, ws: ServerConnection) -> None:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                first = await ws.recv()
        except (TimeoutError, ConnectionClosed):
            return
        if isinstance(first, str):
            await ws.close(4000, "text frames are not spoken here")
            return
        try:
            hello = parse_hello(first)
        except MalformedRecord:
            await self._refuse(ws, RefuseCode.MALFORMED, "malformed hello")
            return
        handle = self._route(hello.kind, hello.routing_id)
        ended = (
            self.ended_sessions.get(hello.routing_id.hex())
            if handle is None and hello.kind is MessageType.RESUME
            else None
        )
        if ended is not None:
            # Authenticated by the worker before it ended: the phone may believe it.
            with contextlib.suppress(ConnectionClosed):
                await ws.send(ended)
                await ws.close(4000, "session ended")
            return
        if handle is None:
            code = (
                RefuseCode.SESSION_UNKNOWN
                if hello.kind is MessageType.RESUME
                else RefuseCode.OFFER_UNKNOWN
            )
            await self._refuse(
                ws,
                code,
                "unknown session"
                if code is RefuseCode.SESSION_UNKNOWN
                else "unknown or rotated offer",
            )
            return
        if isinstance(ws, GatedConnection):
            ws.hello_routed()
        self._next_conn += 1
        conn = self._next_conn
        phone = PhoneSocket(ws)
        self._conns[conn] = (phone, handle)
        handle.conns.add(conn)
        try:
            if not handle.post(pipe.Open(conn)):
                return
            if not await handle.send(pipe.Data(conn, first)):
                return
            async for message in ws:
                if isinstance(message, str):
                    break
                # Waits only when this worker's pipe is full: this phone slows, no one else.
                if not await handle.send(pipe.Data(conn, message)):
                    break
        except ConnectionClosed:
            pass
        finally:
            if self._conns.pop(conn, None) is not None:
                handle.conns.discard(conn)
                handle.post(pipe.Lost(conn))
            phone.close(1000, "")
            await phone.closed()

    def _route(self, kind: MessageType, routing_id: bytes) -> WorkerHandle | None:
        if kind is MessageType.RESUME:
            wanted = routing_id.hex()
            for handle in self.workers.values():
                if handle.info.session == wanted and handle.stop_requested is None:
                    return handle
            return None
        standby = self.standby
        if standby is None or standby.info.pair_uri is None:
            return None
        # The previous offer stays valid through its grace; the worker checks the time.
        offers = (standby.info.offer_id, standby.info.previous_offer_id)
        if kind is MessageType.PAIR_URI and routing_id.hex() not in offers:
            return None
        return standby

    async def _refuse(self, ws: ServerConnection, code: RefuseCode, reason: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(encode_refusal(code, reason))
            await ws.close(4000, reason)

    # -- policy ----------------------------------------------------------------------

    def _emit_logout(self, handle: WorkerHandle, reason: str) -> None:
        """The ``logout`` event, once per session, when its end is decided or noticed."""
        info = handle.info
        if info.session is not None and not info.logout_emitted:
            info.logout_emitted = True
            self.emit({"event": "logout", "session": info.session, "reason": reason})

    def decide_logout(self, handle: WorkerHandle, reason: str) -> None:
        """The logout is decided now: its deadline starts and everyone is told at once."""
        if handle.stop_requested is None:
            handle.request_stop(reason)
            self._emit_logout(handle, reason)
            self._screen_changed()  # the tab goes at once; the worker clears its page

    async def logout(self, handle: WorkerHandle, reason: str) -> dict[str, Any] | None:
        """End a session's worker (the wipe); returns its ``wiped`` event once it is gone."""
        self.decide_logout(handle, reason)
        await handle.stop(reason)
        session = handle.info.session
        if session is None:
            return None
        for _ in range(100):  # the reaper runs right after the process is read to EOF
            if session in self.ended:
                return self.ended[session]
            await asyncio.sleep(0.01)
        return self.ended.get(session)

    def find(self, session: str | None) -> list[WorkerHandle]:
        paired = [w for w in self.workers.values() if w.info.session]
        if session is None:
            return paired
        return [w for w in paired if w.info.session and w.info.session.startswith(session)]

    async def _policy_loop(self) -> None:
        """Wakes at the policy's next deadline, or at once when a session pairs, takes
        input or ends; never waits on a worker."""
        cfg = self.config
        policy = LogoutPolicy(
            PolicyConfig(cfg.inactivity, cfg.max_session, cfg.wipe_every),
            start=time.monotonic(),
        )
        while not self._stopping.is_set():
            self._policy_wake.clear()
            live = {
                str(h.info.session): h
                for h in self.workers.values()
                if h.info.session and h.info.paired_at is not None and not h.stop_requested
            }
            times = {
                sid: SessionTimes(float(h.info.paired_at or 0), h.info.last_input)
                for sid, h in live.items()
            }
            now = time.monotonic()
            for session, reason in policy.due(now, times):
                self.decide_logout(live[session], reason)
                self._spawn(self.logout(live[session], reason))
            for session, handle in live.items():
                if handle.stop_requested is None:
                    self._tell_deadline(handle, policy.logout_of(times[session]))
            wait = policy.next_deadline(times) - time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.0) + 0.001):
                    await self._policy_wake.wait()

    def _tell_deadline(self, handle: WorkerHandle, logout: tuple[float, str]) -> None:
        """Tell the worker when its session ends (its page counts down) when that moved."""
        when, reason = logout
        sent = handle.info.policy_sent
        if sent is not None and sent[1] == reason and abs(sent[0] - when) < 0.5:
            return
        handle.info.policy_sent = logout
        handle.post(pipe.PolicyDeadline(round(when - time.monotonic(), 2), reason))

    def status(self) -> StatusReply:
        now = time.monotonic()
        sessions = []
        for handle in self.find(None):
            info: WorkerInfo = handle.info
            assert info.session is not None
            oldest = info.oldest_queued_at
            sessions.append(
                SessionStatus(
                    session=info.session,
                    fingerprint=info.fingerprint,
                    linked=info.linked,
                    queued=info.ledger.depth,
                    queued_seqs=tuple(info.ledger.undelivered[:50]),
                    oldest_queued_s=round(time.time() - oldest, 1)
                    if oldest is not None and info.ledger.depth
                    else None,
                    commands=dict(info.commands),
                    device=info.device_name,
                    battery=info.battery,
                    last_heard=info.last_heard,
                    acked_through=info.ledger.acked,
                    mirrored=info.mirrored,
                    mirror_version=info.mirror_version,
                    idle_s=round(now - info.last_input, 1),
                    age_s=round(now - (info.paired_at or now), 1),
                    control=info.control,
                    pid=handle.process.pid or 0,
                    ending=handle.stop_requested,
                )
            )
        standby = self.standby.info if self.standby is not None else None
        pause = self.code_pause()
        return StatusReply(
            name=self.config.name,
            pid=os.getpid(),
            port=self.port,
            uptime_s=round(now - self._started, 1),
            offer_open=bool(standby and standby.pair_uri),
            pair_uri=standby.pair_uri if standby else None,
            pair_code=standby.pair_code if standby else None,
            code_paused_s=round(pause, 1),
            code_pairing=code_paused_message(pause) if pause > 0 else "open",
            ui=self.screen.url if self.screen is not None else None,
            screens=self.screen.viewers if self.screen is not None else 0,
            kiosk_browser=self.browser.pid if self.browser is not None else None,
            sessions=tuple(sessions),
            addresses=tuple(f"{a}:{self.port}" for a in self.listen_addresses),
            mdns=self._advertiser is not None,
            accept=AcceptCounts(**self.gate.status()),
        )


_ACCEPT = bytes([MessageType.ACCEPT])


def _holder(control_path: Path) -> str:
    """`` (pid N)`` of the station answering on ``control_path``, if it answers."""
    from wire import WireError, jsonlines

    try:
        reply = jsonlines.ask(control_path, Status(), STATION_REQUESTS, StatusReply, timeout=1.0)
    except WireError:
        return ""
    return f" (pid {reply.pid})" if isinstance(reply, StatusReply) else ""


def default_control_path() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    # Without a runtime dir, a per-user directory in $TMPDIR (else /tmp); the station
    # refuses it unless it is ours (see station.safedir: no symlink or squatting games).
    tmp = os.environ.get("TMPDIR") or "/tmp"  # noqa: S108
    base = Path(runtime) if runtime else Path(tmp) / f"fieldstation-{os.getuid()}"
    return base / "fieldstation.sock"
