"""The running link pushes the phone's state when it changes, not on a tick: right after
its own commit, when another process says it wrote (``changed``), and, for a writer that
did not say, at the ``data_version`` recheck. A real node and store, a real station
endpoint over websockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from medic_phone.chores import Chores
from medic_phone.link_control import ask, link_tag, tell_links
from medic_phone.node import PhoneNode, Target
from medic_phone.store import PhoneStore, Row
from tunnel.aio.pump import EndpointPump
from tunnel.aio.websocket import pump_connection, ws_options
from tunnel.events import Event, MessageReceived
from tunnel.handshake import StationOffer
from tunnel.identity import PhoneIdentity
from tunnel.offer import new_offer
from tunnel.pake import generate_code
from tunnel.session import StationEndpoint
from tunnel.settings import Settings
from wire.app import Command, MirrorUpdate, decode, encode
from wire.control import Changed, Noted

CEILING = 20.0  # s: generous; each path below has no other way to get there
NEVER = 3600.0  # s: a recheck that never comes within a test


class Rig:
    """A station endpoint that records every mirror update, and the phone's node."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.updates: list[MirrorUpdate] = []
        self._seen = asyncio.Event()
        settings = Settings()
        offer, keypair = new_offer("ward", [("127.0.0.1", 1)], now=time.time(), ttl=60)
        self.offer = offer
        self.station = StationEndpoint(
            settings,
            station="ward",
            offer=StationOffer(offer.offer_id, keypair, offer.psk(), generate_code()),
        )
        self.settings = settings
        self.node: PhoneNode | None = None
        self.events: list[dict[str, object]] = []

    async def _on_station(self, event: Event) -> None:
        if isinstance(event, MessageReceived):
            message = decode(event.payload)
            if isinstance(message, MirrorUpdate):
                self.updates.append(message)
                self._seen.set()

    def bodies(self) -> list[str]:
        return [m[3] for u in self.updates for m in u.messages]

    async def wait_body(self, body: str) -> float:
        """Seconds until the mirror was sent a message with this body."""
        start = time.monotonic()
        async with asyncio.timeout(CEILING):
            while body not in self.bodies():
                self._seen.clear()
                await self._seen.wait()
        return time.monotonic() - start

    @contextlib.asynccontextmanager
    async def linked(self, chores: Chores) -> AsyncIterator[Rig]:
        self.pump = pump = EndpointPump(self.station, self._on_station)

        async def handler(ws: ServerConnection) -> None:
            await pump_connection(pump, ws)

        options = ws_options(self.settings.max_record)
        async with serve(handler, "127.0.0.1", 0, **options) as server:  # type: ignore[arg-type]
            port = int(next(iter(server.sockets)).getsockname()[1])
            async with PhoneStore.create(self.home) as store:
                self.node = node = PhoneNode(
                    store, PhoneIdentity.generate(), self.events.append, home=self.home
                )
                node.chores = chores
                offer = self.offer
                target = Target(
                    f"offer:{offer.offer_id.hex()}",
                    (("127.0.0.1", port),),
                    "ward",
                    uri_offer=(offer.offer_id, offer.public_key, offer.psk()),
                    mdns=False,
                )
                self.socket = self.home / f"link-{link_tag(target.key)}.sock"
                runner = asyncio.create_task(node.run(target))
                try:
                    async with asyncio.timeout(CEILING):
                        while not self.updates:  # the snapshot: linked, and pushed once
                            self._seen.clear()
                            await self._seen.wait()
                    yield self
                finally:
                    await pump.close("test done")
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(runner, 10)
                    runner.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await runner
                    await pump.aclose()


async def _say(home: Path, text: str) -> None:
    """Another writer: its own connection to the store, as `medic-phone say` has."""
    async with PhoneStore.open(home) as other:
        await other.ensure_chat("notes", "Notes")
        await other.add_message("notes", "medic (phone)", text, time.time())


@pytest.mark.asyncio
async def test_a_command_applied_is_pushed_right_after_its_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig(tmp_path / "phone")
    async with rig.linked(Chores(recheck=NEVER, contact_delay=NEVER)):
        node = rig.node
        assert node is not None
        # Linked and quiet: nothing is due for an hour (no tick to wake the node).
        deadline = node.chores.next_deadline()
        assert deadline is not None and deadline > asyncio.get_running_loop().time() + NEVER / 2
        reads: list[int] = []
        changes_since = node.store.changes_since

        async def counted(version: int) -> tuple[int, list[Row], list[Row]]:
            reads.append(version)
            return await changes_since(version)

        monkeypatch.setattr(node.store, "changes_since", counted)
        await rig.pump.send(encode(Command("start 500 ml saline")))
        took = await rig.wait_body("start 500 ml saline")
        print(f"applied -> pushed to the mirror in {took * 1000:.1f} ms")
        assert rig.updates[-1].kind == "changes"
        assert len(reads) == 1  # one change, one read of the store: no polling reads


@pytest.mark.asyncio
async def test_a_stream_of_commands_wakes_the_chores_once_a_push_not_once_a_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig(tmp_path / "phone")
    # After the first push, the next may go only an hour later: every command of the
    # stream after the first finds that push already waiting, and need not wake anything.
    async with rig.linked(Chores(gap=NEVER, recheck=NEVER, contact_delay=NEVER)):
        node = rig.node
        assert node is not None
        woken: list[float] = []
        due = node.chores.due

        def counted(now: float) -> Any:
            woken.append(now)
            return due(now)

        monkeypatch.setattr(node.chores, "due", counted)
        await rig.pump.send(encode(Command("first")))
        await rig.wait_body("first")  # the snapshot was the last push: this one goes at once
        woken.clear()
        applied = asyncio.Event()

        def emit(event: dict[str, Any]) -> None:
            rig.events.append(event)
            if event.get("event") == "command":
                applied.set()

        node.emit = emit
        for i in range(30):  # one at a time: each is its own commit
            applied.clear()
            await rig.pump.send(encode(Command(f"stream {i}")))
            async with asyncio.timeout(CEILING):
                await applied.wait()
        # 30 commits, each applied and acknowledged: at most the first moves a deadline.
        assert len(woken) <= 1, f"the chores woke {len(woken)} times for 30 commands"


@pytest.mark.asyncio
async def test_the_last_contact_is_written_down_when_the_link_stops(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "phone")
    async with rig.linked(Chores(recheck=NEVER, contact_delay=NEVER)):
        pass  # the contact's deadline is an hour away: only the stop can write it
    assert rig.node is not None and rig.node.last_contact is not None
    async with PhoneStore.open(rig.home) as store:
        [link] = await store.links()
    assert link["last_contact"] == rig.node.last_contact


@pytest.mark.asyncio
async def test_another_writer_that_says_so_is_pushed_at_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "phone")
    async with rig.linked(Chores(recheck=NEVER)):
        await _say(rig.home, "bed 4: sats 97%")
        assert "bed 4: sats 97%" not in rig.bodies()
        told = await asyncio.to_thread(tell_links, rig.home)
        assert told == 1
        took = await rig.wait_body("bed 4: sats 97%")
        print(f"told -> pushed to the mirror in {took * 1000:.1f} ms")
        reply = await asyncio.to_thread(ask, rig.socket, Changed(), Noted, timeout=5)
        assert reply == Noted()


@pytest.mark.asyncio
async def test_a_writer_that_says_nothing_is_found_by_the_recheck(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "phone")
    async with rig.linked(Chores(recheck=0.2)):
        await _say(rig.home, "a silent note")
        await rig.wait_body("a silent note")


@pytest.mark.asyncio
async def test_other_links_are_told_once_a_push_not_once_a_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each telling is a job on a thread: a commit alone waits for its push to be told."""
    told: list[int] = []

    def tell(home: Path, *, skip: Path | None = None) -> int:
        told.append(len(told) + 1)
        return 0

    monkeypatch.setattr("medic_phone.node.tell_links", tell)
    async with PhoneStore.create(tmp_path / "phone") as store:
        node = PhoneNode(store, PhoneIdentity.generate(), lambda e: None, home=tmp_path)

        async def settled() -> None:
            """Every telling done, including any that one started when it finished."""
            async with asyncio.timeout(CEILING):
                while (telling := node._telling) is not None and not telling.done():
                    await asyncio.wait({telling})  # the node's done-callback runs first

        node.changed_here()
        node._tell()  # a push: told
        node.changed_here()  # a commit while that telling runs
        await settled()
        assert told == [1]  # not told again until its push
        node._tell()  # its push
        node._tell()  # a push with nothing new: nothing to tell
        await settled()
        assert told == [1, 2]
        node.changed_here()
        node._tell()  # a push: told
        node.changed_here()
        node._tell()  # a push while that telling runs: told right after it
        await settled()
        assert told == [1, 2, 3, 4]
