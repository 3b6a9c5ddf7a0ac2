"""Wipe receipts: what a station worker signs at logout, and how a phone checks it.

A receipt is content-free: ids, a reason, times and counts, and the seqs of the
commands that never reached the phone. Its body is canonical JSON (sorted keys, no
spaces, ASCII), signed with the session's own Ed25519 key, whose public half the phone
learnt inside the tunnel when the link came up (``wire.app.ReceiptKey``). So the phone
can check it offline, at any later time, and a changed byte fails the check.

    {"applied": 10, "ended": 1764409330.5, "queued": 12, "reason": "inactivity",
     "sent": 12, "session": "<32 hex>", "started": 1764408730.1, "station": "clinic-a",
     "undelivered": [[41, 42]], "undelivered_count": 2, "v": 1}

``undelivered`` holds inclusive ranges, at most 16 (the count is always exact), so a
receipt always fits the 512-byte body of an authenticated refusal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from wire.app import Receipt
from wire.errors import WireError

RECEIPT_VERSION = 1
MAX_RANGES = 16


@dataclass(frozen=True, slots=True)
class ReceiptFacts:
    session: str
    station: str
    reason: str
    started: float
    ended: float
    queued: int
    sent: int
    applied: int
    undelivered: tuple[int, ...]

    def undelivered_text(self) -> str:
        """ "2 commands typed at the kiosk never arrived (seq 41, 42)" or the like."""
        if not self.undelivered:
            return "every command typed at the kiosk arrived"
        shown = ", ".join(str(s) for s in self.undelivered[:20])
        more = ", ..." if len(self.undelivered) > 20 else ""
        n = len(self.undelivered)
        plural = "s" if n != 1 else ""
        return f"{n} command{plural} typed at the kiosk never arrived (seq {shown}{more})"


def ranges(seqs: Iterable[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


def canonical_body(facts: ReceiptFacts) -> bytes:
    spans = ranges(facts.undelivered)
    body: dict[str, Any] = {
        "v": RECEIPT_VERSION,
        "session": facts.session,
        "station": facts.station,
        "reason": facts.reason,
        "started": round(facts.started, 1),
        "ended": round(facts.ended, 1),
        "queued": facts.queued,
        "sent": facts.sent,
        "applied": facts.applied,
        "undelivered": spans[:MAX_RANGES],
        "undelivered_count": len(set(facts.undelivered)),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(key: SigningKey, facts: ReceiptFacts) -> Receipt:
    body = canonical_body(facts)
    return Receipt(body, bytes(key.sign(body).signature))


def verify(public_key: bytes, receipt: Receipt) -> ReceiptFacts:
    """The facts of a receipt whose signature checks out; ``WireError`` otherwise."""
    try:
        VerifyKey(public_key).verify(receipt.body, receipt.signature)
    except (BadSignatureError, ValueError, TypeError):
        raise WireError("the receipt's signature does not verify") from None
    return read_body(receipt.body)


def read_body(body: bytes) -> ReceiptFacts:
    """The facts in a receipt body (not checked: see ``verify``)."""
    try:
        value = json.loads(body)
        if not isinstance(value, dict) or value.get("v") != RECEIPT_VERSION:
            raise WireError("not a version-1 receipt")
        undelivered: list[int] = []
        for first, last in value["undelivered"]:
            if not (isinstance(first, int) and isinstance(last, int) and 1 <= first <= last):
                raise WireError("malformed undelivered range")
            undelivered.extend(range(first, min(last, first + 100_000) + 1))
        return ReceiptFacts(
            session=str(value["session"]),
            station=str(value["station"]),
            reason=str(value["reason"]),
            started=float(value["started"]),
            ended=float(value["ended"]),
            queued=int(value["queued"]),
            sent=int(value["sent"]),
            applied=int(value["applied"]),
            undelivered=tuple(undelivered),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise WireError("malformed receipt body") from None
