"""The store's apply path in one hop to SQLite's thread, whatever the burst's size.

aiosqlite runs every statement on SQLite's own thread, and each call is a round trip
to that thread (~60 us here, ~100 us at p99 on a loaded machine). An explicit
transaction of BEGIN, a statement per table and COMMIT was eight of them for one
command. Here a burst is one ``executemany`` into a TEMP staging table, ``fs_rows``.
Each row but the last is its own tiny transaction on the TEMP database (in memory:
``temp_store=MEMORY``; the store's file is not touched). The last row's trigger moves
the burst into the store's tables, one set-based statement per table as before, and
empties the staging table: all of that is the last row's statement, which in
autocommit mode is its own transaction on the store, so the burst is all-or-nothing
and one ``synchronous=FULL`` commit. Rows keep their native types (a sealed value
stays a BLOB). The table and triggers live in the connection's TEMP schema: nothing is
added to the store's file, and nothing of a burst outlives it there.

The caller (``medic_phone.store_commands``) decides in Python which commands are new,
from the cursor it last read or wrote; the trigger checks that cursor against the file
and aborts the statement if it moved (another process, a stale cache), so the cached
cursor is never trusted blindly. Rows carry their burst's number, so the rows of a
burst that failed half way are never applied with a later one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import aiosqlite

CURSOR_MOVED = "fieldstation: the receive cursor of a link moved"
# Bursts up to this many rows are staged row by row in autocommit (one hop); longer ones
# inside BEGIN ... COMMIT (three hops, but no TEMP transaction per row).
ALONE = 16


class StagedRow(NamedTuple):
    """One row of ``fs_rows``: a command, its message, or both (a command typed at the
    kiosk becomes a message in the same transaction)."""

    burst: int
    last: int  # 1 on the burst's last row: its trigger applies the burst
    # The command (NULL seq: a message only, as a confirmed pending command has).
    link_id: str | None = None
    seq: int | None = None
    text: str | bytes | None = None
    station: str | None = None
    received_at: float | None = None
    state: str | None = None
    chat: str | bytes | None = None  # where it was typed (sealed like its text)
    # Its message (NULL msg_id: none, as for a command kept apart after its TTL);
    # msg_n numbers the burst's messages 1..m: their versions follow on, in that order.
    msg_id: str | None = None
    msg_chat: str | None = None  # the chat's tag
    sender: str | bytes | None = None
    body: str | bytes | None = None
    sent_at: float | None = None
    msg_n: int | None = None
    # On the last row: a chat to create first (the fallback chat) unless it exists.
    new_chat: str | None = None
    new_chat_title: str | bytes | None = None
    new_chat_at: float | None = None


# Built from constants only. Every statement reads the rows of this burst (NEW.burst).
_TEMP_SCHEMA = (
    "CREATE TEMP TABLE fs_rows (" + ", ".join(StagedRow._fields) + ")",
    """CREATE TEMP TRIGGER fs_rows_apply AFTER INSERT ON fs_rows WHEN NEW.last BEGIN
        -- Exactly once: each link's first command is the one right after its cursor
        -- in the file (the caller stages each link's commands in order, no gaps).
        SELECT RAISE(ABORT, 'fieldstation: the receive cursor of a link moved') FROM (
            SELECT link_id AS link, min(seq) AS first FROM fs_rows
            WHERE burst = NEW.burst AND seq IS NOT NULL GROUP BY link_id
        ) WHERE first - 1 IS NOT (SELECT delivered FROM links WHERE id = link);
        INSERT INTO commands (link_id, seq, text, station, received_at, state, chat)
            SELECT link_id, seq, text, station, received_at, state, chat FROM fs_rows
            WHERE burst = NEW.burst AND seq IS NOT NULL ORDER BY rowid;
        UPDATE links SET delivered = (
            SELECT max(seq) FROM fs_rows WHERE burst = NEW.burst AND link_id = links.id
        ) WHERE id IN (
            SELECT link_id FROM fs_rows WHERE burst = NEW.burst AND seq IS NOT NULL
        );
        -- One version per change: the new chat's (if any), then each message's.
        UPDATE counters SET value = value + 1 WHERE name = 'change_version'
            AND NEW.new_chat IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM chats WHERE id = NEW.new_chat);
        INSERT INTO chats (id, title, updated_at, version)
            SELECT NEW.new_chat, NEW.new_chat_title, NEW.new_chat_at,
                (SELECT value FROM counters WHERE name = 'change_version')
            WHERE NEW.new_chat IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM chats WHERE id = NEW.new_chat);
        INSERT INTO messages (id, chat_id, sender, body, sent_at, version)
            SELECT msg_id, msg_chat, sender, body, sent_at,
                (SELECT value FROM counters WHERE name = 'change_version') + msg_n
            FROM fs_rows WHERE burst = NEW.burst AND msg_id IS NOT NULL ORDER BY msg_n;
        UPDATE counters SET value = value + (
            SELECT count(*) FROM fs_rows WHERE burst = NEW.burst AND msg_id IS NOT NULL
        ) WHERE name = 'change_version';
        -- Recency orders the snapshot; it is not a change the mirror needs pushed.
        UPDATE chats SET updated_at = max(updated_at, (
            SELECT max(sent_at) FROM fs_rows WHERE burst = NEW.burst AND msg_chat = chats.id
        )) WHERE id IN (
            SELECT msg_chat FROM fs_rows WHERE burst = NEW.burst AND msg_id IS NOT NULL
        );
        DELETE FROM fs_rows;
    END""",
)
assert CURSOR_MOVED in _TEMP_SCHEMA[1]

STAGE = "INSERT INTO fs_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
assert STAGE.count("?") == len(StagedRow._fields)


async def install(db: aiosqlite.Connection) -> None:
    """Create the TEMP table and trigger on this connection (after the schema exists)."""
    for statement in _TEMP_SCHEMA:
        await db.execute(statement)


def finish(rows: list[StagedRow], **last: Any) -> list[StagedRow]:
    """The burst's rows, its last one marked (and given ``last``'s fields)."""
    return [*rows[:-1], rows[-1]._replace(last=1, **last)]
