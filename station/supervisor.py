"""The station supervisor: the long-lived daemon behind ``station start``.

It advertises the station, accepts phones' WebSockets, reads only the clear hello of
each (version and routing id) and relays the opaque rest to the worker process that
owns the offer or the session. It enforces the logout policy itself and ends workers;
it never holds session keys or plaintext.

Nothing in it waits on one session: each worker's events are handled as they arrive
(no await), records for a phone leave from that socket's own bounded buffer
(``PhoneSocket``), and frames for a worker go into its pipe's buffer. So a dead link
or a stopped worker never delays another session, the policy or the control socket.

This module holds its lifecycle (start, shutdown, the network watch) and the workers'
(spawn, reap). Its other jobs have modules of their own, as mixins typed against
``SupervisorShape``: ``PhoneRelay`` (station.relay), ``WorkerEvents``
(station.worker_events), ``StatusViews`` (station.status), ``Logouts`` (station.logouts).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, serve

from lan.addresses import WILDCARDS, is_loopback, reachable_addresses
from station.accept import (
    AcceptGate,
    deepen_listen_queue,
    open_descriptors,
    quiet_accept_errors,
    raise_descriptor_limit,
    serve_options,
    unproven_budget,
)
from station.config import Emit, StationConfig, default_control_path, holder, rfc3339_now
from station.control import ControlServer
from station.ended_sessions import EndedSessions
from station.errors import ConfigError
from station.kiosk.browser import KioskBrowser
from station.kiosk.pairing_screen import PairingScreen
from station.lock import DirectoryLock, LockHeld
from station.logouts import Logouts
from station.phone_socket import PhoneSocket
from station.relay import PhoneRelay
from station.safedir import private_dir
from station.socket_paths import check_control_path
from station.status import StatusViews
from station.worker_events import WorkerEvents
from station.worker_handle import WorkerHandle
from tunnel.aio.websocket import ws_options
from tunnel.settings import Settings

if TYPE_CHECKING:
    from lan.watch import NetChange, NetWatch

log = logging.getLogger(__name__)

__all__ = ["Emit", "StationConfig", "Supervisor", "default_control_path", "rfc3339_now"]

HELLO_TIMEOUT = 5.0  # a fallback: the accept gate's pre-hello deadline comes first


class Supervisor(PhoneRelay, WorkerEvents, StatusViews, Logouts):
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
        check_control_path(self.control_path, self.control_dir)
        private_dir(self.control_path.parent, make_private=False)
        private_dir(self.control_dir)
        # One owner per control path: taken before anything is created or removed, so
        # a second station fails without touching the first one's files.
        try:
            self._lock = DirectoryLock.acquire(self.control_dir)
        except LockHeld:
            raise ConfigError(
                f"another station{holder(self.control_path)} is running with control socket"
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
            # Imported here: a station on one address never watches, nor pays for it.
            from lan.watch import NetWatch

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
            # zeroconf (~3 MB resident) only in a station that announces itself.
            from zeroconf import InterfaceChoice

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

    def _screen_changed(self) -> None:
        if self.screen is not None:
            self._spawn(self.screen.changed())

    def _renew_standby(self) -> None:
        """The open offer's URI names addresses that changed: a fresh standby worker
        shows one with the new ones (not while a phone is pairing with this one)."""
        standby = self.standby
        if standby is None or standby.conns or standby.info.session is not None:
            return
        self._spawn(standby.stop("the station's addresses changed"))

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
