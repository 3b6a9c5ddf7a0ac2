"""The phone store sealed under the store key: the file gives up no text and no session
secret; only the right key opens it; the store keeps its exactly-once behaviour."""

from __future__ import annotations

import base64
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from medic_phone.errors import (
    KeystoreError,
    PhoneUsageError,
    StoreCorrupt,
    StoreError,
    StoreKeyMismatch,
    StoreLocked,
)
from medic_phone.keystore import create_identity, load_seed, save_seed
from medic_phone.sealing import StoreSeal, new_store_key
from medic_phone.store import DB_FILE, IncomingCommand, PhoneStore, TypedMessages

LINK = "a1" * 16
KEY = bytes(range(32))
TYPED = TypedMessages("medic (kiosk)", "kiosk", "Typed at the kiosk")
STATE = b"SESSION-ID-AND-RESUMPTION-SECRET-" + bytes(range(40))


def encodings(text: str | bytes) -> dict[str, list[bytes]]:
    """Every way the text could sit in a file: UTF-8, UTF-16-LE, hex (both cases) and
    base64 at each of the three alignments (the characters that depend only on it)."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    b64 = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        start = (shift * 4 + 2) // 3 + 1
        b64.append(encoded[start : start + max(4, len(raw) * 4 // 3 - 4)])
    out = {"utf-8": [raw], "hex": [raw.hex().encode(), raw.hex().upper().encode()], "base64": b64}
    if isinstance(text, str):
        out["utf-16-le"] = [text.encode("utf-16-le")]
    return out


def hits(data: bytes, text: str | bytes) -> dict[str, int]:
    return {
        name: sum(data.count(form) for form in forms)
        for name, forms in encodings(text).items()
        if any(data.count(form) for form in forms)
    }


def files(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.iterdir()) if p.is_file())


@pytest_asyncio.fixture
async def sealed(tmp_path: Path) -> AsyncIterator[PhoneStore]:
    async with PhoneStore.create(tmp_path / "phone", store_key=KEY) as store:
        yield store


async def _fill(store: PhoneStore) -> None:
    await store.create_link(LINK, station="ward-3", key="code:1234-5678")
    await store.save_link_state(LINK, STATE)
    await store.ensure_chat("bed-4-jane-roe", "Bed 4 Jane Roe")
    await store.add_message("bed-4-jane-roe", "Dr PHONE-SENDER", "PHONE-CANARY one", 1.0)
    await store.add_messages("bed-4-jane-roe", "Dr PHONE-SENDER", [("PHONE-CANARY two", 2.0)])
    await store.apply_commands(
        [
            IncomingCommand(LINK, 1, "KIOSK-CANARY one", "ward-3", 3.0, "bed-4-jane-roe"),
            IncomingCommand(LINK, 2, "KIOSK-CANARY two", "ward-3", 4.0),
        ],
        as_messages=TYPED,
    )


CANARIES = (
    "KIOSK-CANARY one",
    "KIOSK-CANARY two",
    "PHONE-CANARY one",
    "PHONE-CANARY two",
    "PHONE-SENDER",
    "jane-roe",
    "Jane Roe",
    "Typed at the kiosk",
    "medic (kiosk)",
)


def test_the_canary_encodings_find_what_they_should() -> None:
    text = "KIOSK-CANARY one"
    for prefix in (b"", b"x", b"xy", b"xyz"):
        data = (
            prefix + base64.b64encode(prefix + text.encode()) + b"|" + text.encode().hex().encode()
        )
        assert {"base64", "hex"} <= set(hits(data, text)), prefix
    assert hits("KIOSK-CANARY one".encode("utf-16-le"), text) == {"utf-16-le": 1}


@pytest.mark.asyncio
async def test_a_sealed_store_file_holds_no_text_and_no_tunnel_state(
    sealed: PhoneStore, tmp_path: Path
) -> None:
    await _fill(sealed)
    home = tmp_path / "phone"
    # While open: the database and its WAL, as a thief copying a running phone gets them.
    copy = tmp_path / "copy"
    shutil.copytree(home, copy)
    assert (copy / f"{DB_FILE}-wal").exists()
    data = files(copy)
    for canary in CANARIES:
        assert hits(data, canary) == {}, canary
    assert hits(data, STATE) == {}
    assert hits(data, STATE[:32]) == {}
    # The same store reads everything back.
    assert [c["text"] for c in await sealed.commands()] == ["KIOSK-CANARY one", "KIOSK-CANARY two"]
    assert await sealed.load_link_state(LINK) == STATE
    assert (await sealed.find_link("code:1234-5678")) == (LINK, STATE, 2)
    _, chats, messages = await sealed.snapshot()
    assert {c["id"]: c["title"] for c in chats} == {
        "bed-4-jane-roe": "Bed 4 Jane Roe",
        "kiosk": "Typed at the kiosk",
    }
    assert [(m["chat"], m["sender"], m["body"]) for m in messages] == [
        ("bed-4-jane-roe", "Dr PHONE-SENDER", "PHONE-CANARY one"),
        ("bed-4-jane-roe", "Dr PHONE-SENDER", "PHONE-CANARY two"),
        ("bed-4-jane-roe", "medic (kiosk)", "KIOSK-CANARY one"),
        ("kiosk", "medic (kiosk)", "KIOSK-CANARY two"),
    ]


@pytest.mark.asyncio
async def test_only_the_key_opens_a_sealed_store(tmp_path: Path) -> None:
    home = tmp_path / "phone"
    async with PhoneStore.create(home, store_key=KEY) as store:
        await _fill(store)
    with pytest.raises(StoreLocked, match="sealed"):
        await PhoneStore.connect(home)
    with pytest.raises(StoreKeyMismatch, match="another key"):
        await PhoneStore.connect(home, store_key=new_store_key())
    with pytest.raises(StoreKeyMismatch):
        await PhoneStore.connect(home, create=True, store_key=new_store_key())
    with pytest.raises(StoreLocked):
        await PhoneStore.connect(home, create=True)
    # A new process (nothing cached) reads every change back, chats by their real ids.
    async with PhoneStore.open(home, store_key=KEY) as store:
        assert store.sealed
        version, chats, messages = await store.changes_since(3)
        assert [m["chat"] for m in messages] == ["bed-4-jane-roe", "kiosk"]
        assert [c["id"] for c in chats] == ["kiosk"]
        assert version == await store.version()


@pytest.mark.asyncio
async def test_sealed_commands_stay_exactly_once(sealed: PhoneStore) -> None:
    await sealed.create_link(LINK, station="ward-3", key="k")
    batch = [IncomingCommand(LINK, s, f"cmd {s}", "ward-3", float(s)) for s in (1, 2, 3)]
    assert await sealed.apply_commands(batch, as_messages=TYPED) == [True] * 3
    again = [*batch[1:], IncomingCommand(LINK, 4, "cmd 4", "ward-3", 4.0)]
    assert await sealed.apply_commands(again, as_messages=TYPED) == [False, False, True]
    with pytest.raises(StoreError, match="skip"):
        await sealed.apply_commands([IncomingCommand(LINK, 9, "gap", "ward-3", 9.0)])
    assert [c["text"] for c in await sealed.commands(LINK)] == [f"cmd {s}" for s in range(1, 5)]
    assert await sealed.delivered(LINK) == 4
    assert len((await sealed.snapshot())[2]) == 4


@pytest.mark.asyncio
async def test_a_clear_store_stays_clear_and_says_so(tmp_path: Path) -> None:
    home = tmp_path / "phone"
    async with PhoneStore.create(home) as store:
        await store.ensure_chat("c", "C")
        assert not store.sealed
    async with PhoneStore.open(home, store_key=KEY) as store:
        assert not store.sealed  # the caller warns: its data was written in clear
        assert (await store.snapshot())[1] == [{"id": "c", "title": "C"}]
    with pytest.raises(StoreError, match="kept in clear"):
        await PhoneStore.connect(home, create=True, store_key=KEY)
    # An empty clear store may still be sealed (init --force with a passphrase).
    empty = tmp_path / "empty"
    async with PhoneStore.create(empty):
        pass
    async with PhoneStore.create(empty, store_key=KEY) as store:
        assert store.sealed
    with pytest.raises(StoreLocked):
        await PhoneStore.connect(empty)


@pytest.mark.asyncio
async def test_a_tampered_or_clear_value_in_a_sealed_store_is_damage(tmp_path: Path) -> None:
    home = tmp_path / "phone"
    async with PhoneStore.create(home, store_key=KEY) as store:
        await _fill(store)
    with sqlite3.connect(home / DB_FILE) as db:
        db.execute("UPDATE commands SET text = 'planted' WHERE seq = 1")
    async with PhoneStore.open(home, store_key=KEY) as store:
        with pytest.raises(StoreCorrupt, match="must be bytes"):
            await store.commands()
    with sqlite3.connect(home / DB_FILE) as db:
        [(blob,)] = db.execute("SELECT text FROM commands WHERE seq = 2").fetchall()
        flipped = blob[:30] + bytes([blob[30] ^ 1]) + blob[31:]
        db.execute("UPDATE commands SET text = ? WHERE seq > 0", (flipped,))
    async with PhoneStore.open(home, store_key=KEY) as store:
        with pytest.raises(StoreCorrupt, match="does not open"):
            await store.commands()


def test_seal_round_trips_and_refuses_short_keys() -> None:
    seal = StoreSeal(KEY)
    assert seal.open_text(seal.text("é ü")) == "é ü"
    assert seal.text("x") != seal.text("x")  # a fresh nonce each time
    assert seal.tag("ward-3") == StoreSeal(KEY).tag("ward-3") != StoreSeal(b"k" * 32).tag("ward-3")
    assert StoreSeal(None).tag("ward-3") == "ward-3"
    with pytest.raises(PhoneUsageError):
        StoreSeal(b"short")
    with pytest.raises(StoreCorrupt):
        StoreSeal(KEY).open_blob(b"\0" * 39)


def test_the_keystore_keeps_the_store_key_sealed(tmp_path: Path) -> None:
    key = new_store_key()
    create_identity(tmp_path, name="ward-3", passphrase="correct horse", store_key=key)
    raw = (tmp_path / "identity.key").read_bytes()
    assert b"store_key" in raw and hits(raw, key) == {}
    assert load_seed(tmp_path, passphrase="correct horse").store_key == key
    with pytest.raises(PhoneUsageError, match="only sealed"):
        save_seed(tmp_path / "b", b"s" * 32, device_name="x", store_key=key)


def test_a_damaged_store_key_is_named(tmp_path: Path) -> None:
    import json

    create_identity(tmp_path, name="ward-3", passphrase="pw", store_key=new_store_key())
    path = tmp_path / "identity.key"
    record = json.loads(path.read_text())
    record["store_key"] = base64.b64encode(b"\0" * 72).decode()
    path.write_text(json.dumps(record))
    with pytest.raises(KeystoreError, match="store key does not open"):
        load_seed(tmp_path, passphrase="pw")
