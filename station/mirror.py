"""The kiosk's mirror of the phone: what the phone pushed, held in a RAM-only database.

The application messages inside the tunnel are small JSON objects:

* station -> phone: ``{"type": "command", "text": ..., "chat": ...}`` (one per thing typed
  at the kiosk; ``chat`` is optional: the chat it was typed in)
* phone -> station: ``{"type": "snapshot" | "changes", "version": V, "chats": [...],
  "messages": [...]}``; a snapshot replaces the mirror, changes upsert into it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from station.errors import StationError

MAX_TEXT = 4096
MAX_CHAT_ID = 128


class MirrorError(StationError):
    """The phone pushed something that is not a valid mirror update (peer's fault)."""


@dataclass(frozen=True, slots=True)
class Command:
    """Something typed at the kiosk: its text and, when typed inside a chat, that chat."""

    text: str
    chat: str | None = None


def encode_command(text: str, chat: str | None = None) -> bytes:
    if not text:
        raise ValueError("an empty command")
    if len(text) > MAX_TEXT:
        raise ValueError(f"{len(text):,} characters; the limit is {MAX_TEXT:,}")
    body: dict[str, str] = {"type": "command", "text": text}
    if chat is not None:
        if not chat or len(chat) > MAX_CHAT_ID:
            raise ValueError(f"a chat id is 1 to {MAX_CHAT_ID} characters")
        body["chat"] = chat
    return json.dumps(body, separators=(",", ":")).encode()


def decode_command(payload: bytes) -> Command:
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise MirrorError("command is not JSON") from None
    if not isinstance(value, dict) or value.get("type") != "command":
        raise MirrorError("not a command")
    text = value.get("text")
    if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
        raise MirrorError("command text missing or too long")
    chat = value.get("chat")
    if chat is not None and (not isinstance(chat, str) or not chat or len(chat) > MAX_CHAT_ID):
        raise MirrorError("command chat id malformed")
    return Command(text, chat)


def encode_update(
    kind: str, version: int, chats: list[dict[str, Any]], messages: list[dict[str, Any]]
) -> bytes:
    body = {"type": kind, "version": version, "chats": chats, "messages": messages}
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class MirrorUpdate:
    kind: str  # "snapshot" or "changes"
    version: int
    chats: list[tuple[str, str]]  # (id, title)
    messages: list[tuple[str, str, str, str, float]]  # (id, chat, sender, body, sent_at)


def decode_update(payload: bytes) -> MirrorUpdate:
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise MirrorError("update is not JSON") from None
    if not isinstance(value, dict) or value.get("type") not in ("snapshot", "changes"):
        raise MirrorError("not a mirror update")
    try:
        chats = [(str(c["id"]), str(c["title"])) for c in value.get("chats", [])]
        messages = [
            (str(m["id"]), str(m["chat"]), str(m["sender"]), str(m["body"]), float(m["sent_at"]))
            for m in value.get("messages", [])
        ]
        version = int(value["version"])
    except (KeyError, TypeError, ValueError):
        raise MirrorError("malformed mirror update") from None
    return MirrorUpdate(str(value["type"]), version, chats, messages)


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
