"""The station's notices on a running link, and the session's wipe receipt.

Notices are unsequenced and each supersedes the last: the logout policy (and the
station's clock), the key that signs the session's receipt (kept in the store the first
time), and the receipt itself at logout. A receipt also comes inside the station's
authenticated SESSION_ENDED when the phone was away at logout. A receipt is kept only
if it verifies under the session's key and names this session.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from wire import WireError
from wire.app import Policy, Receipt, ReceiptKey, decode

if TYPE_CHECKING:
    from medic_phone.node import PhoneNode


class NoticeKeeper:
    def __init__(self, node: PhoneNode) -> None:
        self._node = node

    async def notice(self, payload: bytes) -> None:
        node = self._node
        try:
            notice = decode(payload)
        except WireError:
            return  # unsequenced and superseded by the next one: nothing to lose
        if isinstance(notice, Policy):
            node.news.on_policy(notice)
        elif isinstance(notice, ReceiptKey):
            if node.news.learn_key(notice) and node.link_id is not None:
                await node.store.set_receipt_key(node.link_id, notice.key)
        elif isinstance(notice, Receipt):
            await self.keep_receipt(notice)

    async def ended_receipt(self, raw: bytes) -> None:
        """The receipt the station's authenticated SESSION_ENDED carried (we were away)."""
        node = self._node
        assert node.link_id is not None
        if node.news.receipt_key is None:
            key = await node.store.receipt_key(node.link_id)
            if key is not None:
                node.news.learn_key(ReceiptKey(key))
        await self.keep_receipt(Receipt(body=raw[64:], signature=raw[:64]))

    async def keep_receipt(self, receipt: Receipt) -> None:
        """A wipe receipt: checked, kept with the link, and told to the medic."""
        node = self._node
        facts = node.news.check_receipt(receipt)
        if facts is None or node.link_id is None or facts.session != node.link_id:
            node.emit({"event": "receipt", "verified": False})
            return
        await node.store.add_receipt(node.link_id, receipt.body, receipt.signature, time.time())
        node.emit(
            {
                "event": "receipt",
                "verified": True,
                "session": facts.session,
                "station": facts.station,
                "reason": facts.reason,
                "ended": facts.ended,
                "undelivered_seqs": list(facts.undelivered),
                "summary": facts.undelivered_text(),
            }
        )
