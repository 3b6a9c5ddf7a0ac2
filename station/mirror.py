"""The kiosk's mirror of the phone: what the phone pushed, held in a RAM-only database.

The messages that feed it (``wire.app.MirrorUpdate``: a snapshot replaces the mirror,
changes upsert into it) are the application protocol's; this module only keeps them.
"""

from __future__ import annotations

from typing import Any

import aiosqlite

from wire.app import MirrorUpdate


def chat_row(chat_id: str, title: str) -> dict[str, Any]:
    return {"id": chat_id, "title": title}


def message_row(
    message_id: str, chat: str, sender: str, body: str, sent_at: float
) -> dict[str, Any]:
    return {"id": message_id, "chat": chat, "sender": sender, "body": body, "sent_at": sent_at}


_SCHEMA = """
CREATE TABLE IF NOT EXISTS chats (id TEXT PRIMARY KEY, title TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, chat TEXT NOT NULL, sender TEXT NOT NULL,
    body TEXT NOT NULL, sent_at REAL NOT NULL
);
"""


class Mirror:
    """The mirror tables in a RAM-only SQLite connection the caller opened."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self.version = 0

    async def setup(self) -> None:
        await self._db.executescript(_SCHEMA)
        await self._db.commit()

    async def apply(self, update: MirrorUpdate) -> None:
        if update.kind == "snapshot":
            await self._db.execute("DELETE FROM messages")
            await self._db.execute("DELETE FROM chats")
        await self._db.executemany(
            "INSERT OR REPLACE INTO chats (id, title) VALUES (?, ?)", update.chats
        )
        await self._db.executemany(
            "INSERT OR REPLACE INTO messages (id, chat, sender, body, sent_at)"
            " VALUES (?, ?, ?, ?, ?)",
            update.messages,
        )
        await self._db.commit()
        self.version = max(self.version, update.version)

    async def counts(self) -> tuple[int, int]:
        async with self._db.execute(
            "SELECT (SELECT count(*) FROM chats), (SELECT count(*) FROM messages)"
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    async def state(self, limit: int = 500) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every chat, and the latest ``limit`` messages oldest first, for a new page."""
        async with self._db.execute("SELECT id, title FROM chats ORDER BY title") as cursor:
            chats = [chat_row(str(r[0]), str(r[1])) for r in await cursor.fetchall()]
        messages = [message_row(*m) for m in reversed(await self.recent(limit))]
        return chats, messages

    async def recent(self, limit: int = 200) -> list[tuple[str, str, str, str, float]]:
        async with self._db.execute(
            "SELECT id, chat, sender, body, sent_at FROM messages ORDER BY sent_at DESC LIMIT ?",
            (limit,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [(str(r[0]), str(r[1]), str(r[2]), str(r[3]), float(r[4])) for r in rows]
