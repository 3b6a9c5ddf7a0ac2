"""Opening the phone store: the connection, its checks and settings, and the seal's check.

A store opens only healthy (``quick_check``, before anything is written), in WAL mode
with ``synchronous=FULL`` (a commit is on disk before it returns), migrated to the
current schema, and with the key it was sealed under (a store kept in clear opens with
or without one). The apply path's TEMP table and trigger are installed last
(``medic_phone.store_apply``).
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from pathlib import Path

import aiosqlite

from medic_phone import store_apply
from medic_phone.errors import (
    StoreCorrupt,
    StoreError,
    StoreKeyMismatch,
    StoreLocked,
    StoreMissing,
)
from medic_phone.sealing import StoreSeal
from medic_phone.store_core import StoreCore
from medic_phone.store_schema import (
    BUSY_TIMEOUT,
    DB_FILE,
    check_exists,
    fetch_all,
    fetch_one,
    migrate,
    prepare_home,
    schema_version,
    translate_error,
)


async def connect(home: Path, *, create: bool) -> tuple[aiosqlite.Connection, Path]:
    """The SQLite connection to the store under ``home`` (created first if ``create``)."""
    path = home / DB_FILE
    if create:
        prepare_home(home, path)
    else:
        check_exists(home, path)
    # mode=rw: a file that vanished since the check is an error, not a new empty store.
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode={'rwc' if create else 'rw'}"
    try:
        db = await aiosqlite.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from None
    return db, path


async def prepare(core: StoreCore, *, create: bool) -> None:
    """Check, configure and migrate a newly opened connection, and check its key."""
    db, path = core.db, core.path
    try:
        # Before anything reads: no temporary table or sort ever spills to disk.
        await db.execute("PRAGMA temp_store=MEMORY")
        # Check before the first write (setting WAL writes the header).
        verdict = [str(r[0]) for r in await fetch_all(db, "PRAGMA quick_check")] or ["no answer"]
        if verdict != ["ok"]:
            raise StoreCorrupt(
                f"{path} is not a healthy phone store (quick_check: {verdict[0]}); "
                "nothing was changed"
            )
        if await schema_version(db, path) == 0 and not create:
            raise StoreMissing(f"the store {path} is empty: run `medic-phone init` first")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA synchronous=FULL")
        mode = await fetch_one(db, "PRAGMA journal_mode=WAL")
        if mode is None or str(mode[0]).lower() != "wal":
            raise StoreError(f"{path}: this filesystem does not support WAL mode")
        settings = await read_settings(db)
        if settings["temp_store"] != 2 or settings["foreign_keys"] != 1:
            raise StoreError(f"{path}: SQLite refused the store's settings")
        await migrate(db, path)
        await _check_seal(core, create=create)
        await store_apply.install(db)
    except sqlite3.Error as exc:
        raise translate_error(exc, path, f"cannot open {path}") from None


async def read_settings(db: aiosqlite.Connection) -> dict[str, object]:
    values: dict[str, object] = {}
    for name in ("journal_mode", "synchronous", "foreign_keys", "temp_store"):
        row = await fetch_one(db, f"PRAGMA {name}")
        values[name] = None if row is None else row[0]
    return values


async def _check_seal(core: StoreCore, *, create: bool) -> None:
    """The key fits the store: a sealed store opens only with its own key."""
    db, path = core.db, core.path
    row = await fetch_one(db, "SELECT value FROM store_meta WHERE name = 'seal_check'")
    check = None if row is None else bytes(row[0])
    if check is not None and core.seal.opens(check):
        return
    empty = await fetch_one(
        db,
        "SELECT NOT EXISTS (SELECT 1 FROM links) AND NOT EXISTS (SELECT 1 FROM chats)"
        " AND NOT EXISTS (SELECT 1 FROM commands) AND NOT EXISTS (SELECT 1 FROM messages)",
    )
    if create and empty is not None and empty[0]:
        # A new (or still empty) store takes the key it is created with.
        await db.execute("BEGIN IMMEDIATE")
        await db.execute("DELETE FROM store_meta WHERE name = 'seal_check'")
        value = core.seal.check_value()
        if value is not None:
            await db.execute(
                "INSERT INTO store_meta (name, value) VALUES ('seal_check', ?)", (value,)
            )
        await db.execute("COMMIT")
        return
    if check is None:
        if create and core.seal.sealed:
            raise StoreError(
                f"{path} already holds data kept in clear; sealing now would leave"
                " that data readable: move the phone home away first"
            )
        core.seal = StoreSeal(None, where=str(path))  # kept in clear, as it was
        return
    if not core.seal.sealed:
        raise StoreLocked(f"{path} is sealed: it opens only with the phone's passphrase")
    raise StoreKeyMismatch(
        f"{path} is sealed under another key (another identity's store?); nothing was changed"
    )
