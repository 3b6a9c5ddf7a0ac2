"""The phone's own chats and messages, versioned for the station's mirror.

Every change to a chat or a message takes the next version (``StoreCore.version``), so
the phone pushes a snapshot at version V and then everything after V. Chats and
messages leave here as plain dicts with the mirror's keys (they go straight into
``wire.app.encode_row``): chats {id, title}; messages {id, chat, sender, body, sent_at}.

Sealed: a chat is looked up by a keyed tag of its id, and its id travels sealed with
its title; a message names its chat by tag, so reading one needs its chat opened first
(``_learn_chats``). Chats are never deleted, so the tags this process has seen stay
good (``known``).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from medic_phone.errors import PhoneUsageError, StoreCorrupt, StoreError
from medic_phone.store_core import StoreCore
from medic_phone.store_schema import fetch_all, fetch_one

Row = dict[str, Any]

# The change counter, then the chats and the messages changed after a version (each arm
# cut at a limit, -1 for none), as (kind, columns..., version): one statement.
_CHANGES = (
    "SELECT 0, value, NULL, NULL, NULL, NULL, NULL FROM counters WHERE name = 'change_version'"
    " UNION ALL SELECT * FROM (SELECT 1, id, title, version, NULL, NULL, NULL FROM chats"
    " WHERE version > ? ORDER BY version LIMIT ?)"
    " UNION ALL SELECT * FROM (SELECT 2, id, chat_id, sender, body, sent_at, version"
    " FROM messages WHERE version > ? ORDER BY version LIMIT ?)"
)


def _version(row: tuple[Any, ...]) -> int:
    return int(row[-1])


def new_id() -> str:
    """A message id: 128 random bits in hex (uuid4's cost without its object)."""
    return secrets.token_hex(16)


class Chats:
    """The chats and messages of one store (see ``PhoneStore`` for each call's promise)."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core
        # Tags of chats known to exist (committed), so the apply path need not ask.
        self.known: set[str] = set()

    async def existing(self, db: aiosqlite.Connection, tags: Iterable[str]) -> set[str]:
        """Which of these chat tags exist: the ones known here, the rest asked in one go."""
        wanted = set(tags)
        found = self.known & wanted
        unseen = sorted(wanted - found)
        if unseen:
            rows = await fetch_all(
                db,
                "SELECT id FROM chats WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(unseen),),
            )
            found |= {str(r[0]) for r in rows}
        return found

    async def version(self) -> int:
        async with self._core.transaction(write=False) as db:
            return await self._core.version(db)

    async def ensure_chat(self, chat_id: str, title: str, *, now: float | None = None) -> bool:
        when = time.time() if now is None else now
        seal = self._core.seal
        tag = seal.tag(chat_id)
        async with self._core.transaction(write=True) as db:
            row = await fetch_one(db, "SELECT title FROM chats WHERE id = ?", (tag,))
            if row is not None and seal.open_chat(tag, row[0])[1] == title:
                return False
            version = await self._core.version(db, bump=True)
            stored = seal.chat(chat_id, title)
            if row is None:
                await db.execute(
                    "INSERT INTO chats (id, title, updated_at, version) VALUES (?, ?, ?, ?)",
                    (tag, stored, when, version),
                )
            else:
                await db.execute(
                    "UPDATE chats SET title = ?, version = ? WHERE id = ?",
                    (stored, version, tag),
                )
        return True

    async def add_message(self, chat_id: str, sender: str, body: str, sent_at: float) -> int:
        return await self.add_messages(chat_id, sender, [(body, sent_at)])

    async def add_messages(
        self, chat_id: str, sender: str, items: Sequence[tuple[str, float]]
    ) -> int:
        if not items:
            return 0
        tag, seal = self._core.seal.tag(chat_id), self._core.seal.text
        async with self._core.transaction(write=True) as db:
            if await fetch_one(db, "SELECT 1 FROM chats WHERE id = ?", (tag,)) is None:
                raise StoreError(f"no chat {chat_id!r}: call ensure_chat first")
            last = await self._core.version_bump_by(db, len(items))
            first = last - len(items) + 1
            await db.executemany(
                "INSERT INTO messages (id, chat_id, sender, body, sent_at, version)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (new_id(), tag, seal(sender), seal(body), sent_at, first + i)
                    for i, (body, sent_at) in enumerate(items)
                ],
            )
            # Recency orders the snapshot; it is not a change the mirror needs pushed.
            await db.execute(
                "UPDATE chats SET updated_at = max(updated_at, ?) WHERE id = ?",
                (max(t for _, t in items), tag),
            )
        return last

    async def snapshot(
        self, *, limit_chats: int = 50, limit_messages: int = 200
    ) -> tuple[int, list[Row], list[Row]]:
        if limit_chats < 0 or limit_messages < 0:
            raise PhoneUsageError("snapshot limits must not be negative")
        async with self._core.transaction(write=False) as db:
            version = await self._core.version(db)
            chats = await fetch_all(
                db,
                "SELECT id, title, version FROM chats"
                " ORDER BY updated_at DESC, version DESC LIMIT ?",
                (limit_chats,),
            )
            messages = await fetch_all(
                db,
                "SELECT id, chat_id, sender, body, sent_at, version FROM messages WHERE chat_id IN"
                " (SELECT id FROM chats ORDER BY updated_at DESC, version DESC LIMIT ?)"
                " ORDER BY version DESC LIMIT ?",
                (limit_chats, limit_messages),
            )
            chat_rows = self._chat_rows(chats)
            await self._learn_chats(db, messages)
        messages.reverse()
        return version, chat_rows, self._message_rows(messages)

    async def changes_since(
        self, version: int, *, limit: int | None = None
    ) -> tuple[int, list[Row], list[Row]]:
        if version < 0:
            raise PhoneUsageError("versions start at 0")
        if limit is not None and limit < 1:
            raise PhoneUsageError("a change limit is at least 1")
        cap = -1 if limit is None else limit  # SQLite: LIMIT -1 is no limit
        # One statement, so one snapshot and one hop to SQLite's thread (it was BEGIN,
        # three SELECTs and COMMIT: five hops holding the store's lock, which a command
        # arriving meanwhile waited behind).
        rows = await self._core.statement(_CHANGES, (version, cap, version, cap))
        current: int | None = None
        chats: list[tuple[Any, ...]] = []
        messages: list[tuple[Any, ...]] = []
        for kind, *row in rows:
            if kind == 0:
                current = int(row[0])
            elif kind == 1:
                chats.append(tuple(row[:3]))  # id, title, version
            else:
                messages.append(tuple(row))  # id, chat_id, sender, body, sent_at, version
        if current is None:
            raise StoreCorrupt(
                f"{self._core.path} is not a healthy phone store (no change counter)"
            )
        if version >= current:
            return current, [], []
        # Each arm is in version order; a compound's output order is not promised.
        chats.sort(key=_version)
        messages.sort(key=_version)
        up_to = current
        if limit is not None and len(chats) + len(messages) >= limit:
            # Either query may have been cut at ``limit`` rows: everything up to the
            # limit-th smallest version is certainly here, nothing after it is promised.
            up_to = sorted(int(r[-1]) for r in chats + messages)[limit - 1]
            chats = [r for r in chats if r[-1] <= up_to]
            messages = [r for r in messages if r[-1] <= up_to]
        chat_rows = self._chat_rows(chats)  # opened first: their messages need no lookup
        if any(self._core.seal.chat_id(str(r[1])) is None for r in messages):
            # Outside the snapshot, which is fine: chats are never deleted.
            async with self._core.transaction(write=False) as db:
                await self._learn_chats(db, messages)
        return up_to, chat_rows, self._message_rows(messages)

    def _chat_rows(self, rows: list[tuple[Any, ...]]) -> list[Row]:
        opened = (self._core.seal.open_chat(str(r[0]), r[1]) for r in rows)
        return [{"id": chat_id, "title": title} for chat_id, title in opened]

    async def _learn_chats(self, db: aiosqlite.Connection, messages: list[tuple[Any, ...]]) -> None:
        """Open the chats of these messages that this process has not seen yet (sealed:
        a message names its chat by tag only)."""
        chat_id = self._core.seal.chat_id
        unseen = sorted({str(r[1]) for r in messages if chat_id(str(r[1])) is None})
        if unseen:
            rows = await fetch_all(
                db,
                "SELECT id, title FROM chats WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(unseen),),
            )
            self._chat_rows(rows)

    def _message_rows(self, rows: list[tuple[Any, ...]]) -> list[Row]:
        open_text, chat_id = self._core.seal.open_text, self._core.seal.chat_id
        out: list[Row] = []
        for r in rows:
            chat = chat_id(str(r[1]))
            if chat is None:
                raise StoreCorrupt(f"{self._core.path} is not a healthy phone store (a lost chat)")
            out.append(
                {
                    "id": str(r[0]),
                    "chat": chat,
                    "sender": open_text(r[2]),
                    "body": open_text(r[3]),
                    "sent_at": float(r[4]),
                }
            )
        return out
