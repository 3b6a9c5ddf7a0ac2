"""The phone store's file and schema: where it lives, how it is created, checked and
migrated, and how SQLite's errors are told apart (damage vs anything else).

Each schema version is a tuple of statements; ``migrate`` runs each step in one
transaction (SQLite's DDL is transactional), so a crash mid-migration leaves the
previous version intact. Append new steps; never edit a released one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite

from medic_phone.errors import StoreCorrupt, StoreError, StoreMissing
from wipe.safedir import UnsafeDirectory, private_dir

DB_FILE = "phone.db"
SCHEMA_VERSION = 4
BUSY_TIMEOUT = 5.0  # seconds to wait for another process's write lock
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO counters (name, value) VALUES ('change_version', 0)",
        # key: what the link was made from ('offer:<id>' or 'code:<code>'), to resume it.
        # station_info: JSON, display data only; no keys or fingerprints.
        """CREATE TABLE links (
            id TEXT PRIMARY KEY,
            key TEXT NOT NULL,
            station TEXT NOT NULL,
            station_info TEXT NOT NULL DEFAULT '{}',
            paired_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'linked' CHECK (state IN ('linked', 'ended')),
            end_reason TEXT,
            tunnel_state BLOB,
            delivered INTEGER NOT NULL DEFAULT 0 CHECK (delivered >= 0)
        )""",
        "CREATE INDEX links_by_key ON links (key, state, paired_at)",
        # A rowid table: rowids only grow (nothing is deleted), so rowid order is the
        # order of application across links.
        """CREATE TABLE commands (
            link_id TEXT NOT NULL REFERENCES links (id),
            seq INTEGER NOT NULL CHECK (seq >= 1),
            text TEXT NOT NULL,
            station TEXT NOT NULL,
            received_at REAL NOT NULL,
            PRIMARY KEY (link_id, seq)
        )""",
        """CREATE TABLE chats (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            updated_at REAL NOT NULL,
            version INTEGER NOT NULL
        )""",
        "CREATE INDEX chats_by_version ON chats (version)",
        "CREATE INDEX chats_by_recency ON chats (updated_at)",
        """CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            chat_id TEXT NOT NULL REFERENCES chats (id),
            sender TEXT NOT NULL,
            body TEXT NOT NULL,
            sent_at REAL NOT NULL,
            version INTEGER NOT NULL UNIQUE
        )""",
        "CREATE INDEX messages_by_chat ON messages (chat_id, version)",
        """CREATE TABLE outbox (
            link_id TEXT NOT NULL REFERENCES links (id),
            seq INTEGER NOT NULL,
            sealed BLOB NOT NULL,
            PRIMARY KEY (link_id, seq)
        ) WITHOUT ROWID""",
    ),
    (
        # name 'seal_check': a known value sealed under the store key (see
        # medic_phone.sealing); absent in a store kept in clear.
        "CREATE TABLE store_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
    ),
    (
        # A command that reached the phone after its TTL is kept apart ('pending') until
        # the medic confirms ('applied') or discards it; chat: where it was typed
        # (sealed like the text), so a confirmed one lands there.
        "ALTER TABLE commands ADD COLUMN state TEXT NOT NULL DEFAULT 'applied'"
        " CHECK (state IN ('applied', 'pending', 'discarded'))",
        "ALTER TABLE commands ADD COLUMN chat BLOB",
        "ALTER TABLE commands ADD COLUMN decided_at REAL",
        # receipt_key: the session's Ed25519 key that signs its wipe receipt (public).
        "ALTER TABLE links ADD COLUMN receipt_key BLOB",
        "ALTER TABLE links ADD COLUMN last_contact REAL",
        """CREATE TABLE receipts (
            link_id TEXT PRIMARY KEY REFERENCES links (id),
            body BLOB NOT NULL,
            signature BLOB NOT NULL,
            received_at REAL NOT NULL
        )""",
    ),
    (
        # The phone never queued its outbound records on disk (what it sends is made
        # again from the store after a reconnect): an unused table goes.
        "DROP TABLE outbox",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION


async def fetch_all(
    db: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()
) -> list[tuple[Any, ...]]:
    # One hop to SQLite's thread (execute, fetch and close together), not three.
    return [tuple(row) for row in await db.execute_fetchall(sql, params)]


async def fetch_one(
    db: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()
) -> tuple[Any, ...] | None:
    rows = await fetch_all(db, sql, params)
    return rows[0] if rows else None


async def migrate(db: aiosqlite.Connection, path: Path) -> int:
    """Bring the schema at ``db`` up to ``SCHEMA_VERSION``; returns the version found first.

    The connection must be in autocommit mode. Each step re-reads the version under the
    write lock, so two processes opening one store at once migrate it once.
    """
    found = await schema_version(db, path)
    if found > SCHEMA_VERSION:
        raise StoreError(f"{path} was written by a newer medic-phone (schema {found})")
    for target in range(found + 1, SCHEMA_VERSION + 1):
        try:
            await db.execute("BEGIN IMMEDIATE")
            if await schema_version(db, path) == target - 1:
                for statement in _MIGRATIONS[target - 1]:
                    await db.execute(statement)
                await db.execute("DELETE FROM schema_version")
                await db.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
            await db.execute("COMMIT")
        except BaseException:
            await rollback(db)
            raise
    return found


async def schema_version(db: aiosqlite.Connection, path: Path) -> int:
    """0 for an empty database; ``StoreCorrupt`` for one that is not a phone store."""
    tables = {str(r[0]) for r in await fetch_all(db, "SELECT name FROM sqlite_master")}
    if not tables:
        return 0
    if "schema_version" not in tables:
        raise StoreCorrupt(
            f"{path} is not a healthy phone store (another program's database?); "
            "nothing was changed"
        )
    rows = await fetch_all(db, "SELECT version FROM schema_version")
    if len(rows) != 1 or not isinstance(rows[0][0], int) or rows[0][0] < 1:
        raise StoreCorrupt(f"{path} is not a healthy phone store (bad schema version)")
    return int(rows[0][0])


def prepare_home(home: Path, path: Path) -> None:
    """Create the home (0700) and an empty database file (0600; SQLite's -wal and -shm
    files copy the database's mode), so no moment exists when they are world-readable."""
    try:
        private_dir(home)  # ours, no symlink, 0700 (checked before any chmod)
    except UnsafeDirectory as exc:
        raise StoreError(f"cannot use the phone home: {exc}") from None
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        pass  # an existing store is opened (and migrated), never replaced
    except OSError as exc:
        raise StoreError(f"cannot create the store at {path}: {exc.strerror}") from None


def translate_error(exc: sqlite3.Error, path: Path, context: str) -> StoreError:
    """Damage (SQLITE_CORRUPT, SQLITE_NOTADB) is ``StoreCorrupt``; anything else -- busy,
    I/O, a constraint, a bad argument -- is a ``StoreError``, never called damage."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return StoreCorrupt(f"{path} is not a healthy phone store ({exc}); nothing was changed")
    return StoreError(f"{context}: {exc}")


def check_exists(home: Path, path: Path) -> None:
    if not home.is_dir():
        raise StoreMissing(f"no phone home at {home}: run `medic-phone init` first")
    if not path.exists():
        raise StoreMissing(f"no store in {home}: run `medic-phone init` first")
    if not path.is_file():
        raise StoreCorrupt(f"{path} is not a healthy phone store (not a regular file)")


async def rollback(db: aiosqlite.Connection) -> None:
    """Take back whatever transaction is open (nothing if none is).

    Unconditional, not ``if db.in_transaction``: a statement whose await was cancelled
    (a BEGIN or a COMMIT) is still queued for SQLite's thread, so the flag can be stale
    when read here. The ROLLBACK queues behind it; "no transaction is active" is fine.
    Shielded, so a second cancellation cannot leave the transaction open either.
    """
    with contextlib.suppress(sqlite3.Error):
        await asyncio.shield(db.execute("ROLLBACK"))
