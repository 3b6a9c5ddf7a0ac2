"""The tunnel's outbound queue on the phone: sealed entries by link and seq.

The entries arrive sealed by the tunnel (the store never opens them), and go with
their link's end (``Links.end_link``): a link that can never resume can never send.
"""

from __future__ import annotations

from medic_phone.store_core import StoreCore
from medic_phone.store_schema import fetch_all, fetch_one


class Outbox:
    """The outbox of one store (see ``PhoneStore`` for what each call promises)."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    async def append(self, link_id: str, seq: int, sealed: bytes) -> None:
        async with self._core.transaction(write=True) as db:
            await db.execute(
                "INSERT INTO outbox (link_id, seq, sealed) VALUES (?, ?, ?)",
                (link_id, seq, bytes(sealed)),
            )

    async def remove_through(self, link_id: str, seq: int) -> int:
        async with self._core.transaction(write=True) as db:
            row = await fetch_one(
                db,
                "SELECT count(*) FROM outbox WHERE link_id = ? AND seq <= ?",
                (link_id, seq),
            )
            await db.execute("DELETE FROM outbox WHERE link_id = ? AND seq <= ?", (link_id, seq))
        return 0 if row is None else int(row[0])

    async def items(self, link_id: str) -> list[tuple[int, bytes]]:
        async with self._core.transaction(write=False) as db:
            rows = await fetch_all(
                db, "SELECT seq, sealed FROM outbox WHERE link_id = ? ORDER BY seq", (link_id,)
            )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def size(self, link_id: str) -> tuple[int, int]:
        async with self._core.transaction(write=False) as db:
            row = await fetch_one(
                db,
                "SELECT count(*), coalesce(sum(length(sealed)), 0) FROM outbox WHERE link_id = ?",
                (link_id,),
            )
        return (0, 0) if row is None else (int(row[0]), int(row[1]))
