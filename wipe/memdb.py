"""RAM-only SQLite: every connection the station opens for session data comes from here.

``temp_store=MEMORY`` keeps sorts, indexes and temp tables off the disk (without it a
large ORDER BY spills to a temp file); the journal lives in memory; ``secure_delete``
overwrites freed pages. Each pragma is read back, and a connection that does not
confirm it is refused.
"""

from __future__ import annotations

import sqlite3
import uuid

import aiosqlite

from wipe.errors import NotInMemory

_PRAGMAS = (
    ("temp_store", "MEMORY", 2),
    ("journal_mode", "MEMORY", "memory"),
    ("secure_delete", "ON", 1),
)


def _uri() -> str:
    # A private in-memory database: a name of its own, never a file.
    return f"file:fs-{uuid.uuid4().hex}?mode=memory&cache=private"


def _check(name: str, got: object, want: object) -> None:
    if got != want:
        raise NotInMemory(f"PRAGMA {name} reads back {got!r}, not {want!r}")


async def open_memory_db() -> aiosqlite.Connection:
    db = await aiosqlite.connect(_uri(), uri=True)
    try:
        for name, value, want in _PRAGMAS:
            await db.execute(f"PRAGMA {name}={value}")
            async with db.execute(f"PRAGMA {name}") as cursor:
                row = await cursor.fetchone()
            _check(name, row[0] if row else None, want)
    except BaseException:
        await db.close()
        raise
    return db


def open_memory_db_sync() -> sqlite3.Connection:
    db = sqlite3.connect(_uri(), uri=True)
    try:
        for name, value, want in _PRAGMAS:
            db.execute(f"PRAGMA {name}={value}")
            _check(name, db.execute(f"PRAGMA {name}").fetchone()[0], want)
    except BaseException:
        db.close()
        raise
    return db
