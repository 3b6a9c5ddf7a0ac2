"""The phone's durable store: SQLite (WAL, synchronous=FULL) through aiosqlite.

It holds the links with stations (and the tunnel state each needs to resume after a
restart), every command applied (with the receive cursor advanced in the same
transaction, so a command is applied exactly once even across a crash), and the
phone's own chats and messages, versioned so that changes can be pushed incrementally.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from medic_phone.errors import NotInitialized, StoreCorrupt, StoreError

DB_FILE = "phone.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS links (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    station TEXT NOT NULL,
    paired_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('linked', 'ended')),
    end_reason TEXT,
    delivered INTEGER NOT NULL DEFAULT 0,
    tunnel_state BLOB
);
CREATE INDEX IF NOT EXISTS links_by_key ON links (key, state);
CREATE TABLE IF NOT EXISTS commands (
    link_id TEXT NOT NULL REFERENCES links (id),
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    station TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (link_id, seq)
);
CREATE TABLE IF NOT EXISTS chats (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    chat_id TEXT NOT NULL REFERENCES chats (id),
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at REAL NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_version ON messages (version);
"""

Row = dict[str, Any]


class PhoneStore:
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path

    # -- opening -----------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def create(cls, home: Path) -> AsyncIterator[PhoneStore]:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)  # noqa: ASYNC240 (once, at init)
        async with cls._connect(home / DB_FILE, create=True) as store:
            yield store

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, home: Path) -> AsyncIterator[PhoneStore]:
        if not home.is_dir():  # noqa: ASYNC240 (one stat before opening)
            raise NotInitialized(f"no phone home at {home}: run `medic-phone init` first")
        path = home / DB_FILE
        if not path.exists():
            raise NotInitialized(f"no store in {home}: run `medic-phone init` first")
        async with cls._connect(path, create=False) as store:
            yield store

    @classmethod
    @contextlib.asynccontextmanager
    async def _connect(cls, path: Path, *, create: bool) -> AsyncIterator[PhoneStore]:
        try:
            db = await aiosqlite.connect(path)
        except sqlite3.Error as exc:
            raise StoreCorrupt(f"cannot open {path}: {exc}") from None
        try:
            store = cls(db, path)
            await store._prepare(create=create)
            yield store
        finally:
            await db.close()

    async def _prepare(self, *, create: bool) -> None:
        db = self._db
        try:
            async with db.execute("PRAGMA quick_check") as cursor:
                row = await cursor.fetchone()
            if row is None or row[0] != "ok":
                raise StoreCorrupt(f"{self.path} fails its integrity check; nothing was changed")
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA temp_store=MEMORY")
            await db.executescript(_SCHEMA)
            await db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
            await db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('version', '0')")
            await db.commit()
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(
                f"{self.path} is not a healthy phone store ({exc}); nothing was changed"
            ) from None
        schema = await self._meta("schema")
        if int(schema) > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer medic-phone (schema {schema})")

    async def _meta(self, key: str) -> str:
        async with self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise StoreCorrupt(f"{self.path}: missing {key}")
        return str(row[0])

    # -- links -------------------------------------------------------------------------

    async def create_link(self, link_id: str, *, station: str, key: str) -> None:
        import time

        await self._db.execute(
            "INSERT INTO links (id, key, station, paired_at, state) VALUES (?, ?, ?, ?, 'linked')",
            (link_id, key, station, time.time()),
        )
        await self._db.commit()

    async def find_link(self, key: str) -> tuple[str, bytes, int] | None:
        """The live link made from this URI or code, with its saved tunnel state."""
        async with self._db.execute(
            "SELECT id, tunnel_state, delivered FROM links"
            " WHERE key = ? AND state = 'linked' AND tunnel_state IS NOT NULL"
            " ORDER BY paired_at DESC LIMIT 1",
            (key,),
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]), int(row[2]))

    async def save_link_state(self, link_id: str, blob: bytes) -> None:
        await self._db.execute("UPDATE links SET tunnel_state = ? WHERE id = ?", (blob, link_id))
        await self._db.commit()

    async def end_link(self, link_id: str, reason: str) -> None:
        # The resumption secret dies with the link: it must never be usable again.
        await self._db.execute(
            "UPDATE links SET state = 'ended', end_reason = ?, tunnel_state = NULL WHERE id = ?",
            (reason, link_id),
        )
        await self._db.commit()

    async def links(self) -> list[Row]:
        async with self._db.execute(
            "SELECT id, station, paired_at, state, end_reason, delivered FROM links"
            " ORDER BY paired_at"
        ) as cursor:
            rows = await cursor.fetchall()
        keys = ("id", "station", "paired_at", "state", "end_reason", "delivered")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # -- commands ----------------------------------------------------------------------

    async def apply_command(
        self, link_id: str, seq: int, text: str, station: str, received_at: float
    ) -> bool:
        """Apply one command exactly once: False for a duplicate, StoreError for a gap."""
        return await self.apply_commands(link_id, [(seq, text, station, received_at)]) == 1

    async def apply_commands(
        self, link_id: str, batch: Iterable[tuple[int, str, str, float]]
    ) -> int:
        """Apply a batch in one transaction (group commit); returns how many were new."""
        db = self._db
        applied = 0
        await db.execute("BEGIN IMMEDIATE")
        try:
            async with db.execute("SELECT delivered FROM links WHERE id = ?", (link_id,)) as c:
                row = await c.fetchone()
            if row is None:
                raise StoreError(f"no link {link_id}")
            delivered = int(row[0])
            for seq, text, station, received_at in batch:
                if seq <= delivered:
                    continue
                if seq != delivered + 1:
                    raise StoreError(f"command {seq} would skip {delivered + 1}")
                await db.execute(
                    "INSERT INTO commands (link_id, seq, text, station, received_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (link_id, seq, text, station, received_at),
                )
                delivered = seq
                applied += 1
            await db.execute("UPDATE links SET delivered = ? WHERE id = ?", (delivered, link_id))
            await db.commit()
        except BaseException:
            await db.rollback()
            raise
        return applied

    async def delivered(self, link_id: str) -> int:
        async with self._db.execute("SELECT delivered FROM links WHERE id = ?", (link_id,)) as c:
            row = await c.fetchone()
        return int(row[0]) if row else 0

    async def commands(self, link_id: str | None = None) -> list[Row]:
        query = "SELECT seq, text, station, received_at, link_id FROM commands"
        params: tuple[str, ...] = ()
        if link_id is not None:
            query += " WHERE link_id = ?"
            params = (link_id,)
        query += " ORDER BY rowid"
        async with self._db.execute(query, params) as cursor:
            rows = await cursor.fetchall()
        keys = ("seq", "text", "station", "received_at", "link")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # -- the phone's own chats and messages ----------------------------------------------

    async def _bump(self) -> int:
        version = int(await self._meta("version")) + 1
        await self._db.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(version),))
        return version

    async def ensure_chat(self, chat_id: str, title: str) -> None:
        async with self._db.execute("SELECT 1 FROM chats WHERE id = ?", (chat_id,)) as cursor:
            if await cursor.fetchone() is not None:
                return
        version = await self._bump()
        await self._db.execute(
            "INSERT INTO chats (id, title, version) VALUES (?, ?, ?)", (chat_id, title, version)
        )
        await self._db.commit()

    async def add_message(self, chat_id: str, sender: str, body: str, sent_at: float) -> int:
        version = await self._bump()
        await self._db.execute(
            "INSERT INTO messages (id, chat_id, sender, body, sent_at, version)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (uuid.uuid4().hex, chat_id, sender, body, sent_at, version),
        )
        await self._db.commit()
        return version

    async def version(self) -> int:
        return int(await self._meta("version"))

    async def snapshot(
        self, *, limit_chats: int = 50, limit_messages: int = 200
    ) -> tuple[int, list[Row], list[Row]]:
        version = await self.version()
        chats = await self._rows(
            "SELECT id, title FROM chats ORDER BY version DESC LIMIT ?", (limit_chats,)
        )
        messages = await self._message_rows(
            "SELECT id, chat_id, sender, body, sent_at FROM messages ORDER BY version DESC LIMIT ?",
            (limit_messages,),
        )
        return version, chats, list(reversed(messages))

    async def changes_since(self, version: int) -> tuple[int, list[Row], list[Row]]:
        current = await self.version()
        chats = await self._rows(
            "SELECT id, title FROM chats WHERE version > ? ORDER BY version", (version,)
        )
        messages = await self._message_rows(
            "SELECT id, chat_id, sender, body, sent_at FROM messages WHERE version > ?"
            " ORDER BY version",
            (version,),
        )
        return current, chats, messages

    async def _rows(self, query: str, params: tuple[Any, ...]) -> list[Row]:
        async with self._db.execute(query, params) as cursor:
            rows = await cursor.fetchall()
        return [{"id": str(r[0]), "title": str(r[1])} for r in rows]

    async def _message_rows(self, query: str, params: tuple[Any, ...]) -> list[Row]:
        async with self._db.execute(query, params) as cursor:
            rows = await cursor.fetchall()
        return [
            {"id": r[0], "chat": r[1], "sender": r[2], "body": r[3], "sent_at": r[4]} for r in rows
        ]
