"""The store's apply path: one hop to SQLite's thread per burst, and still exactly once."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiosqlite
import pytest
import pytest_asyncio

from medic_phone.errors import StoreError
from medic_phone.store import DB_FILE, IncomingCommand, PhoneStore, TypedMessages

LINK = "a1" * 16
TYPED = TypedMessages("medic (kiosk)", "kiosk", "Typed at the kiosk")
# aiosqlite's public calls that each make one round trip to SQLite's thread.
HOPS = ("execute", "executemany", "execute_fetchall", "execute_insert", "executescript")


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[PhoneStore]:
    async with PhoneStore.create(tmp_path / "phone") as opened:
        await opened.create_link(LINK, station="ward-3", key="k")
        yield opened


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for name in HOPS:
        real = getattr(aiosqlite.Connection, name)

        def counted(
            self: aiosqlite.Connection, *args: Any, _real: Any = real, _n: str = name
        ) -> Any:
            calls.append(_n)
            return _real(self, *args)

        monkeypatch.setattr(aiosqlite.Connection, name, counted)
    return calls


def _burst(first: int, count: int, chat: str | None = None) -> list[IncomingCommand]:
    return [
        IncomingCommand(LINK, seq, f"c{seq}", "ward-3", float(seq), chat)
        for seq in range(first, first + count)
    ]


@pytest.mark.asyncio
async def test_a_command_is_one_hop_once_the_cursor_and_chat_are_known(
    store: PhoneStore, hops: list[str]
) -> None:
    await store.apply_commands(_burst(1, 1), as_messages=TYPED)
    assert len(hops) == 2  # the link's cursor is read once, then the burst
    hops.clear()
    for seq in range(2, 12):
        assert await store.apply_commands(_burst(seq, 1), as_messages=TYPED) == [True]
    assert hops == ["executemany"] * 10
    hops.clear()
    # A long burst is staged inside BEGIN ... COMMIT: three hops for a thousand commands.
    assert await store.apply_commands(_burst(12, 1_000), as_messages=TYPED) == [True] * 1_000
    assert hops == ["execute", "executemany", "execute"]
    version, _, messages = await store.snapshot(limit_messages=2_000)
    assert len(messages) == 1_011 and version == 1_012  # the kiosk chat, then each message
    assert [m["body"] for m in messages[-2:]] == ["c1010", "c1011"]


@pytest.mark.asyncio
async def test_the_push_reads_its_changes_in_one_hop(store: PhoneStore, hops: list[str]) -> None:
    """The mirror's push runs every few commands: one statement (one snapshot) that
    holds the store's lock for one hop, whatever changed."""
    await store.apply_commands(_burst(1, 30), as_messages=TYPED)
    hops.clear()
    version, chats, messages = await store.changes_since(0)
    assert hops == ["execute_fetchall"]
    assert version == 31 and [c["id"] for c in chats] == ["kiosk"]
    assert [m["body"] for m in messages] == [f"c{seq}" for seq in range(1, 31)]
    hops.clear()
    assert await store.changes_since(version) == (version, [], [])
    assert hops == ["execute_fetchall"]


@pytest.mark.asyncio
async def test_a_cursor_moved_by_another_connection_is_noticed(
    store: PhoneStore, tmp_path: Path
) -> None:
    """The cached cursor says 1; the file says 3: the trigger refuses, the store reads
    the file again, and seq 2 and 3 are duplicates, not applied twice."""
    assert await store.apply_commands(_burst(1, 1)) == [True]
    with sqlite3.connect(tmp_path / "phone" / DB_FILE) as other:
        other.execute("UPDATE links SET delivered = 3 WHERE id = ?", (LINK,))
    assert await store.apply_commands(_burst(2, 3)) == [False, False, True]
    assert await store.delivered(LINK) == 4
    assert [c["seq"] for c in await store.commands(LINK)] == [1, 4]


@pytest.mark.asyncio
@pytest.mark.parametrize("good", [2, 40])  # staged in autocommit; inside a transaction
async def test_a_burst_that_fails_half_way_leaves_nothing_behind(
    store: PhoneStore, good: int
) -> None:
    unbindable = cast(str, object())
    broken = [*_burst(1, good), IncomingCommand(LINK, good + 1, unbindable, "ward-3", 3.0)]
    with pytest.raises(StoreError):
        await store.apply_commands(broken, as_messages=TYPED)
    assert await store.commands() == [] and await store.delivered(LINK) == 0
    # The staged rows of the failed burst never ride along with the next one.
    assert await store.apply_commands(_burst(1, 1), as_messages=TYPED) == [True]
    assert [c["text"] for c in await store.commands()] == ["c1"]
    assert [m["body"] for m in (await store.snapshot())[2]] == ["c1"]


@pytest.mark.asyncio
async def test_expired_commands_are_kept_apart_in_the_same_burst(store: PhoneStore) -> None:
    burst = [
        IncomingCommand(LINK, 1, "on time", "ward-3", 1.0),
        IncomingCommand(LINK, 2, "too late", "ward-3", 2.0, expired=True),
        IncomingCommand(LINK, 3, "on time too", "ward-3", 3.0),
    ]
    assert await store.apply_commands(burst, as_messages=TYPED) == [True] * 3
    assert [c["seq"] for c in await store.pending()] == [2]
    version, _, messages = await store.snapshot()
    assert [m["body"] for m in messages] == ["on time", "on time too"] and version == 3
    assert await store.decide(LINK, 2, confirm=True, as_messages=TYPED, now=9.0)
    version, _, messages = await store.snapshot()
    assert [m["body"] for m in messages] == ["on time", "on time too", "too late"]
    assert version == 4
