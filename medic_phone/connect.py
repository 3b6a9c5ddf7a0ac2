"""Keeping the phone linked: every candidate address raced, the first handshake wins.

The asyncio side of ``medic_phone.dialplan``. Each attempt is a TCP connect, a
WebSocket upgrade and the tunnel's handshake on a transport of its own; the phone's
endpoint runs them all at once and keeps the first whose Noise handshake completes (a
rogue that accepts TCP, or answers with a clear-text refusal, wins nothing). Around
that race:

* mDNS answers (``StationWatch``) add candidates, and a station announcing itself
  while the phone is offline makes every address due at once;
* the host's own interfaces (``NetWatch``): one coming back makes every address due
  at once, and losing the address the link runs from (a roam) drops that link at once
  instead of waiting for it to time out;
* pairing ends when its offer can no longer be valid, or when every station refused;
* the medic is told what is tried (``connecting``), what failed (``connect_failed``),
  the likely cause (``diagnosis``), and while offline a ``status`` line every 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from lan.addresses import local_networks
from lan.watch import NetChange, NetWatch
from medic_phone.attempt import Attempt, AttemptError, open_websocket
from medic_phone.diagnose import Diagnosis, diagnose, no_mdns_answer
from medic_phone.dialplan import Candidate, DialPlan, Failure
from medic_phone.discovery import DiscoveredStation, StationWatch
from medic_phone.targets import Target, parse_address
from tunnel.aio.pump import EndpointPump
from tunnel.aio.websocket import QueuedTransport
from tunnel.events import AttemptFailed, Event, LinkDown, LinkUp
from tunnel.handshake import RefuseCode
from tunnel.session import MAX_SAVED_ADDRESSES, PhoneEndpoint

STATUS_EVERY = 10.0  # a status line while offline
MIN_LISTEN = 1.0  # pairing: hear mDNS this long before "everyone refused" is final
KICK_GAP = 0.5  # at most one mDNS-triggered kick per this long
STALE_CONNECT = 0.25  # a kick replaces connects older than this (a LAN answers in ms)

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]


class Linker:
    """Races the candidates until the session ends (logout) or pairing fails."""

    def __init__(
        self,
        pump: EndpointPump,
        target: Target,
        emit: Emit,
        *,
        persist: Callable[[], Awaitable[None]],
        saved_addresses: tuple[str, ...] = (),
    ) -> None:
        self.pump = pump
        self.target = target
        self.emit = emit
        self._persist = persist
        self._saved = saved_addresses
        self.plan = DialPlan(pairing=self.endpoint.session_id is None)
        self._attempts: set[Attempt] = set()
        self._by_conn: dict[int, Attempt] = {}
        self._active: Attempt | None = None
        self._local: str | None = None  # our address on the active link
        self._wake = asyncio.Event()
        self._watch: StationWatch | None = None
        self._net: NetWatch | None = None
        self._networks = local_networks()
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._valid_until: float | None = None
        if target.valid_until is not None:
            self._valid_until = self._started + (target.valid_until - time.time())
        self.offline_since: float | None = None
        self.last_error = ""
        self._diagnosed: str | None = None
        self._reported: dict[str, str] = {}
        self._announced: tuple[str, ...] = ()
        self._next_status = 0.0
        self._last_kick = 0.0

    @property
    def endpoint(self) -> PhoneEndpoint:
        endpoint = self.pump.endpoint
        assert isinstance(endpoint, PhoneEndpoint)
        return endpoint

    # -- running -------------------------------------------------------------------

    async def run(self) -> None:
        now = self._loop.time()
        for text in self._saved:
            address = parse_address(text)
            if address is not None:
                self._add(*address, "saved", now)
        for host, port in self.target.addresses:
            self._add(host, port, self.target.source, now)
        self._net = NetWatch(self._net_changed)
        self._net.start()
        if self.target.mdns:
            self._watch = StationWatch(on_answer=self._answered)
            await self._watch.start()
        self._announce()
        try:
            while not self._ended():
                now = self._loop.time()
                await self._check_pairing(now)
                if self._ended():
                    break
                while not self.endpoint.linked and (candidate := self.plan.due(now)) is not None:
                    self._start(candidate, now)
                self._maybe_status(now)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._sleep(now)):
                        await self._wake.wait()
        finally:
            await self._close()

    def _ended(self) -> bool:
        return self.endpoint.ended is not None

    def _sleep(self, now: float) -> float:
        deadlines = [now + 1.0]
        for deadline in (self.plan.next_deadline(), self._valid_until):
            if deadline is not None:
                deadlines.append(deadline)
        if self.offline_since is not None:
            deadlines.append(self._next_status)
        return max(0.0, min(deadlines) - now)

    async def _close(self) -> None:
        for attempt in list(self._attempts):
            if attempt.task is not None and attempt.connecting:
                attempt.task.cancel()
        tasks = [a.task for a in self._attempts if a.task is not None]
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._net is not None:
            await self._net.stop()
        if self._watch is not None:
            await self._watch.stop()

    # -- candidates ----------------------------------------------------------------

    def _near(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self._networks)

    def _add(self, host: str, port: int, source: str, now: float) -> bool:
        return self.plan.add(host, port, source, now, near=self._near(host))

    def _matches(self, station: DiscoveredStation) -> bool:
        endpoint = self.endpoint
        if endpoint.session_id is not None:
            return station.name == endpoint.station
        if self.target.code is not None:
            wanted = self.target.station
            return station.offer_open and (not wanted or station.name == wanted)
        return station.name == self.target.station

    def _answered(self, instance: str) -> None:
        assert self._watch is not None
        now = self._loop.time()
        added = False
        matched = False
        for station in self._watch.stations():
            if not self._matches(station):
                continue
            matched = matched or station.instance == instance
            for host in station.addresses:
                added = self._add(host, station.port, "mdns", now) or added
        if added:
            self._announce()
        log.debug("mDNS answer %s: matched=%s added=%s", instance, matched, added)
        if matched and not self.plan.linked and now - self._last_kick >= KICK_GAP:
            # The station (or someone) announced itself: try every address now.
            self._last_kick = now
            self._kick(now, "the station announced itself")
        self._wake.set()

    def _announce(self) -> None:
        addresses = tuple(c.address for c in self.plan.candidates)
        if addresses and addresses != self._announced:
            self._announced = addresses
            self.emit({"event": "connecting", "addresses": list(addresses)})

    # -- attempts ------------------------------------------------------------------

    def _start(self, candidate: Candidate, now: float) -> None:
        log.debug("attempt %s (%s, %d in flight)", candidate.address, candidate.source,
                  candidate.inflight)  # fmt: skip
        self.plan.started(candidate, now)
        attempt = Attempt(candidate, now)
        self._attempts.add(attempt)
        attempt.task = asyncio.create_task(self._attempt(attempt))

    async def _attempt(self, attempt: Attempt) -> None:
        candidate = attempt.candidate
        try:
            try:
                ws = await open_websocket(candidate, max_record=self.endpoint.settings.max_record)
            except AttemptError as exc:
                self._failed(attempt, exc.failure, exc.error)
                return
            attempt.connecting = False
            attempt.ws = ws
            log.debug("attempt %s: WebSocket open", candidate.address)
            await self._pump_attempt(attempt, ws)
        except asyncio.CancelledError:
            if attempt.verdict is None:
                attempt.verdict = "abandoned"
                self.plan.abandoned(candidate)
            raise
        except Exception as exc:  # a bug must not end the phone's search: count it, go on
            log.warning("connection attempt to %s failed: %r", candidate.address, exc)
            self._failed(attempt, Failure.RESET, type(exc).__name__)
        finally:
            self._attempts.discard(attempt)
            self._wake.set()

    async def _pump_attempt(self, attempt: Attempt, ws: ClientConnection) -> None:
        if self.plan.linked or self.endpoint.linked or self._ended():
            # The race was won while this one connected: it must not say hello at all.
            attempt.verdict = "abandoned"
            self.plan.abandoned(attempt.candidate)
            ws.transport.abort()
            return
        transport = QueuedTransport(ws)
        conn = await self.pump.attach(transport)
        attempt.conn = conn
        self._by_conn[conn] = attempt
        try:
            async for message in ws:
                if isinstance(message, str):
                    break
                await self.pump.feed(conn, message)
        except ConnectionClosed:
            pass
        finally:
            await self.pump.lost(conn)
            await transport.close("closing")
            await transport.closed()
            self._by_conn.pop(conn, None)
            if attempt.verdict is None:
                # Closed by the endpoint: another address won the race.
                attempt.verdict = "abandoned"
                self.plan.abandoned(attempt.candidate)

    def _failed(
        self, attempt: Attempt, failure: Failure, error: str, *, final: bool = False
    ) -> None:
        if attempt.verdict is not None:
            return
        attempt.verdict = "failed"
        candidate = attempt.candidate
        self.plan.failed(candidate, failure, error, self._loop.time(), final=final)
        self.last_error = f"{candidate.address}: {error}"
        offline = self.endpoint.session_id is not None
        if not offline or self._reported.get(candidate.address) != error:
            self._reported[candidate.address] = error
            self.emit({"event": "connect_failed", "address": candidate.address, "error": error})
        self._diagnose()
        self._wake.set()

    def _diagnose(self, diagnosis: Diagnosis | None = None) -> None:
        diagnosis = diagnosis or diagnose(self.plan)
        if diagnosis is not None and diagnosis.cause != self._diagnosed:
            self._diagnosed = diagnosis.cause
            self.emit(
                {"event": "diagnosis", "cause": diagnosis.cause, "message": diagnosis.message}
            )

    # -- tunnel events (the node forwards them) -------------------------------------

    async def on_event(self, event: Event) -> None:
        if isinstance(event, AttemptFailed):
            attempt = self._by_conn.get(event.conn)
            if attempt is not None:
                self._attempt_failed(attempt, event)
        elif isinstance(event, LinkUp):
            attempt = self._by_conn.get(event.conn)
            if attempt is not None:
                await self._won(attempt)
        elif (
            isinstance(event, LinkDown)
            and self._active is not None
            and self._active.conn == event.conn
        ):
            self._lost(event.reason)
        self._wake.set()

    def _attempt_failed(self, attempt: Attempt, event: AttemptFailed) -> None:
        if event.refusal is None:
            failure = Failure.TIMEOUT if "timed out" in event.reason else Failure.RESET
            self._failed(attempt, failure, event.reason)
        elif event.refusal == RefuseCode.BUSY:
            self._failed(attempt, Failure.RESET, f"busy: {event.reason}")
        else:
            # Clear text: advisory. While pairing, this station has answered for good.
            self._failed(attempt, Failure.REFUSAL, event.reason, final=True)

    async def _won(self, attempt: Attempt) -> None:
        attempt.verdict = "won"
        self.plan.won(attempt.candidate, self._loop.time())
        self._active = attempt
        local = attempt.ws.local_address if attempt.ws is not None else None
        self._local = str(local[0]) if isinstance(local, tuple) and local else None
        for other in list(self._attempts):
            if other is not attempt and other.connecting and other.task is not None:
                other.task.cancel()  # TCP still connecting: the race is over
        self.offline_since = None
        self._diagnosed = None
        self._reported.clear()
        await self._remember(attempt.candidate)

    def _lost(self, reason: str) -> None:
        now = self._loop.time()
        self._active = None
        self._local = None
        self.plan.lost(now)  # the first attempt goes now
        self.offline_since = now
        self._next_status = now + STATUS_EVERY
        self.last_error = reason
        self._announced = ()
        self._announce()

    async def _remember(self, winner: Candidate) -> None:
        """Where the station was reached, for a restart after a crash."""
        endpoint = self.endpoint
        kept = [winner.address] + [
            c.address
            for c in self.plan.candidates
            if c is not winner and c.source in ("last", "uri", "saved", "connect")
        ]
        addresses = tuple(dict.fromkeys(kept))[:MAX_SAVED_ADDRESSES]
        if endpoint.session_id is not None and addresses != endpoint.addresses:
            endpoint.addresses = addresses
            await self._persist()

    # -- pairing's end, status, the host's network -----------------------------------

    async def _check_pairing(self, now: float) -> None:
        endpoint = self.endpoint
        if endpoint.session_id is not None or endpoint.ended is not None:
            return
        if self._valid_until is not None and now >= self._valid_until:
            why = diagnose(self.plan)
            detail = why.message if why is not None else (self.last_error or "no answer")
            await self._give_up(
                f"the offer can no longer be valid, and the station was not reached ({detail})"
            )
            return
        listened = now - (self._watch.started_at if self._watch is not None else self._started)
        if self.plan.exhausted and (self._watch is None or listened >= MIN_LISTEN):
            refused = [c for c in self.plan.candidates if c.last_failure is Failure.REFUSAL]
            await self._give_up(refused[0].last_error if refused else "every station refused")
            return
        if (
            not self.plan.candidates
            and self._watch is not None
            and now - self._started >= self.target.listen_for
        ):
            diagnosis = no_mdns_answer(self.target.listen_for)
            self._diagnose(diagnosis)
            await self._give_up(diagnosis.message)

    async def _give_up(self, reason: str) -> None:
        self.endpoint.give_up(reason, self.pump.now())
        await self.pump.drain()

    def _maybe_status(self, now: float) -> None:
        if self.offline_since is None or now < self._next_status:
            return
        self._next_status = now + STATUS_EVERY
        self.emit(
            {
                "event": "status",
                "offline_s": round(now - self.offline_since, 1),
                "last_error": self.last_error,
                "addresses": [c.address for c in self.plan.candidates],
            }
        )

    def _net_changed(self, change: NetChange) -> None:
        now = self._loop.time()
        self._networks = local_networks()
        if self._local is not None and self._local in change.removed and self._active is not None:
            # We roamed: the link's own address is gone, so it is dead. Go now.
            ws = self._active.ws
            if ws is not None and ws.transport is not None:
                ws.transport.abort()
        if (change.came_up or change.added) and not self.plan.linked:
            self._kick(now, "the network came back")
        self._wake.set()

    def _kick(self, now: float, why: str) -> None:
        """Something changed for the better: every address is due now, and connects
        still waiting on a SYN sent before the change give way to fresh ones (their
        packets may sit behind a neighbour entry that failed while the link was down)."""
        for attempt in list(self._attempts):
            stale = attempt.connecting and now - attempt.started >= STALE_CONNECT
            if stale and attempt.task is not None:
                attempt.task.cancel()
        self.plan.kick(now)
        log.debug("kick: %s", why)
