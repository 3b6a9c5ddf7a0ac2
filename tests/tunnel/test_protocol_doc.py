"""docs/PROTOCOL.md's tables and constants are the code's: they cannot drift apart.

Each table is found by its section heading and its header row, parsed, and compared
both ways with the enum or constant it documents (a row too many or too few fails).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path

import pytest

from station.mdns import SERVICE_TYPE, txt_record
from tunnel import identity, offer, pake, payloads, refusal
from tunnel.aio.websocket import CLOSE_PROTOCOL, ws_options
from tunnel.flights import (
    MAX_HANDSHAKE_MESSAGE,
    PAIR_URI_PROTOCOL,
    PROLOGUE,
    PSK_PROTOCOL,
    WIRE_VERSION,
    MessageType,
)
from tunnel.frames import MAX_CLOSE_REASON, CloseCode, FrameType
from tunnel.open_offers import OFFER_GRACE
from tunnel.records import DEFAULT_MAX_RECORD, DEFAULT_REKEY_INTERVAL, OVERHEAD
from tunnel.refusal import MAX_BODY, MAX_MACS, MAX_REASON, BodyItem, RefuseCode
from tunnel.settings import Settings
from tunnel.states import SESSION_TRANSITIONS, TRANSPORT_TRANSITIONS
from tunnel.station_endpoint import CODE_HELLOS_PER_S, StationEndpoint

DASH = "\u2013"  # the document writes ranges with an en dash
DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
TEXT = DOC.read_text(encoding="utf-8")

Table = list[dict[str, str]]


def _tables(heading: str) -> list[Table]:
    """Every table in the section under ``heading`` (up to the next heading of its level)."""
    level = len(heading) - len(heading.lstrip("#"))
    start = TEXT.index(heading + "\n")
    rest = TEXT[start + len(heading) + 1 :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    section = rest[: end.start()] if end else rest
    tables: list[Table] = []
    lines = section.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and set(lines[i + 1]) <= set("|- "):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows: Table = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                rows.append(dict(zip(header, cells, strict=False)))
                i += 1
            tables.append(rows)
        i += 1
    return tables


def _table(heading: str, first_column: str) -> Table:
    for table in _tables(heading):
        if table and first_column in table[0]:
            return table
    raise AssertionError(f"no table with a {first_column!r} column under {heading!r}")


def _code(cell: str) -> str:
    return cell.strip("`")


def test_flight_types() -> None:
    rows = _table("## Handshake flights", "type")
    documented = {int(_code(r["type"]), 16): r["name"] for r in rows}
    assert documented == {m.value: m.name for m in MessageType}


def test_refusal_codes() -> None:
    rows = _table("### Refusal codes", "code")
    assert {int(r["code"]): r["name"] for r in rows} == {c.value: c.name for c in RefuseCode}
    authenticated = {r["name"] for r in rows if r["authenticated"].startswith("yes")}
    assert authenticated == {c.name for c in refusal.FINAL_CODES}


def test_refusal_body_items() -> None:
    rows = _table("### Refusal body items", "type")
    assert {int(r["type"]): r["item"] for r in rows} == {b.value: b.name for b in BodyItem}


def test_frame_types() -> None:
    rows = _table("## Frames", "frame")
    names = {t.value: t.name.replace("_", "").lower() for t in FrameType}
    assert {int(r["type"]): r["frame"].lower() for r in rows} == names


def test_close_codes() -> None:
    rows = _table("## Frames", "name")
    assert {int(r["code"]): r["name"] for r in rows} == {c.value: c.name for c in CloseCode}


@pytest.mark.parametrize(
    ("starts", "table"),
    [("HANDSHAKE", TRANSPORT_TRANSITIONS), ("PAIRING", SESSION_TRANSITIONS)],
    ids=["transport", "session"],
)
def test_state_tables(starts: str, table: Mapping[Enum, Mapping[Enum, Enum]]) -> None:
    rows = next(t for t in _tables("### State machines") if t and t[0]["from"] == starts)
    documented = [(r["from"], r["event"], r["to"]) for r in rows]
    code = [(s.name, e.name, new.name) for s, row in table.items() for e, new in row.items()]
    assert sorted(documented) == sorted(code) and len(documented) == len(set(documented))


def test_txt_keys_and_service_type() -> None:
    rows = _table("## Discovery (mDNS)", "key")
    assert [_code(r["key"]) for r in rows] == list(txt_record("n", "t", True))
    assert f"`{SERVICE_TYPE}`" in TEXT
    assert txt_record("n", "t", True)["v"] == str(WIRE_VERSION) == "2"


def test_uri_fields() -> None:
    rows = _table("## The pairing URI", "key")
    assert [_code(r["key"]) for r in rows] == ["v", "n", "a", "id", "k", "s", "x"]
    sizes = {_code(r["key"]): r["size on the wire"] for r in rows}
    assert sizes["id"] == "11 chars" and offer.OFFER_ID_LEN == 8
    assert sizes["k"] == "32 bytes, 43 chars" and offer.KEY_LEN == 32
    assert sizes["s"] == "16 bytes, 22 chars" and offer.OFFER_SECRET_LEN == 16
    assert f"1{DASH}{offer.MAX_ADDRESSES} times" in TEXT
    assert f"1{DASH}{offer.MAX_NAME_LEN} characters" in TEXT
    assert f"At most {offer.MAX_URI_LEN:,} characters" in TEXT


def test_websocket_close_codes() -> None:
    rows = _table("## Transport", "code")
    codes = {int(r["code"]) for r in rows}
    assert CLOSE_PROTOCOL in codes and {1000, 1009, 1011} <= codes
    assert 1013 not in codes  # over a limit, a connection is closed at accept: no WebSocket
    assert ws_options(DEFAULT_MAX_RECORD)["max_size"] == 66_560 and "66,560 bytes" in TEXT
    assert ws_options(DEFAULT_MAX_RECORD)["compression"] is None


def _constant(label: str) -> str:
    for row in _table("## Constants", "constant"):
        if row["constant"] == label:
            return row["value"]
    raise AssertionError(f"no constant {label!r} in the table")


def _n(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def test_constants() -> None:
    s = Settings()
    assert _constant("wire version").startswith(str(WIRE_VERSION))
    assert PROLOGUE == b"fieldstation/2\x00" and "`fieldstation/2` · 0x00" in _constant(
        "prologue prefix"
    )
    assert _constant("max handshake message") == f"{_n(MAX_HANDSHAKE_MESSAGE)} bytes"
    assert _constant("max record (whole record)").startswith(f"{_n(DEFAULT_MAX_RECORD)} bytes")
    assert s.max_record == DEFAULT_MAX_RECORD and OVERHEAD == 8 + 16
    assert _constant("rekey interval") == f"{_n(DEFAULT_REKEY_INTERVAL)} records"
    assert s.rekey_interval == DEFAULT_REKEY_INTERVAL
    assert _constant("window").startswith(f"{_n(s.window)} ")
    assert _constant("ack delay") == f"{s.ack_delay * 1000:g} ms at most"
    timers = (s.ping_interval, s.link_timeout, s.handshake_timeout)
    assert _constant("ping interval, link timeout, handshake timeout") == ", ".join(
        f"{t:g} s" for t in timers
    )
    assert _constant("offer rotation, grace").endswith(f"{OFFER_GRACE:g} s")
    assert _constant("code hello rate").startswith(f"{CODE_HELLOS_PER_S:g} a second")
    pending = f"{StationEndpoint.MAX_PENDING}, {StationEndpoint._SEEN_EPHEMERALS}"
    assert _constant("pending resume secrets, remembered resume ephemerals") == pending
    limits = f"≤ {MAX_REASON} bytes, ≤ {MAX_BODY} bytes, ≤ {MAX_MACS}"
    assert _constant("refusal reason, body, MACs") == limits
    queue = f"{_n(s.queue_max_count)} messages, {s.queue_max_bytes // 2**20} MiB"
    assert _constant("outage queue") == queue
    assert _constant("identity payload").startswith(f"{payloads.IDENTITY_LEN} bytes")
    assert f"reason (ASCII, 0{DASH}{MAX_CLOSE_REASON} bytes)" in TEXT


@pytest.mark.parametrize(
    ("person", "where"),
    [
        (offer._PSK_PERSON, "the URI psk"),
        (pake._PSK_PERSON, "the code psk"),
        (payloads._RESUME_PERSON, "the next resumption secret"),
        (refusal._MAC_PERSON, "the refusal MAC"),
        (b"fs-fingerprint", "the fingerprint"),
    ],
)
def test_person_strings(person: bytes, where: str) -> None:
    assert f'"{person.decode()}"' in TEXT, f"{where}: person {person!r} not in the document"


def test_names_and_prefixes() -> None:
    assert f"`{PAIR_URI_PROTOCOL}`" in TEXT and f"`{PSK_PROTOCOL}`" in TEXT
    assert identity._DOMAIN == b"fieldstation identity v1\x00"
    assert '"fieldstation identity v1" · 0x00 · h' in TEXT
    assert pake._ID_PHONE.decode() in TEXT and pake._ID_STATION.decode() in TEXT
    assert f"{pake.MESSAGE_LEN} bytes" in TEXT and pake.CODE_DIGITS == 8
    assert payloads.CODE_SLOTS == 2 and f"count *n* (u8, 1{DASH}2)" in TEXT


def test_implementation_map_names_every_tunnel_module() -> None:
    # Both ways: every path the map names exists, and every module of the tunnel
    # package (or its folder) is named, so a split or a rename cannot leave it stale.
    root = DOC.parents[1]
    named = {
        path
        for row in _table("## Implementation map", "module")
        for path in re.findall(r"`([^`]+)`", row["module"])
    }
    missing = sorted(p for p in named if not (root / p).exists())
    assert not missing, f"the implementation map names what does not exist: {missing}"
    tunnel = root / "tunnel"
    modules = {f"tunnel/{f.name}" for f in tunnel.glob("*.py") if f.name != "__init__.py"}
    folders = {f"tunnel/{d.name}/" for d in tunnel.iterdir() if (d / "__init__.py").exists()}
    unnamed = sorted((modules | folders) - named)
    assert not unnamed, f"docs/PROTOCOL.md's implementation map misses: {unnamed}"
