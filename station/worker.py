"""A session worker: one process per pairing offer and then per session.

Started fresh by the supervisor (``python -I -B -m station.worker``, never a fork), it
holds everything secret about one session: the offer's keys, the session's keys, the
outage queue and the mirror of the phone, all in RAM. Its stdin is a socketpair to the
supervisor (see ``station.ipc``). Ending this process is the wipe.

Typed commands reach it on its own control socket, straight from ``station send``, so
no plaintext ever passes through the supervisor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from station import ipc
from station.errors import StationError
from station.fates import CommandFate
from station.jsonlines import serve_json_lines
from station.kiosk.session_view import SessionView
from station.mirror import Mirror
from station.session_record import SessionRecord
from tunnel.aio.pump import EndpointPump
from tunnel.errors import QueueFull, SessionClosed
from tunnel.events import (
    Acked,
    CodePaused,
    Event,
    LinkDown,
    LinkUp,
    LogoutRequested,
    MessageReceived,
    NoticeReceived,
    OfferRotated,
    Paired,
    PairingFailed,
    ResumeGap,
    SessionEnded,
    Settings,
)
from tunnel.offer import new_offer
from tunnel.open_offers import OFFER_GRACE, CodeBackoff
from tunnel.pake import generate_code
from tunnel.station_endpoint import StationEndpoint
from tunnel.station_handshake import StationOffer
from wipe.harden import harden_process
from wipe.memdb import open_memory_db
from wire import WireError
from wire.app import Command, Device, Fates, MirrorUpdate, Receipt, decode, encode

# Seconds a logging-out worker gives its queue to reach a linked phone; it fits inside
# the supervisor's STOP grace, after which the worker is killed whatever it is doing.
DRAIN_GRACE = 0.5
MAX_SEND_IDS = 10_000  # `station send --id` ids remembered, so a retry never duplicates


class _IpcTransport:
    """A phone's WebSocket as seen from the worker: frames relayed by the supervisor."""

    def __init__(self, out: ipc.FrameWriter, conn: int) -> None:
        self._out = out
        self._conn = conn

    async def send(self, data: bytes) -> None:
        await self._out.write(ipc.Frame(ipc.FrameType.SEND, self._conn, data))

    async def close(self, reason: str) -> None:
        await self._out.write(ipc.Frame(ipc.FrameType.CLOSE, self._conn, reason.encode()))


class Worker:
    def __init__(self, args: argparse.Namespace, out: ipc.FrameWriter) -> None:
        self.args = args
        self.out = out
        self.settings = Settings(queue_max_count=args.queue_limit)
        self.addresses = [_parse_address(a) for a in args.address]
        self.mirror: Mirror | None = None
        self.pump: EndpointPump | None = None
        self.stopping: asyncio.Event = asyncio.Event()
        self.stop_reason = "shutdown"
        self.conn_map: dict[int, int] = {}  # supervisor conn -> pump conn
        self.control_server: asyncio.AbstractServer | None = None
        self.control_path: Path | None = None
        self.last_acked = -1
        self.send_ids: dict[str, int] = {}  # `station send --id` -> the seq it got
        self.view: SessionView | None = None
        self.record: SessionRecord | None = None  # once paired
        self.fate_waiters: list[asyncio.Future[None]] = []
        self.receipt: Receipt | None = None  # signed at logout
        self.shown: dict[bytes, tuple[str, str, float]] = {}  # offer id -> URI, code, expiry

    # -- offers ----------------------------------------------------------------------

    def make_offer(self) -> StationOffer:
        """A fresh offer. The core calls this when an offer rotates (its deadline, not a
        sleep here) or after a pairing that spent one never completed."""
        ttl, grace = self.args.offer_ttl, OFFER_GRACE
        # The URI stays usable through the grace after its rotation.
        offer, keypair = new_offer(
            self.args.name, self.addresses, now=time.time() + grace + 1, ttl=ttl
        )
        code = generate_code()
        self.shown[offer.offer_id] = (offer.to_uri(), code, time.time() + ttl)
        while len(self.shown) > 4:
            self.shown.pop(next(iter(self.shown)))
        return StationOffer(offer.offer_id, keypair, offer.psk(), code)

    async def announce_offer(self, offer_id: bytes, previous_id: bytes | None) -> None:
        assert self.pump is not None
        endpoint = self.pump.endpoint
        assert isinstance(endpoint, StationEndpoint)
        uri, code, expires_at = self.shown[offer_id]
        await self.out.write(
            ipc.event_frame(
                event="offer",
                offer_id=offer_id.hex(),
                previous_offer_id=previous_id.hex() if previous_id else None,
                pair_uri=uri,
                pair_code=code,
                expires_at=int(expires_at),
                code_paused_s=round(endpoint.offers.paused_for(self.pump.now()), 1),
            )
        )

    # -- events from the tunnel -------------------------------------------------------

    async def on_event(self, event: Event) -> None:
        assert self.pump is not None
        endpoint = self.pump.endpoint
        assert isinstance(endpoint, StationEndpoint)
        if isinstance(event, Paired):
            self.record = SessionRecord(event.session_id.hex(), self.args.name)
            endpoint.answer_close = False  # our last words (the receipt) precede our Close
            await self.open_control(event.session_id)
            page = await self.open_view(event.session_id.hex(), event.fingerprint or "")
            await self.out.write(
                ipc.event_frame(
                    event="paired",
                    session=event.session_id.hex(),
                    fingerprint=event.fingerprint,
                    device=(endpoint.phone_key or b"").hex()[:16],
                    control=str(self.control_path),
                    page=page,
                )
            )
        elif isinstance(event, OfferRotated):
            await self.announce_offer(event.offer_id, event.previous_id)
        elif isinstance(event, PairingFailed):
            # Only attempts that count: a wrong code, or a pairing that authenticated and
            # never completed. Junk hellos are refused without an event.
            await self.out.write(ipc.event_frame(event="pairing_failed", reason=event.reason))
        elif isinstance(event, CodePaused):
            await self.out.write(
                ipc.event_frame(
                    event="code_paused",
                    paused_s=round(event.seconds, 1),
                    failures=event.failures,
                    pair_code=event.code,
                )
            )
        elif isinstance(event, ResumeGap):
            await self.out.write(
                ipc.event_frame(event="resume_gap", first=event.first, last=event.last)
            )
        elif isinstance(event, LinkUp):
            await self.out.write(ipc.event_frame(event="link_up", resumed=event.resumed))
            await self.report_acked()  # a resume may have acknowledged some at once
            if self.record is not None:
                # Latest state, sent again on every link: the receipt key, our deadline.
                await self.pump.notify(encode(self.record.receipt_key))
                policy = self.record.current_policy()
                if policy is not None:
                    await self.pump.notify(encode(policy))
            await self.fates_moved()
            if self.view is not None:
                self.view.link_changed()
        elif isinstance(event, LinkDown):
            await self.out.write(ipc.event_frame(event="link_down", reason=event.reason))
            if self.view is not None:
                self.view.link_changed()
        elif isinstance(event, MessageReceived):
            await self.from_phone(event.payload)
        elif isinstance(event, NoticeReceived):
            await self.phone_notice(event.payload)
        elif isinstance(event, Acked):
            await self.report_acked()
            await self.fates_moved()
            if self.view is not None:
                self.view.acked(event.through)
        elif isinstance(event, LogoutRequested):
            self.stop_reason = "remote"  # the phone's unlink: our receipt, then our Close
            self.stopping.set()
        elif isinstance(event, SessionEnded):
            reason = "remote" if event.by_peer else self.stop_reason
            self.stop_reason = reason
            undelivered = [seq for seq, _ in endpoint.queue.items()]
            if endpoint.ended_refusal is not None:
                # The answer to every later resume, MACed under the secrets this
                # process is about to forget: the supervisor keeps it once we are gone.
                await self.out.write(
                    ipc.event_frame(event="session_refusal", refusal=endpoint.ended_refusal.hex())
                )
            await self.out.write(
                ipc.event_frame(event="ended", reason=reason, undelivered_seqs=undelivered)
            )
            self.stopping.set()

    async def from_phone(self, payload: bytes) -> None:
        """A sequenced message from the phone: its mirror, or its word on commands."""
        assert self.mirror is not None
        try:
            message = decode(payload)
        except WireError as exc:
            await self.out.write(ipc.event_frame(event="mirror_error", reason=str(exc)))
            return
        if isinstance(message, Fates) and self.record is not None:
            await self.fates_changed(self.record.phone_says(message))
            return
        if not isinstance(message, MirrorUpdate):
            reason = f"unexpected {type(message).__name__} message from the phone"
            await self.out.write(ipc.event_frame(event="mirror_error", reason=reason))
            return
        await self.mirror.apply(message)
        if self.view is not None:
            self.view.mirrored(message)
        chats, messages = await self.mirror.counts()
        await self.out.write(
            ipc.event_frame(event="mirror", version=message.version, chats=chats, messages=messages)
        )

    async def phone_notice(self, payload: bytes) -> None:
        try:
            notice = decode(payload)
        except WireError as exc:
            await self.out.write(ipc.event_frame(event="mirror_error", reason=str(exc)))
            return
        if isinstance(notice, Device) and self.record is not None:
            self.record.device = notice
            await self.out.write(
                ipc.event_frame(event="device", name=notice.name, battery=notice.battery)
            )
            if self.view is not None:
                self.view.health(self.record.summary())

    async def fates_moved(self) -> None:
        """The link sent or heard something: commands may now be sent or applied."""
        if self.record is not None and self.pump is not None:
            endpoint = self.pump.endpoint
            assert isinstance(endpoint, StationEndpoint)
            await self.fates_changed(self.record.link_moved(endpoint))

    async def fates_changed(self, changed: list[CommandFate]) -> None:
        if not changed or self.record is None:
            return
        if self.view is not None:
            self.view.fates(changed)
            self.view.health(self.record.summary())
        await self.out.write(ipc.event_frame(event="commands", **self.record.summary()))
        waiters, self.fate_waiters = self.fate_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for_fates(self, seqs: list[int], wait: float) -> dict[str, Any]:
        """`station send --wait`: until every seq is applied (or settled), or the timeout."""
        assert self.record is not None
        settled = ("applied", "expired", "discarded", "undelivered")
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            fates = [self.record.fates.get(seq) for seq in seqs]
            states = [f.state.value if f is not None else "unknown" for f in fates]
            left = deadline - asyncio.get_running_loop().time()
            if all(state in settled for state in states) or left <= 0:
                return {"ok": True, "states": dict(zip(map(str, seqs), states, strict=True))}
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.fate_waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await waiter

    async def report_acked(self) -> None:
        assert self.pump is not None
        acked = self.pump.endpoint.channel.acked
        if acked != self.last_acked:
            self.last_acked = acked
            await self.out.write(ipc.event_frame(event="acked", through=acked))

    async def send_command(
        self,
        text: str,
        chat: str | None,
        send_id: str | None = None,
        ttl: float | None = None,
    ) -> dict[str, Any]:
        """Queue one typed command (from `station send` or the kiosk page).

        Every attempt counts as activity, accepted or not. The seq reaches the
        supervisor (and the pipe's kernel buffer) before the sender hears of it, so the
        supervisor's account of undelivered commands is exact even if we die next."""
        assert self.pump is not None
        await self.report_activity()
        if send_id is not None and send_id in self.send_ids:
            seq = self.send_ids[send_id]
            return {"ok": True, "seq": seq, "duplicate": True, "depth": self.depth()}
        ttl = ttl if ttl is not None else self.args.command_ttl
        try:
            payload = encode(Command(text, chat, round(time.time(), 3), ttl))
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        try:
            seq = self.pump.endpoint.send(payload, self.pump.now())
        except QueueFull as exc:
            return {"ok": False, "error": str(exc), "full": True, "depth": exc.depth}
        except SessionClosed:
            return {"ok": False, "error": "the session has ended"}
        if send_id is not None:
            self.send_ids[send_id] = seq
            if len(self.send_ids) > MAX_SEND_IDS:
                self.send_ids.pop(next(iter(self.send_ids)))
        await self.out.write(ipc.event_frame(event="queued", seq=seq))
        if self.record is not None:
            fate = self.record.queued(seq, ttl)
            await self.fates_changed([fate])
        await self.pump.drain()
        await self.fates_moved()
        return {"ok": True, "seq": seq, "depth": self.depth()}

    def depth(self) -> int:
        assert self.pump is not None
        return self.pump.endpoint.undelivered

    async def report_activity(self) -> None:
        await self.out.write(ipc.event_frame(event="activity"))

    # -- the session's page on the kiosk screen ----------------------------------------

    async def open_view(self, session: str, fingerprint: str) -> str | None:
        if not self.args.ui_origin:
            return None
        assert self.pump is not None and self.mirror is not None

        def logout() -> None:
            self.stop_reason = "explicit"
            self.stopping.set()

        self.view = SessionView(
            station=self.args.name,
            session=session,
            fingerprint=fingerprint,
            mirror=self.mirror,
            pump=self.pump,
            framed_by=self.args.ui_origin,
            send_command=self.send_command,
            on_logout=logout,
            on_activity=self.report_activity,
        )
        return await self.view.start()

    # -- the session's control socket ------------------------------------------------

    async def open_control(self, session_id: bytes) -> None:
        directory = Path(self.args.control_dir)
        self.control_path = directory / f"{session_id.hex()[:16]}.sock"
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()
        self.control_server = await asyncio.start_unix_server(
            self.handle_control, path=str(self.control_path)
        )
        os.chmod(self.control_path, 0o600)

    async def handle_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await serve_json_lines(reader, writer, self.control_request)

    async def control_request(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        assert self.pump is not None
        if op == "send":
            text, chat, send_id = request.get("text"), request.get("chat"), request.get("id")
            if not isinstance(text, str):
                return {"ok": False, "error": "send needs text"}
            if chat is not None and not isinstance(chat, str):
                return {"ok": False, "error": "chat must be a string"}
            if send_id is not None and (not isinstance(send_id, str) or len(send_id) > 200):
                return {"ok": False, "error": "id must be a string of at most 200 characters"}
            ttl = request.get("ttl")
            if ttl is not None and (not isinstance(ttl, int | float) or ttl <= 0):
                return {"ok": False, "error": "ttl must be a positive number of seconds"}
            return await self.send_command(text, chat, send_id, ttl)
        if op == "wait":
            seqs, timeout = request.get("seqs"), request.get("timeout")
            if not isinstance(seqs, list) or not all(isinstance(q, int) for q in seqs):
                return {"ok": False, "error": "wait needs seqs"}
            if not isinstance(timeout, int | float) or not 0 <= timeout <= 3600:
                return {"ok": False, "error": "timeout must be 0 to 3600 seconds"}
            return await self.wait_for_fates(seqs, float(timeout))
        if op == "status":
            endpoint = self.pump.endpoint
            chats, messages = await self.mirror.counts() if self.mirror else (0, 0)
            return {
                "ok": True,
                "linked": endpoint.linked,
                "queued": endpoint.undelivered,
                "chats": chats,
                "messages": messages,
            }
        return {"ok": False, "error": f"unknown op {op!r}"}

    # -- the supervisor pipe ---------------------------------------------------------

    async def read_supervisor(self, reader: asyncio.StreamReader) -> None:
        assert self.pump is not None
        while True:
            frame = await ipc.read_frame(reader)
            if frame is None:
                # The supervisor is gone: nothing of ours may outlive it.
                self.stop_reason = "shutdown"
                self.stopping.set()
                return
            if frame.type is ipc.FrameType.OPEN:
                self.conn_map[frame.conn] = await self.pump.attach(
                    _IpcTransport(self.out, frame.conn)
                )
            elif frame.type is ipc.FrameType.DATA:
                conn = self.conn_map.get(frame.conn)
                if conn is not None:
                    await self.pump.feed(conn, frame.body)
            elif frame.type is ipc.FrameType.LOST:
                conn = self.conn_map.pop(frame.conn, None)
                if conn is not None:
                    await self.pump.lost(conn)
            elif frame.type is ipc.FrameType.STOP:
                self.stop_reason = str(frame.json().get("reason", "explicit"))
                self.stopping.set()
            elif frame.type is ipc.FrameType.POLICY:
                policy = frame.json()
                logout_in, reason = float(policy["logout_in"]), str(policy["reason"])
                if self.view is not None:
                    self.view.deadline(logout_in, reason)
                # The phone hears it too: `medic-phone unlink` offline says when we end.
                if self.record is not None:
                    await self.pump.notify(encode(self.record.set_policy(logout_in, reason)))

    async def run(self, reader: asyncio.StreamReader) -> int:
        report = harden_process(expected_ppid=self.args.ppid)
        await self.out.write(ipc.event_frame(event="hardening", **report.as_dict()))
        db = await open_memory_db()
        self.mirror = Mirror(db)
        await self.mirror.setup()
        offer = self.make_offer()
        now = asyncio.get_running_loop().time()  # the pump's clock
        endpoint = StationEndpoint(
            self.settings,
            station=self.args.name,
            offer=offer,
            now=now,
            make_offer=self.make_offer,
            offer_ttl=self.args.offer_ttl,
            backoff=CodeBackoff.carried_over(
                self.args.code_streak, self.args.code_quiet_s, self.args.code_paused_s, now
            ),
        )
        self.pump = EndpointPump(endpoint, self.on_event)
        await self.announce_offer(offer.offer_id, None)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # A process-group signal (Ctrl-C, systemd's stop) reaches workers directly:
            # log out as for a shutdown, so the Close frame goes and the socket is removed.
            loop.add_signal_handler(sig, self.stopping.set)
        tasks = [asyncio.create_task(self.read_supervisor(reader))]
        await self.pump.drain()  # arms the timer at the first rotation
        await self.stopping.wait()
        if endpoint.ended is None:
            await self.drain_then_close(endpoint)
        # The reader may be inside a drain that holds our SessionEnded (and so the
        # `ended` event with the undelivered seqs): let it finish before it is cancelled.
        await self.pump.settle()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.view is not None:
            await self.view.close(self.stop_reason)
        await self.pump.aclose()
        if self.control_server is not None:
            self.control_server.close()
        if self.control_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.control_path.unlink()
        await db.close()
        return 0

    async def drain_then_close(self, endpoint: StationEndpoint) -> None:
        """Give a linked phone the queue (briefly), then the signed wipe receipt, then
        our Close: the receipt is the last thing the phone hears of this session."""
        assert self.pump is not None
        deadline = time.monotonic() + DRAIN_GRACE
        while (
            endpoint.linked
            and endpoint.undelivered
            and endpoint.logout_requested is None
            and time.monotonic() < deadline
        ):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - time.monotonic()):
                    await self.pump.wait_changed()
        if self.record is not None:
            await self.fates_moved()
            undelivered = [seq for seq, _ in endpoint.queue.items()]
            receipt = self.record.receipt(self.stop_reason, undelivered)
            if self.view is not None:
                self.view.fates(self.record.fates.all())
            await self.pump.notify(encode(receipt))
            self.receipt = receipt
            # A phone away now gets it later, in the session's authenticated refusal.
            endpoint.ended_receipt = receipt.signature + receipt.body
        await self.pump.close(self.stop_reason)
        # Let the Close record reach the supervisor before the process ends.
        await asyncio.sleep(0)


def _parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="station.worker", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="socketpair fd to the supervisor")
    parser.add_argument("--name", required=True)
    parser.add_argument("--address", action="append", default=[], help="HOST:PORT, repeatable")
    parser.add_argument("--control-dir", required=True)
    parser.add_argument("--offer-ttl", type=float, default=30.0)
    parser.add_argument("--ppid", type=int, required=True)
    parser.add_argument("--queue-limit", type=int, default=10_000)
    # The station's wrong-code streak so far (see CodeBackoff.carried_over).
    parser.add_argument("--code-streak", type=int, default=0)
    parser.add_argument("--code-quiet-s", type=float, default=0.0)
    parser.add_argument("--code-paused-s", type=float, default=0.0)
    parser.add_argument(
        "--command-ttl", type=float, default=None, help="default TTL of a command, seconds"
    )
    parser.add_argument(
        "--ui-origin", default=None, help="the pairing screen's origin (frames this page)"
    )
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> int:
    sock = socket.socket(fileno=args.fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    out = ipc.FrameWriter(writer)
    worker = Worker(args, out)
    try:
        return await worker.run(reader)
    finally:
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        out.close()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return asyncio.run(_main(args))
    except StationError as exc:
        print(f"station worker: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
