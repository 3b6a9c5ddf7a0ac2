"""The phone's durable store: SQLite (WAL, ``synchronous=FULL``) through aiosqlite.

It holds the links with stations (and the opaque tunnel state each needs to resume
after a phone restart), every station command applied, the phone's own chats and
messages, and the tunnel's outbound queue.

Exactly once: a command and the link's receive cursor (``delivered``) are written in
one transaction, and with ``synchronous=FULL`` a commit is on disk before it returns.
After a crash the command is either applied with its cursor or absent with its
cursor; the station resends what the phone never acknowledged, and a resent command
at or below the cursor is recognised as a duplicate.

Versions: every change to a chat or a message takes the next value of one counter,
so the phone can push a snapshot at version V and then "everything after V".

One connection per store, used by one event loop. Every operation runs inside its
own transaction under an ``asyncio.Lock``: two coroutines sharing the connection must
never interleave statements into each other's transaction (a reader would otherwise
see rows that a rollback then takes back). Applying a burst of commands is a single
statement, its own transaction, one hop to SQLite's thread (``medic_phone.store_apply``).

Sealed: given the store key (unlocked from the keystore with the passphrase), every
command text, message, chat and tunnel state is sealed before it is written (see
``medic_phone.sealing``); the file alone gives up no text and no session secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import sqlite3
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import aiosqlite

from medic_phone import store_apply
from medic_phone.errors import (
    PhoneUsageError,
    StoreCorrupt,
    StoreError,
    StoreKeyMismatch,
    StoreLocked,
    StoreMissing,
)
from medic_phone.sealing import StoreSeal
from medic_phone.store_schema import (
    BUSY_TIMEOUT,
    DB_FILE,
    SCHEMA_VERSION,
    check_exists,
    migrate,
    prepare_home,
    schema_version,
    translate_error,
)
from medic_phone.store_schema import fetch_all as _all
from medic_phone.store_schema import fetch_one as _one

__all__ = [
    "DB_FILE",
    "SCHEMA_VERSION",
    "CommandRow",
    "IncomingCommand",
    "LinkRow",
    "PhoneStore",
    "TypedMessages",
    "migrate",
]

# Chats and messages go straight into the mirror's JSON (``wire.app.encode_update_rows``),
# so they stay plain dicts with the mirror's keys: chats {id, title}; messages {id, chat,
# sender, body, sent_at}.
Row = dict[str, Any]


class LinkRow(TypedDict):
    id: str
    key: str
    station: str
    station_info: dict[str, Any]
    paired_at: float
    state: str  # 'linked' | 'ended'
    end_reason: str | None
    delivered: int
    last_contact: float | None


class CommandRow(TypedDict):
    seq: int
    text: str
    station: str
    received_at: float
    link_id: str


class ReceiptRow(TypedDict):
    link_id: str
    station: str
    body: bytes
    signature: bytes
    key: bytes | None  # the session's receipt key, learnt inside the tunnel
    received_at: float


class IncomingCommand(NamedTuple):
    """One station command to apply, for ``apply_commands``."""

    link_id: str
    seq: int
    text: str
    station: str
    received_at: float
    chat: str | None = None  # the chat it was typed in at the kiosk, if any
    expired: bool = False  # arrived after its TTL: kept apart for the medic to decide


@dataclass(frozen=True, slots=True)
class TypedMessages:
    """How ``apply_commands`` records each new command as a message: in the chat it was
    typed in when the phone has that chat, otherwise in the fallback chat."""

    sender: str
    fallback_chat: str
    fallback_title: str


def _typed_id(command: IncomingCommand) -> str:
    """The message a command becomes: "<session, 16 hex>.<seq>", so the kiosk that typed
    it can put its ticks on it (and a command can only ever become one message)."""
    return f"{command.link_id[:16]}.{command.seq}"


def _new_id() -> str:
    """A message id: 128 random bits in hex (uuid4's cost without its object)."""
    return secrets.token_hex(16)


class PhoneStore:
    """The phone's store. Get one with ``async with PhoneStore.open(home)`` (or ``create``)."""

    def __init__(self, db: aiosqlite.Connection, path: Path, seal: StoreSeal) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        self._closed = False
        self.path = path
        self._seal = seal
        # Chats known to exist (chats are never deleted), so the hot path need not ask;
        # by tag (the chat id itself in a store kept in clear).
        self._known_chats: set[str] = set()
        self._chat_ids: dict[str, str] = {}  # tag -> chat id, for reading messages
        # Each link's receive cursor as last read or written here (the apply trigger
        # checks it against the file).
        self._cursors: dict[str, int] = {}
        self._bursts = itertools.count(1)

    @property
    def sealed(self) -> bool:
        """Whether this store's contents are sealed (False: kept in clear)."""
        return self._seal.sealed

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
        store = cls(db, path, StoreSeal(store_key, where=str(path)))
        try:
            await store._prepare(create=create)
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
        if not self._closed:
            self._closed = True
            await self._db.close()

    async def _prepare(self, *, create: bool) -> None:
        db = self._db
        try:
            # Before anything reads: no temporary table or sort ever spills to disk.
            await db.execute("PRAGMA temp_store=MEMORY")
            # Check before the first write (setting WAL writes the header).
            verdict = [str(r[0]) for r in await _all(db, "PRAGMA quick_check")] or ["no answer"]
            if verdict != ["ok"]:
                raise StoreCorrupt(
                    f"{self.path} is not a healthy phone store (quick_check: {verdict[0]}); "
                    "nothing was changed"
                )
            if await schema_version(db, self.path) == 0 and not create:
                raise StoreMissing(f"the store {self.path} is empty: run `medic-phone init` first")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA synchronous=FULL")
            mode = await _one(db, "PRAGMA journal_mode=WAL")
            if mode is None or str(mode[0]).lower() != "wal":
                raise StoreError(f"{self.path}: this filesystem does not support WAL mode")
            settings = await self._settings()
            if settings["temp_store"] != 2 or settings["foreign_keys"] != 1:
                raise StoreError(f"{self.path}: SQLite refused the store's settings")
            await migrate(db, self.path)
            await self._check_seal(create=create)
            await store_apply.install(db)
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path, f"cannot open {self.path}") from None

    async def _check_seal(self, *, create: bool) -> None:
        """The key fits the store: a sealed store opens only with its own key."""
        db = self._db
        row = await _one(db, "SELECT value FROM store_meta WHERE name = 'seal_check'")
        check = None if row is None else bytes(row[0])
        if check is not None and self._seal.opens(check):
            return
        empty = await _one(
            db,
            "SELECT NOT EXISTS (SELECT 1 FROM links) AND NOT EXISTS (SELECT 1 FROM chats)"
            " AND NOT EXISTS (SELECT 1 FROM commands) AND NOT EXISTS (SELECT 1 FROM messages)",
        )
        if create and empty is not None and empty[0]:
            # A new (or still empty) store takes the key it is created with.
            await db.execute("BEGIN IMMEDIATE")
            await db.execute("DELETE FROM store_meta WHERE name = 'seal_check'")
            value = self._seal.check_value()
            if value is not None:
                await db.execute(
                    "INSERT INTO store_meta (name, value) VALUES ('seal_check', ?)", (value,)
                )
            await db.execute("COMMIT")
            return
        if check is None:
            if create and self._seal.sealed:
                raise StoreError(
                    f"{self.path} already holds data kept in clear; sealing now would leave"
                    " that data readable: move the phone home away first"
                )
            self._seal = StoreSeal(None, where=str(self.path))  # kept in clear, as it was
            return
        if not self._seal.sealed:
            raise StoreLocked(f"{self.path} is sealed: it opens only with the phone's passphrase")
        raise StoreKeyMismatch(
            f"{self.path} is sealed under another key (another identity's store?);"
            " nothing was changed"
        )

    async def _settings(self) -> dict[str, object]:
        values: dict[str, object] = {}
        for name in ("journal_mode", "synchronous", "foreign_keys", "temp_store"):
            row = await _one(self._db, f"PRAGMA {name}")
            values[name] = None if row is None else row[0]
        return values

    async def settings(self) -> dict[str, object]:
        """The connection's SQLite settings, read back (for audits and tests)."""
        async with self._lock:
            return await self._settings()

    @contextlib.asynccontextmanager
    async def _transaction(self, *, write: bool) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction, alone on the connection; sqlite errors become store errors."""
        if self._closed:
            raise StoreError(f"{self.path}: the store is closed")
        async with self._lock:
            db = self._db
            try:
                # IMMEDIATE takes the write lock up front: no upgrade deadlock, and the
                # busy timeout applies to the whole transaction.
                await db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                    await db.execute("COMMIT")
                except BaseException:
                    # Also after a failed COMMIT, which can leave the transaction open.
                    if db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            await db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise translate_error(
                    exc, self.path, f"{self.path} refused the operation"
                ) from None

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
        info_json = json.dumps(dict(info or {}), sort_keys=True)
        when = time.time() if paired_at is None else paired_at
        async with self._transaction(write=True) as db:
            await db.execute(
                "INSERT INTO links (id, key, station, station_info, paired_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (link_id, key, station, info_json, when),
            )

    async def find_link(self, key: str) -> tuple[str, bytes, int] | None:
        """The newest live link made from this URI or code: (id, tunnel state, delivered)."""
        async with self._transaction(write=False) as db:
            row = await _one(
                db,
                "SELECT id, tunnel_state, delivered FROM links"
                " WHERE key = ? AND state = 'linked' AND tunnel_state IS NOT NULL"
                " ORDER BY paired_at DESC, rowid DESC LIMIT 1",
                (key,),
            )
        if row is None:
            return None
        return str(row[0]), self._seal.open_blob(row[1]), int(row[2])

    async def save_link_state(self, link_id: str, blob: bytes) -> None:
        """Replace the link's opaque tunnel state. An ended link keeps none: its
        resumption secret must never come back, so a late save is ignored."""
        # One statement, one hop: this commit is on the path of every resume.
        saved = await self._statement(
            "UPDATE links SET tunnel_state = ? WHERE id = ? AND state = 'linked' RETURNING 1",
            (self._seal.blob(bytes(blob)), link_id),
        )
        if not saved:
            async with self._transaction(write=False) as db:
                await self._link(db, link_id)  # StoreError if unknown; ended: ignored

    async def _statement(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One statement alone on the connection: in autocommit it is its own transaction."""
        if self._closed:
            raise StoreError(f"{self.path}: the store is closed")
        async with self._lock:
            try:
                return await _all(self._db, sql, params)
            except sqlite3.Error as exc:
                raise translate_error(
                    exc, self.path, f"{self.path} refused the operation"
                ) from None

    async def load_link_state(self, link_id: str) -> bytes | None:
        """The link's saved tunnel state; None if none was saved or the link has ended."""
        async with self._transaction(write=False) as db:
            blob = (await self._link(db, link_id))[2]
        return None if blob is None else self._seal.open_blob(blob)

    async def end_link(self, link_id: str, reason: str) -> None:
        """Mark the link ended (the first reason stays); its tunnel state and outbox go."""
        async with self._transaction(write=True) as db:
            if (await self._link(db, link_id))[0] == "ended":
                return
            await db.execute(
                "UPDATE links SET state = 'ended', end_reason = ?, tunnel_state = NULL"
                " WHERE id = ?",
                (reason, link_id),
            )
            # Sealed entries for a link that can never resume can never be sent.
            await db.execute("DELETE FROM outbox WHERE link_id = ?", (link_id,))

    async def link(self, link_id: str) -> LinkRow | None:
        async with self._transaction(write=False) as db:
            rows = await self._link_rows(db, link_id)
        return rows[0] if rows else None

    async def links(self) -> list[LinkRow]:
        """Every link, oldest pairing first."""
        async with self._transaction(write=False) as db:
            return await self._link_rows(db, None)

    async def delivered(self, link_id: str) -> int:
        """The link's receive cursor: the highest command seq applied in order."""
        async with self._transaction(write=False) as db:
            return int((await self._link(db, link_id))[1])

    async def _link(self, db: aiosqlite.Connection, link_id: str) -> tuple[Any, ...]:
        """(state, delivered, tunnel_state) of a link; ``StoreError`` if it is unknown."""
        row = await _one(
            db, "SELECT state, delivered, tunnel_state FROM links WHERE id = ?", (link_id,)
        )
        if row is None:
            raise StoreError(f"no link {link_id[:16]} in {self.path}")
        return row

    async def _link_rows(self, db: aiosqlite.Connection, link_id: str | None) -> list[LinkRow]:
        if link_id is None:
            rows = await _all(
                db,
                "SELECT id, key, station, station_info, paired_at, state, end_reason, delivered,"
                " last_contact FROM links ORDER BY paired_at, rowid",
            )
        else:
            rows = await _all(
                db,
                "SELECT id, key, station, station_info, paired_at, state, end_reason, delivered,"
                " last_contact FROM links WHERE id = ?",
                (link_id,),
            )
        return [
            LinkRow(
                id=str(r[0]),
                key=str(r[1]),
                station=str(r[2]),
                station_info=json.loads(r[3]),
                paired_at=float(r[4]),
                state=str(r[5]),
                end_reason=None if r[6] is None else str(r[6]),
                delivered=int(r[7]),
                last_contact=None if r[8] is None else float(r[8]),
            )
            for r in rows
        ]

    # -- commands ------------------------------------------------------------------------

    async def apply_command(
        self, link_id: str, seq: int, text: str, station: str, received_at: float
    ) -> bool:
        """Apply one command exactly once: True if applied now, False for a duplicate
        (``seq`` at or below the cursor); ``StoreError`` for a gap (nothing changes)."""
        [applied] = await self.apply_commands(
            [IncomingCommand(link_id, seq, text, station, received_at)]
        )
        return applied

    async def apply_commands(
        self, batch: Iterable[IncomingCommand], *, as_messages: TypedMessages | None = None
    ) -> list[bool]:
        """Apply many commands in one transaction (one fsync: group commit).

        Returns, per command, whether it was applied now (False: a duplicate). A gap
        anywhere raises ``StoreError`` and rolls back the whole batch. With
        ``as_messages``, each command applied now also becomes a message, in the same
        transaction, so a crash can never leave one without the other.
        """
        commands = list(batch)
        for command in commands:
            if command.seq < 1:
                raise PhoneUsageError(f"command sequence numbers start at 1, not {command.seq}")
        if not commands:
            return []
        if self._closed:
            raise StoreError(f"{self.path}: the store is closed")
        async with self._lock:
            try:
                for attempt in (1, 2):
                    try:
                        return await self._apply_locked(commands, as_messages)
                    except sqlite3.IntegrityError as exc:
                        if attempt == 2 or store_apply.CURSOR_MOVED not in str(exc):
                            raise
                        self._cursors.clear()  # moved under us: read it again, once
            except sqlite3.Error as exc:
                raise translate_error(
                    exc, self.path, f"{self.path} refused the operation"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _apply_locked(
        self, commands: list[IncomingCommand], how: TypedMessages | None
    ) -> list[bool]:
        """One hop in the steady state (cursors and chats known), under the lock."""
        db = self._db
        unknown = sorted({c.link_id for c in commands} - self._cursors.keys())
        if unknown:
            rows = await _all(
                db,
                "SELECT id, delivered FROM links WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(unknown),),
            )
            read = {str(r[0]): int(r[1]) for r in rows}
            for link_id in unknown:
                if link_id not in read:
                    raise StoreError(f"no link {link_id[:16]} in {self.path}")
            self._cursors.update(read)
        results: list[bool] = []
        fresh: list[IncomingCommand] = []
        cursors: dict[str, int] = {}
        for command in commands:
            link_id, seq = command.link_id, command.seq
            delivered = cursors.get(link_id, self._cursors[link_id])
            if seq <= delivered:
                results.append(False)
                continue
            if seq != delivered + 1:
                raise StoreError(
                    f"command {seq} on link {link_id[:16]} would skip"
                    f" {delivered + 1}..{seq - 1}; nothing was applied"
                )
            fresh.append(command)
            cursors[link_id] = seq
            results.append(True)
        if not fresh:
            return results
        seal, burst = self._seal.text, next(self._bursts)
        chats: list[str] = []
        create: dict[str, Any] = {}
        # Plain tuples in StagedRow's order: this runs for every command.
        typed: list[tuple[Any, ...]] = []
        if how is not None:
            applied = [c for c in fresh if not c.expired]
            chats, new_chat = await self._typed_chats(db, applied, how)
            if new_chat is not None:
                tag, title = new_chat
                create = {"new_chat": tag, "new_chat_title": title}
                create["new_chat_at"] = applied[0].received_at
            sender = how.sender
            typed = [
                (_typed_id(c), chat, seal(sender), seal(c.text), c.received_at, n)
                for n, (c, chat) in enumerate(zip(applied, chats, strict=True), start=1)
            ]
        messages = iter(typed)  # one for each command applied now, in order
        none = (None,) * 6
        tail = (None, None, None)  # new_chat, new_chat_title, new_chat_at
        staged = [
            store_apply.StagedRow._make(
                (
                    burst,
                    0,
                    c.link_id,
                    c.seq,
                    seal(c.text),
                    c.station,
                    c.received_at,
                    "pending" if c.expired else "applied",
                    None if c.chat is None else seal(c.chat),
                    *(none if how is None or c.expired else next(messages)),
                    *tail,
                )
            )
            for c in fresh
        ]
        burst_rows = store_apply.finish(staged, **create)
        if len(burst_rows) <= store_apply.ALONE:
            # The last row's statement applies the burst: one transaction, one FULL commit.
            await db.executemany(store_apply.STAGE, burst_rows)
        else:
            # A long burst: staging inside the transaction saves a TEMP transaction per
            # row (~4 us each), far more than the two hops it costs.
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany(store_apply.STAGE, burst_rows)
                await db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await db.execute("ROLLBACK")
                raise
        self._cursors.update(cursors)
        self._known_chats |= set(chats)  # committed: they exist for good
        return results

    async def _typed_chats(
        self, db: aiosqlite.Connection, fresh: list[IncomingCommand], how: TypedMessages
    ) -> tuple[list[str], tuple[str, str | bytes] | None]:
        """Where each command's message goes (chat tags, in order), and the fallback chat
        to create first (tag, sealed title) if this burst uses it and it may not exist
        yet. Asks the store only about chats this process has not seen (chats are never
        deleted)."""
        tag = self._seal.tag
        wanted = {tag(c.chat) for c in fresh if c.chat}
        known = self._known_chats & wanted
        named = sorted(wanted - known)
        if named:
            rows = await _all(
                db,
                "SELECT id FROM chats WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(named),),
            )
            known |= {str(r[0]) for r in rows}
        fallback = tag(how.fallback_chat)
        chats = [tag(c.chat) if c.chat and tag(c.chat) in known else fallback for c in fresh]
        create = None
        if fallback in chats and fallback not in self._known_chats:
            # The trigger creates it only if it is not there.
            create = (fallback, self._seal.chat(how.fallback_chat, how.fallback_title))
        return chats, create

    async def commands(self, link_id: str | None = None) -> list[CommandRow]:
        """The applied commands (of one link, or all), in the order they reached the phone
        (a command confirmed after its TTL stands where it arrived)."""
        async with self._transaction(write=False) as db:
            if link_id is None:
                rows = await _all(
                    db,
                    "SELECT seq, text, station, received_at, link_id FROM commands"
                    " WHERE state = 'applied' ORDER BY rowid",
                )
            else:
                rows = await _all(
                    db,
                    "SELECT seq, text, station, received_at, link_id FROM commands"
                    " WHERE link_id = ? AND state = 'applied' ORDER BY rowid",
                    (link_id,),
                )
        return [
            CommandRow(
                seq=int(r[0]),
                text=self._seal.open_text(r[1]),
                station=str(r[2]),
                received_at=float(r[3]),
                link_id=str(r[4]),
            )
            for r in rows
        ]

    # -- commands kept apart, receipts, last contact ------------------------------------

    async def pending(self) -> list[CommandRow]:
        """Commands that arrived after their TTL, waiting for the medic, oldest first."""
        async with self._transaction(write=False) as db:
            rows = await _all(
                db,
                "SELECT seq, text, station, received_at, link_id FROM commands"
                " WHERE state = 'pending' ORDER BY rowid",
            )
        return [
            CommandRow(
                seq=int(r[0]),
                text=self._seal.open_text(r[1]),
                station=str(r[2]),
                received_at=float(r[3]),
                link_id=str(r[4]),
            )
            for r in rows
        ]

    async def decide(
        self, link_id: str, seq: int, *, confirm: bool, as_messages: TypedMessages, now: float
    ) -> bool:
        """Apply (``confirm``) or discard a pending command; False if it is not pending.
        A confirmed command becomes its message in the same transaction."""
        async with self._transaction(write=True) as db:
            row = await _one(
                db,
                "SELECT text, station, chat FROM commands"
                " WHERE link_id = ? AND seq = ? AND state = 'pending'",
                (link_id, seq),
            )
            if row is None:
                return False
            await db.execute(
                "UPDATE commands SET state = ?, decided_at = ? WHERE link_id = ? AND seq = ?",
                ("applied" if confirm else "discarded", now, link_id, seq),
            )
            used: list[str] = []
            if confirm:
                chat = None if row[2] is None else self._seal.open_text(row[2])
                command = IncomingCommand(
                    link_id, seq, self._seal.open_text(row[0]), str(row[1]), now, chat
                )
                used, new_chat = await self._typed_chats(db, [command], as_messages)
                seal = self._seal.text
                row = store_apply.StagedRow(
                    next(self._bursts),
                    1,
                    msg_id=_typed_id(command),
                    msg_chat=used[0],
                    sender=seal(as_messages.sender),
                    body=seal(command.text),
                    sent_at=now,
                    msg_n=1,
                )
                if new_chat is not None:
                    row = row._replace(
                        new_chat=new_chat[0], new_chat_title=new_chat[1], new_chat_at=now
                    )
                await db.execute(store_apply.STAGE, row)
        self._known_chats |= set(used)
        return True

    async def set_receipt_key(self, link_id: str, key: bytes) -> None:
        """Remember the key that signs this session's wipe receipt (the first one stays)."""
        async with self._transaction(write=True) as db:
            await db.execute(
                "UPDATE links SET receipt_key = ? WHERE id = ? AND receipt_key IS NULL",
                (bytes(key), link_id),
            )

    async def receipt_key(self, link_id: str) -> bytes | None:
        async with self._transaction(write=False) as db:
            row = await _one(db, "SELECT receipt_key FROM links WHERE id = ?", (link_id,))
        return None if row is None or row[0] is None else bytes(row[0])

    async def add_receipt(self, link_id: str, body: bytes, signature: bytes, at: float) -> bool:
        """Keep a session's wipe receipt (content-free); False if it already has one."""
        async with self._transaction(write=True) as db:
            known = await _one(db, "SELECT 1 FROM receipts WHERE link_id = ?", (link_id,))
            if known is not None:
                return False
            await db.execute(
                "INSERT INTO receipts (link_id, body, signature, received_at) VALUES (?, ?, ?, ?)",
                (link_id, bytes(body), bytes(signature), at),
            )
        return True

    async def receipts(self) -> list[ReceiptRow]:
        async with self._transaction(write=False) as db:
            rows = await _all(
                db,
                "SELECT r.link_id, l.station, r.body, r.signature, l.receipt_key, r.received_at"
                " FROM receipts r JOIN links l ON l.id = r.link_id ORDER BY r.received_at",
            )
        return [
            ReceiptRow(
                link_id=str(r[0]),
                station=str(r[1]),
                body=bytes(r[2]),
                signature=bytes(r[3]),
                key=None if r[4] is None else bytes(r[4]),
                received_at=float(r[5]),
            )
            for r in rows
        ]

    async def touch_link(self, link_id: str, at: float) -> None:
        """The station was last heard of at ``at`` (for `medic-phone links`)."""
        await self._statement("UPDATE links SET last_contact = ? WHERE id = ?", (at, link_id))

    # -- the phone's own chats and messages ----------------------------------------------

    async def _version(self, db: aiosqlite.Connection, *, bump: bool = False) -> int:
        """The change counter; with ``bump``, advanced by one first (inside a write)."""
        if bump:
            row = await _one(
                db,
                "UPDATE counters SET value = value + 1"
                " WHERE name = 'change_version' RETURNING value",
            )
        else:
            row = await _one(db, "SELECT value FROM counters WHERE name = 'change_version'")
        if row is None:
            raise StoreCorrupt(f"{self.path} is not a healthy phone store (no change counter)")
        return int(row[0])

    async def _version_bump_by(self, db: aiosqlite.Connection, count: int) -> int:
        """Advance the change counter by ``count`` at once; the last version taken."""
        row = await _one(
            db,
            "UPDATE counters SET value = value + ? WHERE name = 'change_version' RETURNING value",
            (count,),
        )
        if row is None:
            raise StoreCorrupt(f"{self.path} is not a healthy phone store (no change counter)")
        return int(row[0])

    async def version(self) -> int:
        """The version of the latest change to a chat or a message (0: none yet)."""
        async with self._transaction(write=False) as db:
            return await self._version(db)

    async def ensure_chat(self, chat_id: str, title: str, *, now: float | None = None) -> bool:
        """Create the chat, or retitle it; True if that changed anything (a new version)."""
        when = time.time() if now is None else now
        tag = self._seal.tag(chat_id)
        async with self._transaction(write=True) as db:
            row = await _one(db, "SELECT title FROM chats WHERE id = ?", (tag,))
            if row is not None and self._seal.open_chat(tag, row[0])[1] == title:
                return False
            version = await self._version(db, bump=True)
            stored = self._seal.chat(chat_id, title)
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
        """Add a message to an existing chat; returns its version."""
        tag, seal = self._seal.tag(chat_id), self._seal.text
        async with self._transaction(write=True) as db:
            if await _one(db, "SELECT 1 FROM chats WHERE id = ?", (tag,)) is None:
                raise StoreError(f"no chat {chat_id!r}: call ensure_chat first")
            version = await self._version(db, bump=True)
            await db.execute(
                "INSERT INTO messages (id, chat_id, sender, body, sent_at, version)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (_new_id(), tag, seal(sender), seal(body), sent_at, version),
            )
            # Recency orders the snapshot; it is not a change the mirror needs pushed.
            await db.execute(
                "UPDATE chats SET updated_at = max(updated_at, ?) WHERE id = ?",
                (sent_at, tag),
            )
        return version

    async def add_messages(
        self, chat_id: str, sender: str, items: Sequence[tuple[str, float]]
    ) -> int:
        """Add many messages (body, sent_at) to one chat in one transaction; the last version."""
        if not items:
            return 0
        tag, seal = self._seal.tag(chat_id), self._seal.text
        async with self._transaction(write=True) as db:
            if await _one(db, "SELECT 1 FROM chats WHERE id = ?", (tag,)) is None:
                raise StoreError(f"no chat {chat_id!r}: call ensure_chat first")
            last = await self._version_bump_by(db, len(items))
            first = last - len(items) + 1
            await db.executemany(
                "INSERT INTO messages (id, chat_id, sender, body, sent_at, version)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (_new_id(), tag, seal(sender), seal(body), sent_at, first + i)
                    for i, (body, sent_at) in enumerate(items)
                ],
            )
            await db.execute(
                "UPDATE chats SET updated_at = max(updated_at, ?) WHERE id = ?",
                (max(t for _, t in items), tag),
            )
        return last

    async def snapshot(
        self, *, limit_chats: int = 50, limit_messages: int = 200
    ) -> tuple[int, list[Row], list[Row]]:
        """(version, the most recent chats, the latest messages of those chats, oldest first).

        Everything up to ``version`` that the mirror shows is in it: push it, then
        ``changes_since(version)``.
        """
        if limit_chats < 0 or limit_messages < 0:
            raise PhoneUsageError("snapshot limits must not be negative")
        async with self._transaction(write=False) as db:
            version = await self._version(db)
            chats = await _all(
                db,
                "SELECT id, title, version FROM chats"
                " ORDER BY updated_at DESC, version DESC LIMIT ?",
                (limit_chats,),
            )
            messages = await _all(
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
        """(up_to, chats, messages) changed after ``version``, each in version order.

        ``up_to`` is the version the result brings a mirror to: the current version, or,
        when ``limit`` cut the result short, the last change included (ask again from it).
        """
        if version < 0:
            raise PhoneUsageError("versions start at 0")
        if limit is not None and limit < 1:
            raise PhoneUsageError("a change limit is at least 1")
        cap = -1 if limit is None else limit  # SQLite: LIMIT -1 is no limit
        async with self._transaction(write=False) as db:
            current = await self._version(db)
            if version >= current:
                return current, [], []
            chats = await _all(
                db,
                "SELECT id, title, version FROM chats WHERE version > ? ORDER BY version LIMIT ?",
                (version, cap),
            )
            messages = await _all(
                db,
                "SELECT id, chat_id, sender, body, sent_at, version FROM messages"
                " WHERE version > ? ORDER BY version LIMIT ?",
                (version, cap),
            )
            await self._learn_chats(db, messages)
        up_to = current
        if limit is not None and len(chats) + len(messages) >= limit:
            # Either query may have been cut at ``limit`` rows: everything up to the
            # limit-th smallest version is certainly here, nothing after it is promised.
            up_to = sorted(int(r[-1]) for r in chats + messages)[limit - 1]
            chats = [r for r in chats if r[-1] <= up_to]
            messages = [r for r in messages if r[-1] <= up_to]
        return up_to, self._chat_rows(chats), self._message_rows(messages)

    def _chat_rows(self, rows: list[tuple[Any, ...]]) -> list[Row]:
        opened = (self._seal.open_chat(str(r[0]), r[1]) for r in rows)
        return [{"id": chat_id, "title": title} for chat_id, title in opened]

    async def _learn_chats(self, db: aiosqlite.Connection, messages: list[tuple[Any, ...]]) -> None:
        """Open the chats of these messages that this process has not seen yet (sealed:
        a message names its chat by tag only)."""
        unseen = sorted({str(r[1]) for r in messages if self._seal.chat_id(str(r[1])) is None})
        if unseen:
            rows = await _all(
                db,
                "SELECT id, title FROM chats WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(unseen),),
            )
            self._chat_rows(rows)

    def _message_rows(self, rows: list[tuple[Any, ...]]) -> list[Row]:
        open_text, chat_id = self._seal.open_text, self._seal.chat_id
        out: list[Row] = []
        for r in rows:
            chat = chat_id(str(r[1]))
            if chat is None:
                raise StoreCorrupt(f"{self.path} is not a healthy phone store (a lost chat)")
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

    # -- the tunnel's outbound queue (QueueStorage, behind a sync adapter) ---------------

    async def outbox_append(self, link_id: str, seq: int, sealed: bytes) -> None:
        """Queue a sealed entry; ``StoreError`` for an unknown link or a repeated seq."""
        async with self._transaction(write=True) as db:
            await db.execute(
                "INSERT INTO outbox (link_id, seq, sealed) VALUES (?, ?, ?)",
                (link_id, seq, bytes(sealed)),
            )

    async def outbox_remove_through(self, link_id: str, seq: int) -> int:
        """Drop the entries up to and including ``seq`` (acknowledged); returns how many."""
        async with self._transaction(write=True) as db:
            row = await _one(
                db,
                "SELECT count(*) FROM outbox WHERE link_id = ? AND seq <= ?",
                (link_id, seq),
            )
            await db.execute("DELETE FROM outbox WHERE link_id = ? AND seq <= ?", (link_id, seq))
        return 0 if row is None else int(row[0])

    async def outbox_items(self, link_id: str) -> list[tuple[int, bytes]]:
        """The queued entries, in seq order."""
        async with self._transaction(write=False) as db:
            rows = await _all(
                db, "SELECT seq, sealed FROM outbox WHERE link_id = ? ORDER BY seq", (link_id,)
            )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def outbox_size(self, link_id: str) -> tuple[int, int]:
        """(count, total bytes) of the queued entries."""
        async with self._transaction(write=False) as db:
            row = await _one(
                db,
                "SELECT count(*), coalesce(sum(length(sealed)), 0) FROM outbox WHERE link_id = ?",
                (link_id,),
            )
        return (0, 0) if row is None else (int(row[0]), int(row[1]))
