"""The phone store's one connection: its lock, its seal, and the transactions on it.

One connection per store, used by one event loop. Every operation runs inside its own
transaction under the one ``asyncio.Lock``: two coroutines sharing the connection must
never interleave statements into each other's transaction (a reader would otherwise
see rows that a rollback then takes back). Every part of the store (links, commands,
chats, receipts) works through this one ``StoreCore``, so there is one
lock whatever the job.

Versions: every change to a chat or a message takes the next value of one counter
(``change_version``), so the phone can push a snapshot at version V and then
"everything after V".
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite

from medic_phone.errors import StoreCorrupt, StoreError
from medic_phone.sealing import StoreSeal
from medic_phone.store_schema import fetch_all, fetch_one, rollback, translate_error


class StoreCore:
    """The connection, its lock and its seal, shared by every part of one store."""

    def __init__(self, db: aiosqlite.Connection, path: Path, seal: StoreSeal) -> None:
        self.db = db
        self.lock = asyncio.Lock()
        self.closed = False
        self.path = path
        # Replaced once, at open, by a pass-through if the store turns out to be kept in
        # clear: read it at each use, never keep it.
        self.seal = seal

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.db.close()

    def check_open(self) -> None:
        if self.closed:
            raise StoreError(f"{self.path}: the store is closed")

    def refused(self, exc: sqlite3.Error) -> StoreError:
        """SQLite's error as the store's (damage told apart from anything else)."""
        return translate_error(exc, self.path, f"{self.path} refused the operation")

    @contextlib.asynccontextmanager
    async def transaction(self, *, write: bool) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction, alone on the connection; sqlite errors become store errors."""
        self.check_open()
        async with self.lock:
            db = self.db
            try:
                # IMMEDIATE takes the write lock up front: no upgrade deadlock, and the
                # busy timeout applies to the whole transaction.
                try:
                    await db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    yield db
                    await db.execute("COMMIT")
                except BaseException:
                    # Also after a failed COMMIT, which can leave the transaction open, and
                    # after a cancelled BEGIN, which SQLite's thread runs all the same.
                    await rollback(db)
                    raise
            except sqlite3.Error as exc:
                raise self.refused(exc) from None

    async def statement(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement alone on the connection: in autocommit it is its own transaction
        (one hop to SQLite's thread)."""
        self.check_open()
        async with self.lock:
            try:
                return await fetch_all(self.db, sql, params)
            except sqlite3.Error as exc:
                raise self.refused(exc) from None

    # -- the change counter ----------------------------------------------------------------

    async def version(self, db: aiosqlite.Connection, *, bump: bool = False) -> int:
        """The change counter; with ``bump``, advanced by one first (inside a write)."""
        if bump:
            return await self.version_bump_by(db, 1)
        return self._counter(
            await fetch_one(db, "SELECT value FROM counters WHERE name = 'change_version'")
        )

    async def version_bump_by(self, db: aiosqlite.Connection, count: int) -> int:
        """Advance the change counter by ``count`` at once; the last version taken."""
        row = await fetch_one(
            db,
            "UPDATE counters SET value = value + ? WHERE name = 'change_version' RETURNING value",
            (count,),
        )
        return self._counter(row)

    def _counter(self, row: tuple[Any, ...] | None) -> int:
        if row is None:
            raise StoreCorrupt(f"{self.path} is not a healthy phone store (no change counter)")
        return int(row[0])
