"""The phone's store: exactly-once commands, durability, damage detection, versioned state."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import aiosqlite
import pytest
import pytest_asyncio

from medic_phone.errors import (
    NotInitialized,
    PhoneUsageError,
    StoreCorrupt,
    StoreError,
    StoreMissing,
)
from medic_phone.store import (
    DB_FILE,
    SCHEMA_VERSION,
    IncomingCommand,
    PhoneStore,
    TypedMessages,
    migrate,
)

LINK = "a1" * 16
OTHER = "b2" * 16


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "phone"


@pytest_asyncio.fixture
async def store(home: Path) -> AsyncIterator[PhoneStore]:
    async with PhoneStore.create(home) as opened:
        await opened.create_link(LINK, station="ward-3", key="code:1234-5678")
        yield opened


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _put_database(home: Path, data: bytes) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / DB_FILE).write_bytes(data)


def _empty_directory(path: Path) -> Path:
    path.mkdir()
    return path


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def _seqs(store: PhoneStore, link_id: str = LINK) -> list[int]:
    return [row["seq"] for row in await store.commands(link_id)]


# -- settings and permissions ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_connection_settings_are_durable_and_memory_temp(store: PhoneStore) -> None:
    settings = await store.settings()
    assert settings == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "foreign_keys": 1,
        "temp_store": 2,  # MEMORY
    }


@pytest.mark.asyncio
async def test_wal_mode_is_in_the_file(store: PhoneStore, home: Path) -> None:
    with sqlite3.connect(home / DB_FILE) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.asyncio
@pytest.mark.usefixtures("open_umask")
async def test_home_0700_and_files_0600(home: Path) -> None:
    async with PhoneStore.create(home) as store:
        await store.create_link(LINK, station="ward-3", key="k")
        await store.apply_command(LINK, 1, "hello", "ward-3", 1.0)
        assert _mode(home) == 0o700
        for name in (DB_FILE, DB_FILE + "-wal", DB_FILE + "-shm"):
            assert _mode(home / name) == 0o600, name


# -- exactly once ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_apply_is_exactly_once(store: PhoneStore) -> None:
    assert await store.apply_command(LINK, 1, "one", "ward-3", 10.0)
    assert not await store.apply_command(LINK, 1, "one again", "ward-3", 11.0)
    assert await store.apply_command(LINK, 2, "two", "ward-3", 12.0)
    assert not await store.apply_command(LINK, 1, "one, late", "ward-3", 13.0)
    assert await store.delivered(LINK) == 2
    rows = await store.commands()
    assert [(r["seq"], r["text"], r["received_at"]) for r in rows] == [
        (1, "one", 10.0),
        (2, "two", 12.0),
    ]


@pytest.mark.asyncio
async def test_a_gap_is_refused_and_changes_nothing(store: PhoneStore) -> None:
    await store.apply_command(LINK, 1, "one", "ward-3", 1.0)
    with pytest.raises(StoreError, match=r"command 3 .* would skip 2\.\.2"):
        await store.apply_command(LINK, 3, "three", "ward-3", 1.0)
    assert await store.delivered(LINK) == 1
    assert await _seqs(store) == [1]
    assert await store.apply_command(LINK, 2, "two", "ward-3", 1.0)


@pytest.mark.asyncio
async def test_the_same_command_applied_concurrently_lands_once(store: PhoneStore) -> None:
    results = await asyncio.gather(
        *(store.apply_command(LINK, 1, "one", "ward-3", 1.0) for _ in range(10))
    )
    assert sorted(results) == [False] * 9 + [True]
    assert await _seqs(store) == [1]


@pytest.mark.asyncio
async def test_a_cancelled_transaction_never_leaves_one_open(store: PhoneStore) -> None:
    # A task cancelled while its BEGIN or COMMIT is on SQLite's thread (a link stopped
    # at logout) must not leave a transaction open for the next one: the soak found
    # "cannot start a transaction within a transaction" after ~100 cycles.
    applied = 0
    for ticks in range(60):
        if ticks % 2:
            task: asyncio.Task[object] = asyncio.create_task(store.commands(LINK))
        else:
            task = asyncio.create_task(
                store.apply_command(LINK, applied + 1, f"c{applied + 1}", "ward-3", 1.0)
            )
        for _ in range(ticks % 8):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Whole or nothing, and the store goes on working.
        applied = await store.delivered(LINK)
        assert await _seqs(store) == list(range(1, applied + 1))
        assert await store.find_link("no such key") is None
    assert await store.apply_command(LINK, applied + 1, "after", "ward-3", 2.0)


@pytest.mark.asyncio
async def test_concurrent_readers_and_writers_share_the_connection(store: PhoneStore) -> None:
    await store.ensure_chat("c", "Chat")
    writes = [store.apply_command(LINK, seq, f"c{seq}", "ward-3", 1.0) for seq in range(1, 51)]
    pushes = [store.add_message("c", "me", f"m{i}", float(i)) for i in range(20)]
    reads = [store.snapshot() for _ in range(10)]
    await asyncio.gather(*writes, *pushes, *reads)
    assert await _seqs(store) == list(range(1, 51))
    assert await store.version() == 21


@pytest.mark.asyncio
async def test_typed_commands_become_messages_in_the_same_transaction(store: PhoneStore) -> None:
    await store.ensure_chat("ward-3", "Ward 3")
    before = await store.version()
    typed = TypedMessages("medic (kiosk)", "kiosk", "Typed at the kiosk")
    batch = [
        IncomingCommand(LINK, 1, "into ward 3", "st", 10.0, "ward-3"),
        IncomingCommand(LINK, 2, "no such chat", "st", 11.0, "ward-9"),
        IncomingCommand(LINK, 3, "no chat named", "st", 12.0),
        IncomingCommand(LINK, 3, "a duplicate", "st", 13.0, "ward-3"),
    ]
    assert await store.apply_commands(batch, as_messages=typed) == [True, True, True, False]
    assert await store.apply_commands(batch, as_messages=typed) == [False] * 4
    version, chats, messages = await store.snapshot()
    assert {c["id"]: c["title"] for c in chats} == {
        "ward-3": "Ward 3",
        "kiosk": "Typed at the kiosk",
    }
    bodies = [(m["chat"], m["body"], m["sender"]) for m in messages]
    assert bodies == [
        ("ward-3", "into ward 3", "medic (kiosk)"),
        ("kiosk", "no such chat", "medic (kiosk)"),
        ("kiosk", "no chat named", "medic (kiosk)"),
    ]
    # One version per change, none skipped: the kiosk chat, then three messages.
    assert version == before + 4
    _, _, changed = await store.changes_since(before + 1)
    assert [m["body"] for m in changed] == ["into ward 3", "no such chat", "no chat named"]
    # Later batches find the chats they know without asking (chats are never deleted).
    more = [
        IncomingCommand(LINK, 4, "again in ward 3", "st", 14.0, "ward-3"),
        IncomingCommand(LINK, 5, "again no chat", "st", 15.0),
    ]
    assert await store.apply_commands(more, as_messages=typed) == [True, True]
    _, _, latest = await store.changes_since(version)
    assert [(m["chat"], m["body"]) for m in latest] == [
        ("ward-3", "again in ward 3"),
        ("kiosk", "again no chat"),
    ]


@pytest.mark.asyncio
async def test_batch_applies_in_one_transaction(store: PhoneStore) -> None:
    await store.create_link(OTHER, station="ward-4", key="k2")
    batch = [
        IncomingCommand(LINK, 1, "a1", "ward-3", 1.0),
        IncomingCommand(OTHER, 1, "b1", "ward-4", 2.0),
        IncomingCommand(LINK, 2, "a2", "ward-3", 3.0),
        IncomingCommand(LINK, 2, "a2 again", "ward-3", 4.0),
        IncomingCommand(LINK, 3, "a3", "ward-3", 5.0),
    ]
    assert await store.apply_commands(batch) == [True, True, True, False, True]
    assert await store.apply_commands(batch) == [False] * 5
    assert await store.apply_commands([]) == []
    assert [r["text"] for r in await store.commands()] == ["a1", "b1", "a2", "a3"]
    assert await store.delivered(LINK) == 3 and await store.delivered(OTHER) == 1


@pytest.mark.asyncio
async def test_a_gap_inside_a_batch_rolls_back_the_whole_batch(store: PhoneStore) -> None:
    batch = [IncomingCommand(LINK, seq, f"c{seq}", "ward-3", 1.0) for seq in (1, 2, 4)]
    with pytest.raises(StoreError, match="nothing was applied"):
        await store.apply_commands(batch)
    assert await store.delivered(LINK) == 0
    assert await store.commands() == []


@pytest.mark.asyncio
async def test_a_failure_after_the_insert_rolls_back(store: PhoneStore) -> None:
    """The second command cannot be bound: the first one's insert must not survive."""
    unbindable = cast(str, object())
    batch = [
        IncomingCommand(LINK, 1, "ok", "ward-3", 1.0),
        IncomingCommand(LINK, 2, unbindable, "ward-3", 1.0),
    ]
    with pytest.raises(StoreError) as caught:
        await store.apply_commands(batch)
    assert not isinstance(caught.value, StoreCorrupt)
    assert await store.delivered(LINK) == 0 and await store.commands() == []
    assert await store.apply_command(LINK, 1, "ok", "ward-3", 1.0)


@pytest.mark.asyncio
async def test_unknown_link_and_bad_seq_are_refused(store: PhoneStore) -> None:
    with pytest.raises(StoreError, match="no link"):
        await store.apply_command("ff" * 16, 1, "x", "ward-3", 1.0)
    with pytest.raises(PhoneUsageError, match="start at 1"):
        await store.apply_command(LINK, 0, "x", "ward-3", 1.0)
    with pytest.raises(StoreError, match="no link"):
        await store.delivered("ff" * 16)


_CRASHER = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from medic_phone.store import PhoneStore

    home, link, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

    def die():
        os._exit(9)

    async def main():
        store = await PhoneStore.connect(home)
        for seq in range(1, 6):
            await store.apply_command(link, seq, f"c{seq}", "ward-3", 1.0)
        if mode == "mid-transaction":
            # The command row is written, inside the apply's transaction; the cursor
            # update and the commit never happen: the process dies in the statement.
            db = store._core.db
            await db.create_function("die", 0, die)
            await db.execute(
                "CREATE TEMP TRIGGER crash AFTER INSERT ON main.commands"
                " BEGIN SELECT die(); END"
            )
        await store.apply_command(link, 6, "c6", "ward-3", 1.0)
        os._exit(7)  # committed, then killed without closing anything

    asyncio.run(main())
    """
)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("mode", "code", "survivors"), [("mid-transaction", 9, 5), ("after", 7, 6)]
)
async def test_a_crash_applies_a_command_fully_or_not_at_all(
    home: Path, mode: str, code: int, survivors: int
) -> None:
    async with PhoneStore.create(home) as store:
        await store.create_link(LINK, station="ward-3", key="k")
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CRASHER,
        str(home),
        LINK,
        mode,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == code, stderr.decode()
    async with PhoneStore.open(home) as store:
        assert await store.delivered(LINK) == survivors
        assert await _seqs(store) == list(range(1, survivors + 1))
        # The station resends what was never acknowledged: applied once, whatever happened.
        assert await store.apply_command(LINK, 6, "c6", "ward-3", 2.0) == (survivors == 5)
        assert not await store.apply_command(LINK, 6, "c6", "ward-3", 2.0)
        assert await _seqs(store) == [1, 2, 3, 4, 5, 6]


@pytest.mark.asyncio
async def test_everything_survives_a_reopen(home: Path) -> None:
    async with PhoneStore.create(home) as store:
        await store.create_link(LINK, station="ward-3", key="k", info={"port": 8765})
        await store.save_link_state(LINK, b"\x00tunnel state\xff")
        await store.apply_commands(
            [IncomingCommand(LINK, seq, f"c{seq}", "ward-3", float(seq)) for seq in (1, 2, 3)]
        )
        await store.ensure_chat("c", "Chat")
        version = await store.add_message("c", "me", "hello", 5.0)
    async with PhoneStore.open(home) as store:
        assert await store.load_link_state(LINK) == b"\x00tunnel state\xff"
        assert await store.find_link("k") == (LINK, b"\x00tunnel state\xff", 3)
        assert await _seqs(store) == [1, 2, 3]
        assert await store.version() == version
        link = await store.link(LINK)
        assert link is not None and link["station_info"] == {"port": 8765}
        assert not await store.apply_command(LINK, 3, "c3", "ward-3", 9.0)


@pytest.mark.asyncio
async def test_a_second_connection_sees_committed_commands(store: PhoneStore, home: Path) -> None:
    """`medic-phone log` reads while `medic-phone link` writes."""
    async with PhoneStore.open(home) as reader:
        await store.apply_command(LINK, 1, "one", "ward-3", 1.0)
        assert await _seqs(reader) == [1]


# -- missing and damaged stores ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_missing_home_or_store_says_run_init(tmp_path: Path) -> None:
    empty_home = _empty_directory(tmp_path / "empty")
    for home in (tmp_path / "nowhere", empty_home):
        with pytest.raises(StoreMissing, match=r"run `medic-phone init` first") as caught:
            async with PhoneStore.open(home):
                pass
        assert isinstance(caught.value, NotInitialized) and str(home) in str(caught.value)
    assert not (tmp_path / "nowhere").exists()
    assert _names(empty_home) == []


@pytest.mark.asyncio
async def test_an_empty_database_file_is_not_a_store(home: Path) -> None:
    _put_database(home, b"")
    with pytest.raises(StoreMissing, match="is empty"):
        async with PhoneStore.open(home):
            pass
    assert (home / DB_FILE).read_bytes() == b""


async def _expect_corrupt(home: Path) -> StoreCorrupt:
    with pytest.raises(StoreCorrupt) as caught:
        async with PhoneStore.open(home):
            pass
    assert str(home / DB_FILE) in str(caught.value)
    assert "not a healthy phone store" in str(caught.value)
    return caught.value


@pytest.mark.asyncio
async def test_junk_bytes_are_corrupt_and_left_untouched(home: Path) -> None:
    junk = b"this is not sqlite" * 100
    _put_database(home, junk)
    await _expect_corrupt(home)
    assert (home / DB_FILE).read_bytes() == junk
    assert _names(home) == [DB_FILE]  # no -wal or -shm: SQLite never got to write


@pytest.mark.asyncio
async def test_a_damaged_page_is_corrupt_and_left_untouched(home: Path) -> None:
    async with PhoneStore.create(home) as store:
        await store.create_link(LINK, station="ward-3", key="k")
        await store.apply_commands(
            [IncomingCommand(LINK, seq, "x" * 200, "ward-3", 1.0) for seq in range(1, 200)]
        )
    data = bytearray((home / DB_FILE).read_bytes())
    data[4096 * 2 : 4096 * 3] = b"\xa5" * 4096
    (home / DB_FILE).write_bytes(bytes(data))
    await _expect_corrupt(home)
    assert (home / DB_FILE).read_bytes() == bytes(data)


@pytest.mark.asyncio
async def test_another_programs_database_is_not_a_store(home: Path) -> None:
    _put_database(home, b"")
    with sqlite3.connect(home / DB_FILE) as other:
        other.execute("CREATE TABLE recipes (name TEXT)")
    error = await _expect_corrupt(home)
    assert "another program" in str(error)
    with sqlite3.connect(home / DB_FILE) as other:
        tables = other.execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("recipes",)]


@pytest.mark.asyncio
async def test_a_directory_in_place_of_the_database(home: Path) -> None:
    (home / DB_FILE).mkdir(parents=True)
    await _expect_corrupt(home)


@pytest.mark.asyncio
async def test_a_newer_schema_is_refused(home: Path) -> None:
    async with PhoneStore.create(home):
        pass
    with sqlite3.connect(home / DB_FILE) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer medic-phone"):
        async with PhoneStore.open(home):
            pass


@pytest.mark.asyncio
async def test_migrate_creates_the_schema_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    async with aiosqlite.connect(path, isolation_level=None) as db:
        assert await migrate(db, path) == 0
        assert await migrate(db, path) == SCHEMA_VERSION
        async with db.execute("SELECT version FROM schema_version") as cursor:
            assert [tuple(row) for row in await cursor.fetchall()] == [(SCHEMA_VERSION,)]


@pytest.mark.asyncio
async def test_create_on_an_existing_store_keeps_its_data(store: PhoneStore, home: Path) -> None:
    await store.apply_command(LINK, 1, "one", "ward-3", 1.0)
    async with PhoneStore.create(home) as again:
        assert await _seqs(again) == [1]


@pytest.mark.asyncio
async def test_a_closed_store_refuses_work(home: Path) -> None:
    store = await PhoneStore.connect(home, create=True)
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.commands()


# -- links --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_link_life_cycle(store: PhoneStore) -> None:
    with pytest.raises(StoreError):
        await store.create_link(LINK, station="ward-3", key="again")
    assert await store.find_link("code:1234-5678") is None  # no tunnel state yet
    assert await store.load_link_state(LINK) is None
    await store.save_link_state(LINK, b"state-1")
    await store.save_link_state(LINK, b"state-2")
    assert await store.find_link("code:1234-5678") == (LINK, b"state-2", 0)
    await store.end_link(LINK, "remote")
    await store.end_link(LINK, "shutdown")  # the first reason stays
    await store.save_link_state(LINK, b"late")  # a dead link's secret never returns
    assert await store.load_link_state(LINK) is None
    assert await store.find_link("code:1234-5678") is None
    [row] = await store.links()
    assert (row["id"], row["state"], row["end_reason"], row["station"]) == (
        LINK,
        "ended",
        "remote",
        "ward-3",
    )
    with pytest.raises(StoreError, match="no link"):
        await store.save_link_state("ff" * 16, b"x")


@pytest.mark.asyncio
async def test_find_link_picks_the_newest_live_link(store: PhoneStore) -> None:
    await store.save_link_state(LINK, b"old")
    await store.create_link(OTHER, station="ward-3", key="code:1234-5678", paired_at=9e9)
    await store.save_link_state(OTHER, b"new")
    found = await store.find_link("code:1234-5678")
    assert found is not None and found[:2] == (OTHER, b"new")
    await store.end_link(OTHER, "remote")
    found = await store.find_link("code:1234-5678")
    assert found is not None and found[:2] == (LINK, b"old")


@pytest.mark.asyncio
async def test_commands_keep_order_of_application_across_links(store: PhoneStore) -> None:
    await store.create_link(OTHER, station="ward-4", key="k2")
    await store.apply_command(OTHER, 1, "b1", "ward-4", 1.0)
    await store.apply_command(LINK, 1, "a1", "ward-3", 2.0)
    await store.apply_command(OTHER, 2, "b2", "ward-4", 3.0)
    everything = await store.commands()
    assert [(r["link_id"], r["text"]) for r in everything] == [
        (OTHER, "b1"),
        (LINK, "a1"),
        (OTHER, "b2"),
    ]
    assert [r["text"] for r in await store.commands(OTHER)] == ["b1", "b2"]
    assert set(everything[0]) >= {"seq", "text", "station", "received_at"}


# -- chats, messages, versions --------------------------------------------------------------


@pytest.mark.asyncio
async def test_versions_grow_with_each_change(store: PhoneStore) -> None:
    assert await store.version() == 0
    assert await store.ensure_chat("c", "Chat", now=1.0)
    assert not await store.ensure_chat("c", "Chat")
    v1 = await store.add_message("c", "me", "one", 2.0)
    v2 = await store.add_message("c", "you", "two", 3.0)
    assert await store.ensure_chat("c", "Renamed")
    assert 1 < v1 < v2 < await store.version()
    with pytest.raises(StoreError, match="ensure_chat"):
        await store.add_message("nope", "me", "x", 1.0)
    assert await store.version() == v2 + 1


@pytest.mark.asyncio
async def test_snapshot_then_changes_since(store: PhoneStore) -> None:
    await store.ensure_chat("old", "Old chat", now=1.0)
    await store.ensure_chat("new", "New chat", now=1.0)
    await store.add_message("old", "me", "early", 10.0)
    await store.add_message("new", "me", "later", 20.0)
    version, chats, messages = await store.snapshot()
    assert version == await store.version()
    assert chats == [{"id": "new", "title": "New chat"}, {"id": "old", "title": "Old chat"}]
    assert [(m["chat"], m["body"], m["sent_at"]) for m in messages] == [
        ("old", "early", 10.0),
        ("new", "later", 20.0),
    ]
    assert set(messages[0]) == {"id", "chat", "sender", "body", "sent_at"}
    assert await store.changes_since(version) == (version, [], [])

    await store.add_message("old", "you", "reply", 30.0)
    await store.ensure_chat("third", "Third")
    up_to, chats, messages = await store.changes_since(version)
    assert up_to == version + 2
    assert chats == [{"id": "third", "title": "Third"}]
    assert [m["body"] for m in messages] == ["reply"]
    assert await store.changes_since(up_to) == (up_to, [], [])


@pytest.mark.asyncio
async def test_snapshot_limits_keep_the_most_recent(store: PhoneStore) -> None:
    for i in range(3):
        await store.ensure_chat(f"c{i}", f"Chat {i}", now=float(i))
    for i in range(10):
        await store.add_message("c2", "me", f"m{i}", 100.0 + i)
    await store.add_message("c0", "me", "in a chat left out", 0.5)
    _, chats, messages = await store.snapshot(limit_chats=2, limit_messages=4)
    assert [c["id"] for c in chats] == ["c2", "c1"]
    assert [m["body"] for m in messages] == ["m6", "m7", "m8", "m9"]
    with pytest.raises(PhoneUsageError):
        await store.snapshot(limit_chats=-1)


@pytest.mark.asyncio
async def test_changes_since_in_chunks(store: PhoneStore) -> None:
    await store.ensure_chat("c", "Chat")
    for i in range(5):
        await store.add_message("c", "me", f"m{i}", float(i))
    seen: list[str] = []
    version = 0
    while True:
        up_to, chats, messages = await store.changes_since(version, limit=2)
        if up_to == version:
            break
        assert len(chats) + len(messages) <= 2
        seen += [f"chat:{c['id']}" for c in chats] + [m["body"] for m in messages]
        version = up_to
    assert seen == ["chat:c", "m0", "m1", "m2", "m3", "m4"]
    assert version == await store.version()
    with pytest.raises(PhoneUsageError):
        await store.changes_since(-1)
