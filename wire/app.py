"""Messages inside the tunnel, between a phone and a station: JSON objects with a ``type``.

Sequenced (Data frames; delivered exactly once, in order):

* station -> phone: ``command`` (something typed at the kiosk)
* phone -> station: ``snapshot`` / ``changes`` (the mirror), ``fates`` (commands the
  phone kept apart because they arrived after their TTL, and what the medic decided)

Unsequenced (Notice frames; the latest supersedes, sent again on every new link):

* station -> phone: ``policy`` (the session's next logout), ``receipt_key`` (the key
  that signs this session's wipe receipt), ``receipt`` (the signed receipt, at logout)
* phone -> station: ``device`` (the phone's name and battery)

``decode`` raises ``WireError`` for anything else; it never raises another error.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from wire.errors import WireError

MAX_TEXT = 4096  # characters in one command
MAX_CHAT_ID = 128
MAX_NAME = 64
MAX_SEQS = 10_000  # seqs in one fates report
_REASONS = ("inactivity", "max-age", "scheduled")


@dataclass(frozen=True, slots=True)
class Command:
    """Something typed at the kiosk. ``queued_at`` is the station's clock (unix s);
    with ``ttl``, the phone keeps it apart if it arrives later than that."""

    text: str
    chat: str | None = None
    queued_at: float | None = None
    ttl: float | None = None


Chat = tuple[str, str]  # id, title
Message = tuple[str, str, str, str, float]  # id, chat, sender, body, sent_at


@dataclass(frozen=True, slots=True)
class MirrorUpdate:
    """The phone's state: a snapshot replaces the mirror, changes upsert into it."""

    kind: Literal["snapshot", "changes"]
    version: int
    chats: tuple[Chat, ...]
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Fates:
    """The phone's word on commands it holds apart: expired on arrival, then confirmed
    (applied after all) or discarded by the medic."""

    expired: tuple[int, ...] = ()
    confirmed: tuple[int, ...] = ()
    discarded: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    """When the station's policy logs the session out, and the station's clock now."""

    logout_at: float
    reason: str
    now: float


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    battery: int | None = None  # percent


@dataclass(frozen=True, slots=True)
class ReceiptKey:
    """The Ed25519 key (32 bytes) that will sign this session's wipe receipt."""

    key: bytes


@dataclass(frozen=True, slots=True)
class Receipt:
    """A signed, content-free wipe receipt: ``body`` is canonical JSON (see
    ``station.receipts``), ``signature`` Ed25519 over it."""

    body: bytes
    signature: bytes


AppMessage = Command | MirrorUpdate | Fates | Policy | Device | ReceiptKey | Receipt


def encode(message: AppMessage) -> bytes:
    return json.dumps(_to_json(message), separators=(",", ":"), ensure_ascii=False).encode()


def _to_json(message: AppMessage) -> dict[str, Any]:
    match message:
        case Command(text, chat, queued_at, ttl):
            _check_command(text, chat, ttl)
            out: dict[str, Any] = {"type": "command", "text": text}
            if chat is not None:
                out["chat"] = chat
            if queued_at is not None:
                out["queued_at"] = queued_at
            if ttl is not None:
                out["ttl"] = ttl
            return out
        case MirrorUpdate(kind, version, chats, messages):
            return {
                "type": kind,
                "version": version,
                "chats": [{"id": c[0], "title": c[1]} for c in chats],
                "messages": [
                    {"id": m[0], "chat": m[1], "sender": m[2], "body": m[3], "sent_at": m[4]}
                    for m in messages
                ],
            }
        case Fates(expired, confirmed, discarded):
            return {
                "type": "fates",
                "expired": list(expired),
                "confirmed": list(confirmed),
                "discarded": list(discarded),
            }
        case Policy(logout_at, reason, now):
            return {"type": "policy", "logout_at": logout_at, "reason": reason, "now": now}
        case Device(name, battery):
            return {"type": "device", "name": name[:MAX_NAME], "battery": battery}
        case ReceiptKey(key):
            return {"type": "receipt_key", "key": _b64(key)}
        case Receipt(body, signature):
            return {"type": "receipt", "body": _b64(body), "sig": _b64(signature)}


def encode_update_rows(
    kind: Literal["snapshot", "changes"],
    version: int,
    chats: list[dict[str, Any]],
    messages: list[dict[str, Any]],
) -> bytes:
    """``encode(MirrorUpdate(...))`` for rows already shaped as the JSON wants them (the
    phone's hot path: its store yields such dicts)."""
    return encode_update_parts(kind, version, chats, [encode_row(m) for m in messages])


# json.dumps builds a new encoder whenever an argument is not the default: once here.
_ROW = json.JSONEncoder(separators=(",", ":"))


def encode_row(row: dict[str, Any]) -> str:
    """One chat or message row as compact ASCII JSON: its length is its size in bytes."""
    return _ROW.encode(row)


def encode_update_parts(
    kind: Literal["snapshot", "changes"],
    version: int,
    chats: list[dict[str, Any]],
    messages: list[str],
) -> bytes:
    """``encode_update_rows`` with each message already encoded by ``encode_row``, so a
    phone that sizes its parts encodes each message once."""
    head = json.dumps(
        {"type": kind, "version": version, "chats": chats},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return (head[:-1] + ',"messages":[' + ",".join(messages) + "]}").encode()


def _check_command(text: str, chat: str | None, ttl: float | None) -> None:
    if not text:
        raise ValueError("an empty command")
    if len(text) > MAX_TEXT:
        raise ValueError(f"{len(text):,} characters; the limit is {MAX_TEXT:,}")
    if chat is not None and not 0 < len(chat) <= MAX_CHAT_ID:
        raise ValueError(f"a chat id is 1 to {MAX_CHAT_ID} characters")
    if ttl is not None and not (math.isfinite(ttl) and ttl > 0):
        raise ValueError("a TTL is a positive number of seconds")


# -- decoding --------------------------------------------------------------------------


def decode(payload: bytes) -> AppMessage:
    """The message in ``payload``; ``WireError`` (only) for anything malformed."""
    try:
        # Decoded here: json.loads would first guess the encoding of bytes (it is UTF-8).
        value = json.loads(str(payload, "utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise WireError("not JSON") from None
    if not isinstance(value, dict):
        raise WireError("not a JSON object")
    kind = value.get("type")
    try:
        match kind:
            case "command":
                return _command(value)
            case "snapshot" | "changes":
                return _update(kind, value)
            case "fates":
                return Fates(
                    _seqs(value, "expired"), _seqs(value, "confirmed"), _seqs(value, "discarded")
                )
            case "policy":
                reason = _str(value, "reason", 32)
                if reason not in _REASONS:
                    raise WireError(f"unknown logout reason {reason[:16]!r}")
                return Policy(_num(value, "logout_at"), reason, _num(value, "now"))
            case "device":
                battery = value.get("battery")
                if battery is not None and (
                    not isinstance(battery, int)
                    or isinstance(battery, bool)
                    or not 0 <= battery <= 100
                ):
                    raise WireError("battery is a percentage")
                return Device(_str(value, "name", MAX_NAME), battery)
            case "receipt_key":
                key = _unb64(value, "key")
                if len(key) != 32:
                    raise WireError("receipt key of the wrong size")
                return ReceiptKey(key)
            case "receipt":
                signature = _unb64(value, "sig")
                if len(signature) != 64:
                    raise WireError("receipt signature of the wrong size")
                return Receipt(_unb64(value, "body"), signature)
    except (KeyError, TypeError):
        raise WireError(f"malformed {str(kind)[:16]} message") from None
    raise WireError(f"unknown message type {str(kind)[:16]!r}")


def _command(value: dict[str, Any]) -> Command:
    text = _str(value, "text", MAX_TEXT)
    if not text:
        raise WireError("empty command")
    chat = value.get("chat")
    if chat is not None and (not isinstance(chat, str) or not 0 < len(chat) <= MAX_CHAT_ID):
        raise WireError("malformed chat id")
    queued_at = _num(value, "queued_at") if value.get("queued_at") is not None else None
    ttl = _num(value, "ttl") if value.get("ttl") is not None else None
    if ttl is not None and ttl <= 0:
        raise WireError("a TTL is positive")
    return Command(text, chat, queued_at, ttl)


def _update(kind: Literal["snapshot", "changes"], value: dict[str, Any]) -> MirrorUpdate:
    chats = value.get("chats", [])
    messages = value.get("messages", [])
    if not isinstance(chats, list) or not isinstance(messages, list):
        raise WireError("malformed mirror update")
    version = value["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise WireError("malformed mirror version")
    return MirrorUpdate(
        kind,
        version,
        tuple((_str(c, "id", 256), _str(c, "title", 4096)) for c in chats),
        tuple(
            (
                _str(m, "id", 256),
                _str(m, "chat", 256),
                _str(m, "sender", 256),
                _str(m, "body", 65536),
                _num(m, "sent_at"),
            )
            for m in messages
        ),
    )


def _str(value: Any, key: str, limit: int) -> str:
    if not isinstance(value, dict):
        raise WireError("expected a JSON object")
    item = value[key]
    if not isinstance(item, str) or len(item) > limit:
        raise WireError(f"{key} is not a string of at most {limit} characters")
    return item


def _num(value: dict[str, Any], key: str) -> float:
    item = value[key]
    if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
        raise WireError(f"{key} is not a number")
    return float(item)


def _seqs(value: dict[str, Any], key: str) -> tuple[int, ...]:
    items = value.get(key, [])
    if not isinstance(items, list) or len(items) > MAX_SEQS:
        raise WireError(f"{key} is not a list of at most {MAX_SEQS} seqs")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in items):
        raise WireError(f"{key} holds something other than seqs")
    return tuple(items)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(value: dict[str, Any], key: str) -> bytes:
    text = value[key]
    if not isinstance(text, str) or len(text) > 8192:
        raise WireError(f"{key} is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise WireError(f"{key} is not base64url") from None
