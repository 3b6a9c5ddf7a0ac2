"""A session worker: one process per pairing offer and then per session.

Started fresh by the supervisor (``python -I -B -m station.worker``, never a fork), it
holds everything secret about one session: the offer's keys, the session's keys, the
outage queue and the mirror of the phone, all in RAM. Its stdin is a socketpair to the
supervisor (see ``wire.pipe``). Ending this process is the wipe.

Typed commands reach it on its own control socket, straight from ``station send``, so
no plaintext ever passes through the supervisor.
"""

from __future__ import annotations

if __name__ == "__main__":
    # This process is the worker (``-m station.worker``): before asyncio imports ssl.
    from station.lean import forgo_openssl

    forgo_openssl()

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import time
from pathlib import Path

from station.command_desk import CommandDesk
from station.errors import StationError
from station.fates import CommandFate
from station.kiosk.session_view import SessionView
from station.mirror import Mirror
from station.session_record import SessionRecord
from station.socket_paths import session_socket_path
from station.worker_args import parse_address, parse_args
from tunnel.aio.pump import EndpointPump
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
)
from tunnel.offer import new_offer
from tunnel.open_offers import OFFER_GRACE, CodeBackoff
from tunnel.pake import generate_code
from tunnel.settings import Settings
from tunnel.station_endpoint import StationEndpoint
from tunnel.station_handshake import StationOffer
from wipe.harden import harden_process
from wipe.memdb import open_memory_db
from wire import WireError, pipe
from wire.app import Device, Fates, MirrorUpdate, Receipt, decode, encode
from wire.pipe import PipeTransport

# Seconds a logging-out worker gives its queue to reach a linked phone; it fits inside
# the supervisor's STOP grace, after which the worker is killed whatever it is doing.
DRAIN_GRACE = 0.5


class Worker:
    def __init__(self, args: argparse.Namespace, out: pipe.Writer) -> None:
        self.args = args
        self.out = out
        self.settings = Settings(queue_max_count=args.queue_limit)
        self.addresses = [parse_address(a) for a in args.address]
        self.mirror: Mirror | None = None
        self.pump: EndpointPump | None = None
        self.stopping: asyncio.Event = asyncio.Event()
        self.stop_reason = "shutdown"
        self.conn_map: dict[int, int] = {}  # supervisor conn -> pump conn
        self.view: SessionView | None = None
        self.desk: CommandDesk | None = None  # once paired: commands and their fates
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
            pipe.OfferShown(
                offer_id=offer_id.hex(),
                pair_uri=uri,
                pair_code=code,
                expires_at=int(expires_at),
                previous_offer_id=previous_id.hex() if previous_id else None,
                code_paused_s=round(endpoint.offers.paused_for(self.pump.now()), 1),
            )
        )

    # -- events from the tunnel -------------------------------------------------------

    async def on_event(self, event: Event) -> None:
        assert self.pump is not None
        endpoint = self.pump.endpoint
        assert isinstance(endpoint, StationEndpoint)
        if isinstance(event, Paired):
            session = event.session_id.hex()
            endpoint.answer_close = False  # our last words (the receipt) precede our Close
            self.desk = CommandDesk(
                self.pump,
                SessionRecord(session, self.args.name),
                self.out.write,
                default_ttl=self.args.command_ttl,
                counts=self.mirror.counts if self.mirror else _no_counts,
            )
            control = session_socket_path(Path(self.args.control_dir), session)
            await self.desk.open(control)
            page = await self.open_view(session, event.fingerprint or "")
            await self.out.write(
                pipe.SessionPaired(
                    session=session,
                    fingerprint=event.fingerprint or "",
                    device=(endpoint.phone_key or b"").hex()[:16],
                    control=str(control),
                    page=page,
                )
            )
        elif isinstance(event, OfferRotated):
            await self.announce_offer(event.offer_id, event.previous_id)
        elif isinstance(event, PairingFailed):
            # Only attempts that count: a wrong code, or a pairing that authenticated and
            # never completed. Junk hellos are refused without an event.
            await self.out.write(pipe.PairingFailed(event.reason))
        elif isinstance(event, CodePaused):
            await self.out.write(
                pipe.CodePaused(round(event.seconds, 1), event.failures, event.code)
            )
        elif isinstance(event, ResumeGap):
            await self.out.write(pipe.ResumeGap(event.first, event.last))
        elif isinstance(event, LinkUp):
            await self.out.write(pipe.LinkUp(event.resumed))
            if self.desk is not None:
                await self.desk.acked()  # a resume may have acknowledged some at once
                # Latest state, sent again on every link: the receipt key, our deadline.
                record = self.desk.record
                await self.pump.notify(encode(record.receipt_key))
                policy = record.current_policy()
                if policy is not None:
                    await self.pump.notify(encode(policy))
                await self.desk.moved()
            if self.view is not None:
                self.view.link_changed()
        elif isinstance(event, LinkDown):
            await self.out.write(pipe.LinkDown(event.reason))
            if self.view is not None:
                self.view.link_changed()
        elif isinstance(event, MessageReceived):
            await self.from_phone(event.payload)
        elif isinstance(event, NoticeReceived):
            await self.phone_notice(event.payload)
        elif isinstance(event, Acked):
            if self.desk is not None:
                await self.desk.acked()
                await self.desk.moved()
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
                await self.out.write(pipe.SessionRefusal(endpoint.ended_refusal))
            await self.out.write(pipe.Ended(reason, tuple(undelivered)))
            self.stopping.set()

    async def from_phone(self, payload: bytes) -> None:
        """A sequenced message from the phone: its mirror, or its word on commands."""
        assert self.mirror is not None
        try:
            message = decode(payload)
        except WireError as exc:
            await self.out.write(pipe.MirrorError(str(exc)))
            return
        if isinstance(message, Fates) and self.desk is not None:
            await self.desk.changed(self.desk.record.phone_says(message))
            return
        if not isinstance(message, MirrorUpdate):
            kind = type(message).__name__
            await self.out.write(pipe.MirrorError(f"unexpected {kind} message from the phone"))
            return
        await self.mirror.apply(message)
        if self.view is not None:
            self.view.mirrored(message)
        chats, messages = await self.mirror.counts()
        await self.out.write(pipe.Mirrored(message.version, chats, messages))

    async def phone_notice(self, payload: bytes) -> None:
        try:
            notice = decode(payload)
        except WireError as exc:
            await self.out.write(pipe.MirrorError(str(exc)))
            return
        if isinstance(notice, Device) and self.desk is not None:
            record = self.desk.record
            record.device = notice
            await self.out.write(pipe.DeviceSeen(notice.name, notice.battery))
            if self.view is not None:
                self.view.health(record.summary(), record.device)

    def fates_shown(self, fates: list[CommandFate]) -> None:
        if self.view is not None and self.desk is not None:
            self.view.fates(fates)
            self.view.health(self.desk.record.summary(), self.desk.record.device)

    # -- the session's page on the kiosk screen ----------------------------------------

    async def open_view(self, session: str, fingerprint: str) -> str | None:
        if not self.args.ui_origin:
            return None
        assert self.pump is not None and self.mirror is not None and self.desk is not None

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
            send_command=self.desk.send,
            on_logout=logout,
            on_activity=self.desk.activity,
        )
        self.desk.on_fates = self.fates_shown
        return await self.view.start()

    # -- the supervisor pipe ---------------------------------------------------------

    async def read_supervisor(self, reader: asyncio.StreamReader) -> None:
        assert self.pump is not None
        while True:
            message = await pipe.read(reader)
            match message:
                case None:
                    # The supervisor is gone: nothing of ours may outlive it.
                    self.stop_reason = "shutdown"
                    self.stopping.set()
                    return
                case pipe.Open(conn):
                    self.conn_map[conn] = await self.pump.attach(PipeTransport(self.out, conn))
                case pipe.Data(conn, data):
                    if (ours := self.conn_map.get(conn)) is not None:
                        await self.pump.feed(ours, data)
                case pipe.Lost(conn):
                    if (ours := self.conn_map.pop(conn, None)) is not None:
                        await self.pump.lost(ours)
                case pipe.Stop(reason):
                    self.stop_reason = reason
                    self.stopping.set()
                case pipe.PolicyDeadline(logout_in, reason):
                    if self.view is not None:
                        self.view.deadline(logout_in, reason)
                    # The phone hears it too: `medic-phone unlink` offline says when we end.
                    if self.desk is not None:
                        policy = self.desk.record.set_policy(logout_in, reason)
                        await self.pump.notify(encode(policy))
                case _:
                    raise WireError(f"the supervisor sent a {type(message).__name__}")

    async def run(self, reader: asyncio.StreamReader) -> int:
        report = harden_process(expected_ppid=self.args.ppid)
        measures = {n: pipe.Measure(m.applied, m.detail) for n, m in report.measures.items()}
        await self.out.write(pipe.Hardening(measures))
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
        if self.desk is not None:
            self.desk.close()
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
        if self.desk is not None:
            await self.desk.moved()
            undelivered = [seq for seq, _ in endpoint.queue.items()]
            receipt = self.desk.record.receipt(self.stop_reason, undelivered)
            if self.view is not None:
                self.view.fates(self.desk.record.fates.all())
            await self.pump.notify(encode(receipt))
            self.receipt = receipt
            # A phone away now gets it later, in the session's authenticated refusal.
            endpoint.ended_receipt = receipt.signature + receipt.body
        await self.pump.close(self.stop_reason)
        # Let the Close record reach the supervisor before the process ends.
        await asyncio.sleep(0)


async def _no_counts() -> tuple[int, int]:
    return 0, 0


async def _main(args: argparse.Namespace) -> int:
    sock = socket.socket(fileno=args.fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    out = pipe.Writer(writer)
    worker = Worker(args, out)
    try:
        return await worker.run(reader)
    finally:
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        out.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return asyncio.run(_main(args))
    except (StationError, WireError) as exc:
        print(f"station worker: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
