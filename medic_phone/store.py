"""The phone's durable store: SQLite (WAL, ``synchronous=FULL``) through aiosqlite.

It holds the links with stations (and the opaque tunnel state each needs to resume
after a phone restart), every station command applied, the phone's own chats and
messages, the sessions' wipe receipts, and the tunnel's outbound queue.

``PhoneStore`` is the one door callers use; behind it each job has its module, all on
one connection under one lock (``medic_phone.store_core``):

* ``store_open``: opening, checking and configuring the file, and the seal's check;
* ``store_links``: links and their tunnel state;
* ``store_commands``: commands applied exactly once, and the ones kept apart
  (``store_apply``: a burst in one statement, one hop to SQLite's thread);
* ``store_chats``: the phone's chats and messages, versioned, for the mirror;
* ``store_receipts``: wipe receipts and the keys that sign them;

Sealed: given the store key (unlocked from the keystore with the passphrase), every
command text, message, chat and tunnel state is sealed before it is written (see
``medic_phone.sealing``); the file alone gives up no text and no session secret.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from medic_phone import store_open
from medic_phone.sealing import StoreSeal
from medic_phone.store_chats import Chats, Row
from medic_phone.store_commands import CommandRow, Commands, IncomingCommand, TypedMessages
from medic_phone.store_core import StoreCore
from medic_phone.store_links import LinkRow, Links
from medic_phone.store_receipts import ReceiptRow, Receipts
from medic_phone.store_schema import DB_FILE, SCHEMA_VERSION, migrate

__all__ = [
    "DB_FILE",
    "SCHEMA_VERSION",
    "CommandRow",
    "IncomingCommand",
    "LinkRow",
    "PhoneStore",
    "ReceiptRow",
    "Row",
    "TypedMessages",
    "migrate",
]


class PhoneStore:
    """The phone's store. Get one with ``async with PhoneStore.open(home)`` (or ``create``)."""

    def __init__(self, db: aiosqlite.Connection, path: Path, seal: StoreSeal) -> None:
        self._core = StoreCore(db, path, seal)
        self.path = path
        self._links = Links(self._core)
        self._chats = Chats(self._core)
        self._commands = Commands(self._core, self._chats)
        self._receipts = Receipts(self._core)

    @property
    def sealed(self) -> bool:
        """Whether this store's contents are sealed (False: kept in clear)."""
        return self._core.seal.sealed

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    async def connect(
        cls, home: Path, *, create: bool = False, store_key: bytes | None = None
    ) -> PhoneStore:
        """Open the store under ``home`` (creating it if ``create``); the caller closes it.

        With ``store_key`` a new store is sealed under it, and a sealed store opens only
        with it. A store kept in clear opens with or without a key (``sealed`` says
        which it is); ``create`` with a key refuses one that holds data in clear.

        Raises ``StoreMissing`` (no home, no database, or an empty one, unless
        ``create``), ``StoreCorrupt`` (not SQLite, failing ``quick_check``, or not a
        phone store; the file is left exactly as it was), ``StoreLocked`` (sealed, and
        no key), ``StoreKeyMismatch`` (sealed under another key) or ``StoreError``.
        """
        db, path = await store_open.connect(home, create=create)
        store = cls(db, path, StoreSeal(store_key, where=str(path)))
        try:
            await store_open.prepare(store._core, create=create)
        except BaseException:
            await store.close()
            raise
        return store

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, home: Path, *, store_key: bytes | None = None) -> AsyncIterator[PhoneStore]:
        """The existing store under ``home``, closed on exit."""
        store = await cls.connect(home, store_key=store_key)
        try:
            yield store
        finally:
            await store.close()

    @classmethod
    @contextlib.asynccontextmanager
    async def create(
        cls, home: Path, *, store_key: bytes | None = None
    ) -> AsyncIterator[PhoneStore]:
        """The store under ``home``, created (home 0700, file 0600) if absent; closed on exit."""
        store = await cls.connect(home, create=True, store_key=store_key)
        try:
            yield store
        finally:
            await store.close()

    async def close(self) -> None:
        await self._core.close()

    async def settings(self) -> dict[str, object]:
        """The connection's SQLite settings, read back (for audits and tests)."""
        async with self._core.lock:
            return await store_open.read_settings(self._core.db)

    async def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: it moves when another connection (another
        process) commits, never for this one's own commits. One cheap hop, so a running
        link can notice another process's writes without reading any table."""
        rows = await self._core.statement("PRAGMA data_version")
        return int(rows[0][0]) if rows else 0

    # -- links ---------------------------------------------------------------------------

    async def create_link(
        self,
        link_id: str,
        *,
        station: str,
        key: str,
        info: Mapping[str, Any] | None = None,
        paired_at: float | None = None,
    ) -> None:
        """Record a new pairing (``link_id``: the session id in hex); StoreError if known."""
        await self._links.create_link(
            link_id, station=station, key=key, info=info, paired_at=paired_at
        )

    async def find_link(self, key: str) -> tuple[str, bytes, int] | None:
        """The newest live link made from this URI or code: (id, tunnel state, delivered)."""
        return await self._links.find_link(key)

    async def save_link_state(self, link_id: str, blob: bytes) -> None:
        """Replace the link's opaque tunnel state. An ended link keeps none: its
        resumption secret must never come back, so a late save is ignored."""
        await self._links.save_link_state(link_id, blob)

    async def load_link_state(self, link_id: str) -> bytes | None:
        """The link's saved tunnel state; None if none was saved or the link has ended."""
        return await self._links.load_link_state(link_id)

    async def end_link(self, link_id: str, reason: str) -> None:
        """Mark the link ended (the first reason stays); its tunnel state goes."""
        await self._links.end_link(link_id, reason)

    async def link(self, link_id: str) -> LinkRow | None:
        return await self._links.link(link_id)

    async def links(self) -> list[LinkRow]:
        """Every link, oldest pairing first."""
        return await self._links.links()

    async def delivered(self, link_id: str) -> int:
        """The link's receive cursor: the highest command seq applied in order."""
        return await self._links.delivered(link_id)

    async def touch_link(self, link_id: str, at: float) -> None:
        """The station was last heard of at ``at`` (for `medic-phone links`)."""
        await self._links.touch_link(link_id, at)

    # -- commands ------------------------------------------------------------------------

    async def apply_command(
        self, link_id: str, seq: int, text: str, station: str, received_at: float
    ) -> bool:
        """Apply one command exactly once: True if applied now, False for a duplicate
        (``seq`` at or below the cursor); ``StoreError`` for a gap (nothing changes)."""
        [applied] = await self._commands.apply_commands(
            [IncomingCommand(link_id, seq, text, station, received_at)], None
        )
        return applied

    async def apply_commands(
        self, batch: Iterable[IncomingCommand], *, as_messages: TypedMessages | None = None
    ) -> list[bool]:
        """Apply many commands in one transaction (one fsync: group commit).

        Returns, per command, whether it was applied now (False: a duplicate). A gap
        anywhere raises ``StoreError`` and rolls back the whole batch. With
        ``as_messages``, each command applied now also becomes a message, in the same
        transaction, so a crash can never leave one without the other. One hop to
        SQLite's thread once the links' cursors and chats are known.
        """
        return await self._commands.apply_commands(batch, as_messages)

    async def commands(self, link_id: str | None = None) -> list[CommandRow]:
        """The applied commands (of one link, or all), in the order they reached the phone
        (a command confirmed after its TTL stands where it arrived)."""
        return await self._commands.commands(link_id)

    async def pending(self) -> list[CommandRow]:
        """Commands that arrived after their TTL, waiting for the medic, oldest first."""
        return await self._commands.pending()

    async def decide(
        self, link_id: str, seq: int, *, confirm: bool, as_messages: TypedMessages, now: float
    ) -> bool:
        """Apply (``confirm``) or discard a pending command; False if it is not pending.
        A confirmed command becomes its message in the same transaction."""
        return await self._commands.decide(
            link_id, seq, confirm=confirm, as_messages=as_messages, now=now
        )

    # -- receipts ------------------------------------------------------------------------

    async def set_receipt_key(self, link_id: str, key: bytes) -> None:
        """Remember the key that signs this session's wipe receipt (the first one stays)."""
        await self._receipts.set_receipt_key(link_id, key)

    async def receipt_key(self, link_id: str) -> bytes | None:
        return await self._receipts.receipt_key(link_id)

    async def add_receipt(self, link_id: str, body: bytes, signature: bytes, at: float) -> bool:
        """Keep a session's wipe receipt (content-free); False if it already has one."""
        return await self._receipts.add_receipt(link_id, body, signature, at)

    async def receipts(self) -> list[ReceiptRow]:
        return await self._receipts.receipts()

    # -- the phone's own chats and messages ----------------------------------------------

    async def version(self) -> int:
        """The version of the latest change to a chat or a message (0: none yet)."""
        return await self._chats.version()

    async def ensure_chat(self, chat_id: str, title: str, *, now: float | None = None) -> bool:
        """Create the chat, or retitle it; True if that changed anything (a new version)."""
        return await self._chats.ensure_chat(chat_id, title, now=now)

    async def add_message(self, chat_id: str, sender: str, body: str, sent_at: float) -> int:
        """Add a message to an existing chat; returns its version."""
        return await self._chats.add_message(chat_id, sender, body, sent_at)

    async def add_messages(
        self, chat_id: str, sender: str, items: Sequence[tuple[str, float]]
    ) -> int:
        """Add many messages (body, sent_at) to one chat in one transaction; the last version."""
        return await self._chats.add_messages(chat_id, sender, items)

    async def snapshot(
        self, *, limit_chats: int = 50, limit_messages: int = 200
    ) -> tuple[int, list[Row], list[Row]]:
        """(version, the most recent chats, the latest messages of those chats, oldest first).

        Everything up to ``version`` that the mirror shows is in it: push it, then
        ``changes_since(version)``.
        """
        return await self._chats.snapshot(limit_chats=limit_chats, limit_messages=limit_messages)

    async def changes_since(
        self, version: int, *, limit: int | None = None
    ) -> tuple[int, list[Row], list[Row]]:
        """(up_to, chats, messages) changed after ``version``, each in version order.

        ``up_to`` is the version the result brings a mirror to: the current version, or,
        when ``limit`` cut the result short, the last change included (ask again from it).
        """
        return await self._chats.changes_since(version, limit=limit)
