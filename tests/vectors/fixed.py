"""Fixed inputs for the wire test vectors, and how values are written into them.

Every fixed value is derived from a readable label (``label_bytes``), so the vectors
can say what each one is for, and the generator runs the real code with them through
the one hook there is (``tunnel.entropy.fixed``).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import deque
from collections.abc import Iterable
from typing import Any

from tunnel import entropy
from tunnel.errors import UsageError
from tunnel.frames import Ack, Close, Data, DataRun, Frame, Notice, Ping, Pong, decode_frame
from tunnel.noise import KeyPair

JSON = dict[str, Any]


def label_bytes(label: str, size: int) -> bytes:
    """A fixed value: BLAKE2b(label) of ``size`` bytes (at most 64)."""
    return hashlib.blake2b(label.encode("utf-8"), digest_size=size, person=b"fs-vectors").digest()


def fixed_key(label: str) -> KeyPair:
    return KeyPair.from_private(label_bytes(label, 32))


def hx(data: bytes) -> str:
    return data.hex()


def key_json(keypair: KeyPair) -> JSON:
    return {"private": hx(keypair.private), "public": hx(keypair.public)}


class Draws:
    """The values one side's random draws return, in order, per purpose.

    Every value given must be drawn and nothing more may be: ``finish`` says so, so a
    change in what the code draws changes the vectors loudly instead of silently."""

    def __init__(self, side: str) -> None:
        self.side = side
        self._queues: dict[str, deque[tuple[str, bytes]]] = {}
        self.drawn: list[JSON] = []

    def add(self, purpose: str, label: str, value: bytes) -> bytes:
        self._queues.setdefault(purpose, deque()).append((label, value))
        return value

    def __call__(self, purpose: str, size: int) -> bytes:
        queue = self._queues.get(purpose)
        if not queue:
            raise UsageError(f"{self.side}: an unplanned {purpose} draw of {size} bytes")
        label, value = queue.popleft()
        if len(value) != size:
            raise UsageError(f"{self.side}: {label} is {len(value)} bytes, {size} drawn")
        self.drawn.append({"purpose": purpose, "what": label, "hex": hx(value)})
        return value

    def finish(self) -> list[JSON]:
        left = [label for queue in self._queues.values() for label, _ in queue]
        if left:
            raise UsageError(f"{self.side}: fixed values never drawn: {left}")
        return self.drawn

    def using(self) -> Any:
        return entropy.fixed(self)


def frame_json(frame: Frame) -> JSON:
    """A frame's fields, payloads as hex and, when they are UTF-8 JSON, as text too."""
    match frame:
        case Data(seq, ack, payload):
            return {"type": 1, "name": "Data", "seq": seq, "ack": ack, **_payload(payload)}
        case Ack(ack):
            return {"type": 2, "name": "Ack", "ack": ack}
        case Ping(ack, token):
            return {"type": 3, "name": "Ping", "ack": ack, "token": token}
        case Pong(ack, token):
            return {"type": 4, "name": "Pong", "ack": ack, "token": token}
        case Close(code, reason):
            return {"type": 5, "name": "Close", "code": code, "reason": reason}
        case DataRun(first_seq, ack, payloads):
            return {
                "type": 6,
                "name": "DataRun",
                "first_seq": first_seq,
                "ack": ack,
                "count": len(payloads),
                "items": [_payload(p) for p in payloads],
            }
        case Notice(ack, payload):
            return {"type": 7, "name": "Notice", "ack": ack, **_payload(payload)}
    raise UsageError(f"not a frame: {frame!r}")


def decode_frame_json(data: bytes) -> JSON:
    return frame_json(decode_frame(data))


def _payload(payload: bytes) -> JSON:
    out: JSON = {"payload": hx(payload)}
    with contextlib.suppress(UnicodeDecodeError):
        out["payload_text"] = payload.decode("utf-8")
    return out


def nonce12(counter: int) -> bytes:
    """ChaChaPoly's 96-bit nonce for Noise nonce ``counter``: 4 zero bytes, then the
    counter as 8 bytes little-endian (Noise spec, section 12.3)."""
    return bytes(4) + counter.to_bytes(8, "little")


def concat(parts: Iterable[bytes]) -> bytes:
    return b"".join(parts)
