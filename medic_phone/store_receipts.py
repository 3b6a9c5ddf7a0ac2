"""The sessions' wipe receipts, and the key that signs each session's receipt.

Receipts are content-free (seqs, counts, times) and signed by the session's Ed25519
receipt key, which the station tells the phone inside the tunnel; both are kept as
they came, so ``medic-phone receipts`` can check them offline at any later time.
"""

from __future__ import annotations

from typing import TypedDict

from medic_phone.store_core import StoreCore
from medic_phone.store_schema import fetch_all, fetch_one


class ReceiptRow(TypedDict):
    link_id: str
    station: str
    body: bytes
    signature: bytes
    key: bytes | None  # the session's receipt key, learnt inside the tunnel
    received_at: float


class Receipts:
    """The receipts of one store (see ``PhoneStore`` for what each call promises)."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    async def set_receipt_key(self, link_id: str, key: bytes) -> None:
        async with self._core.transaction(write=True) as db:
            await db.execute(
                "UPDATE links SET receipt_key = ? WHERE id = ? AND receipt_key IS NULL",
                (bytes(key), link_id),
            )

    async def receipt_key(self, link_id: str) -> bytes | None:
        async with self._core.transaction(write=False) as db:
            row = await fetch_one(db, "SELECT receipt_key FROM links WHERE id = ?", (link_id,))
        return None if row is None or row[0] is None else bytes(row[0])

    async def add_receipt(self, link_id: str, body: bytes, signature: bytes, at: float) -> bool:
        async with self._core.transaction(write=True) as db:
            known = await fetch_one(db, "SELECT 1 FROM receipts WHERE link_id = ?", (link_id,))
            if known is not None:
                return False
            await db.execute(
                "INSERT INTO receipts (link_id, body, signature, received_at) VALUES (?, ?, ?, ?)",
                (link_id, bytes(body), bytes(signature), at),
            )
        return True

    async def receipts(self) -> list[ReceiptRow]:
        async with self._core.transaction(write=False) as db:
            rows = await fetch_all(
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
