"""The settings an endpoint runs with (sizes, windows, timers)."""

from __future__ import annotations

from dataclasses import dataclass

from tunnel.queue import DEFAULT_MAX_BYTES, DEFAULT_MAX_COUNT


@dataclass(frozen=True, slots=True)
class Settings:
    """Tunables. The defaults suit flaky clinic WiFi: a dead link is noticed in ~3 s."""

    max_record: int = 65536
    rekey_interval: int = 1 << 16
    window: int = 1024
    queue_max_count: int = DEFAULT_MAX_COUNT
    queue_max_bytes: int = DEFAULT_MAX_BYTES
    ping_interval: float = 1.0
    link_timeout: float = 3.0
    ack_delay: float = 0.005
    handshake_timeout: float = 5.0
    # The phone acknowledges a command only once it is durably applied; the station's
    # mirror lives in RAM and acknowledges on delivery.
    auto_ack: bool = True
