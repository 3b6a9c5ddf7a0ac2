"""Sealing the phone store's contents under the store key, so a lost phone gives up nothing.

With a passphrase, the keystore holds a random 32-byte store key sealed under the
passphrase-derived key (argon2id); only the running process unlocks it and hands it
to the store. Then every field that can carry a patient's words -- command texts,
message bodies and senders, chat ids and titles -- and each link's tunnel state (the
session id and the resumption secret) is sealed with ``crypto_secretbox``
(XSalsa20-Poly1305, a fresh random nonce each time) under a subkey of the store key.

Chat ids are looked up (a message names its chat), so in their place the store keeps a
keyed BLAKE2b tag of each id, and the id itself sealed beside the chat's title.

Without a store key the same calls pass everything through unchanged: one code path
for both kinds of store. Sealing is about secrecy: someone who can write to the file
can still delete or reorder rows (each sealed value is authentic on its own).
"""

from __future__ import annotations

import json

from nacl.bindings import crypto_secretbox, crypto_secretbox_open
from nacl.encoding import RawEncoder
from nacl.exceptions import CryptoError
from nacl.hash import blake2b
from nacl.utils import random as random_bytes

from medic_phone.errors import PhoneUsageError, StoreCorrupt

STORE_KEY_LEN = 32
_NONCE = 24
_TAG_LEN = 16
# A known value sealed once per store: a wrong key is told at open, not by a later
# failure halfway through reading a log.
_CHECK = b"fieldstation phone store v1"


def _subkey(store_key: bytes, purpose: bytes) -> bytes:
    # BLAKE2b keyed by the store key, one personalisation per purpose: libsodium's
    # crypto_kdf construction, so the box key and the tag key are independent.
    return blake2b(b"", digest_size=32, key=store_key, person=purpose, encoder=RawEncoder)


def new_store_key() -> bytes:
    return random_bytes(STORE_KEY_LEN)


class StoreSeal:
    """Seals and opens the store's fields; a pass-through when ``store_key`` is None."""

    def __init__(self, store_key: bytes | None, *, where: str = "the store") -> None:
        if store_key is not None and len(store_key) != STORE_KEY_LEN:
            raise PhoneUsageError(f"a store key is {STORE_KEY_LEN} bytes, not {len(store_key)}")
        self.sealed = store_key is not None
        self._where = where
        self._box = b"" if store_key is None else _subkey(store_key, b"fs-store-box")
        self._tag_key = b"" if store_key is None else _subkey(store_key, b"fs-store-tag")
        self._tags: dict[str, str] = {}  # chat id -> tag
        self._ids: dict[str, str] = {}  # tag -> chat id

    # -- values ------------------------------------------------------------------------

    def blob(self, value: bytes) -> bytes:
        if not self.sealed:
            return value
        nonce = random_bytes(_NONCE)
        return nonce + crypto_secretbox(value, nonce, self._box)

    def open_blob(self, stored: object) -> bytes:
        if not isinstance(stored, bytes):
            raise self._damaged("a value that must be bytes is not")
        if not self.sealed:
            return stored
        if len(stored) < _NONCE + 16:
            raise self._damaged("a sealed value is too short")
        try:
            return crypto_secretbox_open(stored[_NONCE:], stored[:_NONCE], self._box)
        except CryptoError:
            raise self._damaged("a sealed value does not open under this store's key") from None

    def text(self, value: str) -> str | bytes:
        return value if not self.sealed else self.blob(value.encode("utf-8"))

    def open_text(self, stored: object) -> str:
        if not self.sealed:
            if not isinstance(stored, str):
                raise self._damaged("a text value is not text")
            return stored
        return self.open_blob(stored).decode("utf-8")

    # -- chats: looked up by a tag, their id sealed with their title --------------------

    def tag(self, chat_id: str) -> str:
        """What the store keeps in place of a chat id (the id itself without a key)."""
        if not self.sealed:
            return chat_id
        tag = self._tags.get(chat_id)
        if tag is None:
            digest = blake2b(
                chat_id.encode("utf-8"), digest_size=_TAG_LEN, key=self._tag_key, encoder=RawEncoder
            )
            tag = self._tags[chat_id] = digest.hex()
            self._ids[tag] = chat_id
        return tag

    def chat_id(self, tag: str) -> str | None:
        """The chat id behind a tag, if this process has seen it (always, in clear)."""
        return tag if not self.sealed else self._ids.get(tag)

    def chat(self, chat_id: str, title: str) -> str | bytes:
        """What the store keeps as a chat's title: the title, or the id and title sealed."""
        if not self.sealed:
            return title
        return self.blob(json.dumps([chat_id, title], separators=(",", ":")).encode("utf-8"))

    def open_chat(self, tag: str, stored: object) -> tuple[str, str]:
        """(chat id, title) from a chat row's id column and title column."""
        if not self.sealed:
            return tag, self.open_text(stored)
        try:
            chat_id, title = json.loads(self.open_blob(stored))
        except (ValueError, TypeError):
            raise self._damaged("a sealed chat is not a chat") from None
        if not isinstance(chat_id, str) or not isinstance(title, str):
            raise self._damaged("a sealed chat is not a chat")
        self._tags[chat_id] = tag
        self._ids[tag] = chat_id
        return chat_id, title

    # -- the store's own check -----------------------------------------------------------

    def check_value(self) -> bytes | None:
        """What the store records to tell later whether a key is its key (None: not sealed)."""
        return self.blob(_CHECK) if self.sealed else None

    def opens(self, check: bytes) -> bool:
        """Whether this key opens a store whose recorded check is ``check``."""
        if not self.sealed or len(check) < _NONCE + 16:
            return False
        try:
            return crypto_secretbox_open(check[_NONCE:], check[:_NONCE], self._box) == _CHECK
        except CryptoError:
            return False

    def _damaged(self, what: str) -> StoreCorrupt:
        return StoreCorrupt(f"{self._where} is not a healthy phone store ({what})")
