"""The phone's links with stations, and the opaque tunnel state each needs to resume.

A link is made from a URI or a code (its ``key``), and is ``linked`` until it ends. Its
tunnel state (session id, resumption secret, counters) is sealed like everything else
that could resume it, and goes with the link's end: an ended link can never resume.
Its receive cursor (``delivered``) moves only with the commands it covers
(``medic_phone.store_commands``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, TypedDict

import aiosqlite

from medic_phone.errors import StoreError
from medic_phone.store_core import StoreCore
from medic_phone.store_schema import fetch_all, fetch_one

_COLUMNS = (
    "SELECT id, key, station, station_info, paired_at, state, end_reason, delivered,"
    " last_contact FROM links"
)


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


class Links:
    """The links of one store (see ``PhoneStore`` for what each call promises)."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    async def create_link(
        self,
        link_id: str,
        *,
        station: str,
        key: str,
        info: Mapping[str, Any] | None = None,
        paired_at: float | None = None,
    ) -> None:
        info_json = json.dumps(dict(info or {}), sort_keys=True)
        when = time.time() if paired_at is None else paired_at
        async with self._core.transaction(write=True) as db:
            await db.execute(
                "INSERT INTO links (id, key, station, station_info, paired_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (link_id, key, station, info_json, when),
            )

    async def find_link(self, key: str) -> tuple[str, bytes, int] | None:
        async with self._core.transaction(write=False) as db:
            row = await fetch_one(
                db,
                "SELECT id, tunnel_state, delivered FROM links"
                " WHERE key = ? AND state = 'linked' AND tunnel_state IS NOT NULL"
                " ORDER BY paired_at DESC, rowid DESC LIMIT 1",
                (key,),
            )
        if row is None:
            return None
        return str(row[0]), self._core.seal.open_blob(row[1]), int(row[2])

    async def save_link_state(self, link_id: str, blob: bytes) -> None:
        # One statement, one hop: this commit is on the path of every resume.
        saved = await self._core.statement(
            "UPDATE links SET tunnel_state = ? WHERE id = ? AND state = 'linked' RETURNING 1",
            (self._core.seal.blob(bytes(blob)), link_id),
        )
        if not saved:
            async with self._core.transaction(write=False) as db:
                await self._link(db, link_id)  # StoreError if unknown; ended: ignored

    async def load_link_state(self, link_id: str) -> bytes | None:
        async with self._core.transaction(write=False) as db:
            blob = (await self._link(db, link_id))[2]
        return None if blob is None else self._core.seal.open_blob(blob)

    async def end_link(self, link_id: str, reason: str) -> None:
        async with self._core.transaction(write=True) as db:
            if (await self._link(db, link_id))[0] == "ended":
                return
            await db.execute(
                "UPDATE links SET state = 'ended', end_reason = ?, tunnel_state = NULL"
                " WHERE id = ?",
                (reason, link_id),
            )

    async def link(self, link_id: str) -> LinkRow | None:
        async with self._core.transaction(write=False) as db:
            rows = await fetch_all(db, f"{_COLUMNS} WHERE id = ?", (link_id,))
        return _link_rows(rows)[0] if rows else None

    async def links(self) -> list[LinkRow]:
        async with self._core.transaction(write=False) as db:
            rows = await fetch_all(db, f"{_COLUMNS} ORDER BY paired_at, rowid")
        return _link_rows(rows)

    async def delivered(self, link_id: str) -> int:
        async with self._core.transaction(write=False) as db:
            return int((await self._link(db, link_id))[1])

    async def touch_link(self, link_id: str, at: float) -> None:
        await self._core.statement("UPDATE links SET last_contact = ? WHERE id = ?", (at, link_id))

    async def _link(self, db: aiosqlite.Connection, link_id: str) -> tuple[Any, ...]:
        """(state, delivered, tunnel_state) of a link; ``StoreError`` if it is unknown."""
        row = await fetch_one(
            db, "SELECT state, delivered, tunnel_state FROM links WHERE id = ?", (link_id,)
        )
        if row is None:
            raise StoreError(f"no link {link_id[:16]} in {self._core.path}")
        return row


def _link_rows(rows: list[tuple[Any, ...]]) -> list[LinkRow]:
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
