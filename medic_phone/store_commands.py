"""Station commands on the phone: applied exactly once, or kept apart for the medic.

Exactly once: a command and its link's receive cursor (``delivered``) are written in
one transaction, and with ``synchronous=FULL`` a commit is on disk before it returns.
After a crash the command is either applied with its cursor or absent with its
cursor; the station resends what the phone never acknowledged, and a resent command
at or below the cursor is recognised as a duplicate.

A burst is one statement, its own transaction, one hop to SQLite's thread
(``medic_phone.store_apply``): which commands are new is decided here, from the cursor
last read or written by this process, and the trigger checks that cursor against the
file. A command typed at the kiosk becomes a message in the same transaction. One that
arrived after its TTL is kept apart (``pending``) until the medic decides.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypedDict

import aiosqlite

from medic_phone import store_apply
from medic_phone.errors import PhoneUsageError, StoreError
from medic_phone.store_chats import Chats
from medic_phone.store_core import StoreCore
from medic_phone.store_schema import fetch_all, fetch_one, rollback

_READ = "SELECT seq, text, station, received_at, link_id FROM commands"


class CommandRow(TypedDict):
    seq: int
    text: str
    station: str
    received_at: float
    link_id: str


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


def typed_id(command: IncomingCommand) -> str:
    """The message a command becomes: "<session, 16 hex>.<seq>", so the kiosk that typed
    it can put its ticks on it (and a command can only ever become one message)."""
    return f"{command.link_id[:16]}.{command.seq}"


class Commands:
    """The commands of one store (see ``PhoneStore`` for what each call promises)."""

    def __init__(self, core: StoreCore, chats: Chats) -> None:
        self._core = core
        self._chats = chats
        # Each link's receive cursor as last read or written here (the apply trigger
        # checks it against the file).
        self._cursors: dict[str, int] = {}
        self._bursts = itertools.count(1)

    async def apply_commands(
        self, batch: Iterable[IncomingCommand], as_messages: TypedMessages | None
    ) -> list[bool]:
        commands = list(batch)
        for command in commands:
            if command.seq < 1:
                raise PhoneUsageError(f"command sequence numbers start at 1, not {command.seq}")
        if not commands:
            return []
        core = self._core
        core.check_open()
        async with core.lock:
            try:
                for attempt in (1, 2):
                    try:
                        return await self._apply_locked(commands, as_messages)
                    except sqlite3.IntegrityError as exc:
                        if attempt == 2 or store_apply.CURSOR_MOVED not in str(exc):
                            raise
                        self._cursors.clear()  # moved under us: read it again, once
            except sqlite3.Error as exc:
                raise core.refused(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _apply_locked(
        self, commands: list[IncomingCommand], how: TypedMessages | None
    ) -> list[bool]:
        """One hop in the steady state (cursors and chats known), under the lock."""
        db = self._core.db
        unknown = sorted({c.link_id for c in commands} - self._cursors.keys())
        if unknown:
            await self._read_cursors(db, unknown)
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
        seal, burst = self._core.seal.text, next(self._bursts)
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
                (typed_id(c), chat, seal(sender), seal(c.text), c.received_at, n)
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
        try:
            if len(burst_rows) <= store_apply.ALONE:
                # The last row's statement applies the burst: one transaction, one commit.
                await db.executemany(store_apply.STAGE, burst_rows)
            else:
                # A long burst: staging inside the transaction saves a TEMP transaction per
                # row (~4 us each), far more than the two hops it costs.
                try:
                    await db.execute("BEGIN IMMEDIATE")
                    await db.executemany(store_apply.STAGE, burst_rows)
                    await db.execute("COMMIT")
                except BaseException:
                    await rollback(db)
                    raise
        except BaseException:
            # Cancelled or failed: SQLite's thread may have committed all the same, so
            # the cursors kept here are no longer known; read them again next time.
            for link_id in cursors:
                self._cursors.pop(link_id, None)
            raise
        self._cursors.update(cursors)
        self._chats.known |= set(chats)  # committed: they exist for good
        return results

    async def _read_cursors(self, db: aiosqlite.Connection, link_ids: list[str]) -> None:
        rows = await fetch_all(
            db,
            "SELECT id, delivered FROM links WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(link_ids),),
        )
        read = {str(r[0]): int(r[1]) for r in rows}
        for link_id in link_ids:
            if link_id not in read:
                raise StoreError(f"no link {link_id[:16]} in {self._core.path}")
        self._cursors.update(read)

    async def _typed_chats(
        self, db: aiosqlite.Connection, fresh: list[IncomingCommand], how: TypedMessages
    ) -> tuple[list[str], tuple[str, str | bytes] | None]:
        """Where each command's message goes (chat tags, in order), and the fallback chat
        to create first (tag, sealed title) if this burst uses it and it may not exist
        yet. Asks the store only about chats this process has not seen (chats are never
        deleted)."""
        tag = self._core.seal.tag
        known = await self._chats.existing(db, (tag(c.chat) for c in fresh if c.chat))
        fallback = tag(how.fallback_chat)
        chats = [tag(c.chat) if c.chat and tag(c.chat) in known else fallback for c in fresh]
        create = None
        if fallback in chats and fallback not in self._chats.known:
            # The trigger creates it only if it is not there.
            create = (fallback, self._core.seal.chat(how.fallback_chat, how.fallback_title))
        return chats, create

    # -- reading them, and the ones kept apart ----------------------------------------------

    async def commands(self, link_id: str | None) -> list[CommandRow]:
        async with self._core.transaction(write=False) as db:
            if link_id is None:
                rows = await fetch_all(db, f"{_READ} WHERE state = 'applied' ORDER BY rowid")
            else:
                rows = await fetch_all(
                    db,
                    f"{_READ} WHERE link_id = ? AND state = 'applied' ORDER BY rowid",
                    (link_id,),
                )
        return self._rows(rows)

    async def pending(self) -> list[CommandRow]:
        async with self._core.transaction(write=False) as db:
            rows = await fetch_all(db, f"{_READ} WHERE state = 'pending' ORDER BY rowid")
        return self._rows(rows)

    def _rows(self, rows: list[tuple[Any, ...]]) -> list[CommandRow]:
        open_text = self._core.seal.open_text
        return [
            CommandRow(
                seq=int(r[0]),
                text=open_text(r[1]),
                station=str(r[2]),
                received_at=float(r[3]),
                link_id=str(r[4]),
            )
            for r in rows
        ]

    async def decide(
        self, link_id: str, seq: int, *, confirm: bool, as_messages: TypedMessages, now: float
    ) -> bool:
        seal = self._core.seal
        async with self._core.transaction(write=True) as db:
            row = await fetch_one(
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
                chat = None if row[2] is None else seal.open_text(row[2])
                command = IncomingCommand(
                    link_id, seq, seal.open_text(row[0]), str(row[1]), now, chat
                )
                used, new_chat = await self._typed_chats(db, [command], as_messages)
                staged = store_apply.StagedRow(
                    next(self._bursts),
                    1,
                    msg_id=typed_id(command),
                    msg_chat=used[0],
                    sender=seal.text(as_messages.sender),
                    body=seal.text(command.text),
                    sent_at=now,
                    msg_n=1,
                )
                if new_chat is not None:
                    staged = staged._replace(
                        new_chat=new_chat[0], new_chat_title=new_chat[1], new_chat_at=now
                    )
                await db.execute(store_apply.STAGE, staged)
        self._chats.known |= set(used)
        return True
