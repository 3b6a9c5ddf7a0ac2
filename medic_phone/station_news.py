"""What a linked station tells the phone besides commands, and what the phone tells it.

Unsequenced notices (``wire.app``): the station's logout deadline and its clock (the
clock lets the phone judge a command's TTL against the station's own time), the key
that signs the session's wipe receipt, and the receipt itself at logout. The phone
sends its name and battery. Nothing here holds message content.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from wire import WireError
from wire.app import Command, Device, Policy, Receipt, ReceiptKey
from wire.receipts import ReceiptFacts, verify

_BATTERIES = Path("/sys/class/power_supply")


@dataclass
class StationNews:
    policy: Policy | None = None
    clock_offset: float = 0.0  # station clock minus ours, from the latest policy notice
    receipt_key: bytes | None = None
    heard_at: float = field(default_factory=time.time)

    def on_policy(self, policy: Policy) -> None:
        self.policy = policy
        self.clock_offset = policy.now - time.time()

    def expired(self, command: Command, now: float) -> float | None:
        """How late a command arrived (seconds past its TTL), or None if on time."""
        if command.ttl is None or command.queued_at is None:
            return None
        age = now + self.clock_offset - command.queued_at
        return age - command.ttl if age > command.ttl else None

    def check_receipt(self, receipt: Receipt) -> ReceiptFacts | None:
        """The receipt's facts if it verifies under the session's key, else None."""
        if self.receipt_key is None:
            return None
        try:
            return verify(self.receipt_key, receipt)
        except WireError:
            return None

    def learn_key(self, notice: ReceiptKey) -> bool:
        """Keep the session's receipt key; True the first time."""
        if self.receipt_key is not None:
            return False
        self.receipt_key = notice.key
        return True


def device_notice(name: str) -> Device:
    return Device(name, battery_percent())


def battery_percent() -> int | None:
    """The battery's charge when this device has one (Linux sysfs), else None."""
    try:
        supplies = sorted(_BATTERIES.iterdir())
    except OSError:
        return None
    for supply in supplies:
        try:
            if (supply / "type").read_text().strip() != "Battery":
                continue
            value = int((supply / "capacity").read_text().strip())
        except (OSError, ValueError):
            continue
        if 0 <= value <= 100:
            return value
    return None
