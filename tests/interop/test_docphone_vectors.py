"""The document-only phone (tests/interop/docphone.py) against docs/vectors/.

It reproduces every message the reference phone sent, byte for byte, from the fixed
draws, and reads every message the station sent: so the document and the vectors are
enough for another implementation, on other libraries, to get the bytes right.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from tests.interop import docphone as dp

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


def _draws(inputs: dict[str, Any], what: str) -> bytes:
    for draw in inputs["phone_draws"]:
        if draw["what"] == what:
            return bytes.fromhex(draw["hex"])
    raise AssertionError(f"no phone draw {what!r}")


def _on(transcript: list[dict[str, Any]], transport: int) -> list[dict[str, Any]]:
    return [e for e in transcript if e.get("transport") == transport]


def _records(
    entries: list[dict[str, Any]], state: dp.PhoneState, hs: dp.Handshake
) -> list[tuple[int, dict[str, Any]]]:
    """Seal the phone's records and open the station's, as the transcript has them."""
    out_dir, in_dir = dp.Direction(hs.k1), dp.Direction(hs.k2)
    frames = []
    for entry in entries:
        if entry["kind"] != "record":
            continue
        frame = bytes.fromhex(entry["frame_bytes"])
        if entry["dir"] == "phone->station":
            assert out_dir.seal(frame).hex() == entry["bytes"]
        else:
            assert in_dir.open(bytes.fromhex(entry["bytes"])) == frame
            kind, fields = dp.decode_frame(frame)
            for offset, payload in enumerate(fields.get("payloads", [])):
                state.apply(fields["seq"] + offset, payload)
            frames.append((kind, fields))
    return frames


def test_pairing_by_uri_two_resumes_and_logout() -> None:
    v = _load("session.json")
    inputs, transcript = v["inputs"], v["transcript"]
    offer = dp.parse_uri(inputs["offer"]["uri"])
    assert offer.psk.hex() == inputs["offer"]["psk"]
    assert offer.name == inputs["station_name"]
    state = dp.PhoneState(bytes.fromhex(inputs["phone_identity"]["seed"]))
    assert state.fingerprint == inputs["phone_identity"]["fingerprint"]

    first = _on(transcript, 1)
    hello, hs = dp.uri_hello(state, offer, _draws(inputs, "phone ephemeral private key (pairing)"))
    assert hs.h_sig.hex() == v["pairing"]["h_signed_by_phone"]
    assert hello.hex() == first[0]["bytes"]
    _, payload = dp.read_accept(bytes.fromhex(first[1]["bytes"]), hs)
    state.accepted(payload)
    assert state.station == inputs["station_name"]
    assert hs.ck.hex() == v["pairing"]["ck_final"]
    assert hs.extra.hex() == v["pairing"]["extra"]
    assert hs.next_secret.hex() == v["pairing"]["next_resumption_secret"]
    state.secret = hs.next_secret
    kinds = [k for k, _ in _records(first, state, hs)]
    assert dp.NOTICE in kinds and dp.PING in kinds
    assert state.applied == {1: "BP 120/80, bed 4"}

    for n, transport in ((1, 2), (2, 3)):
        entries = _on(transcript, transport)
        what = f"phone ephemeral private key (resume {n})"
        hello, hs = dp.resume_hello(state, _draws(inputs, what))
        assert hello.hex() == entries[0]["bytes"]
        _, payload = dp.read_accept(bytes.fromhex(entries[1]["bytes"]), hs)
        assert int.from_bytes(payload, "big") == 1  # the station's cursor: our snapshot
        assert hs.next_secret.hex() == v[f"resume_{n}"]["next_resumption_secret"]
        state.secret = hs.next_secret
        frames = _records(entries, state, hs)
        if n == 1:
            assert any(kind == dp.DATA_RUN for kind, _ in frames)
    assert sorted(state.applied) == [1, 2, 3, 4, 5] and state.duplicates == 0
    assert (dp.CLOSE, {"code": 1, "reason": "remote"}) in frames


def test_pairing_by_code_two_slots() -> None:
    v = _load("pair-code.json")
    inputs = v["inputs"]
    transcript = v["transcript"]
    state = dp.PhoneState(bytes.fromhex(inputs["phone_identity"]["seed"]))
    entropies = [_draws(inputs, f"SPAKE2 entropy, slot {i}") for i in (0, 1)]
    hello, slots = dp.code_hello(inputs["typed"], entropies)
    for i, slot in enumerate(slots):
        spake = v["slots"][i]["spake2"]["phone"]
        assert slot.w.hex() == spake["w"] and slot.x.hex() == spake["x"]
        assert slot.message.hex() == spake["message_a"]
    assert hello.hex() == transcript[0]["bytes"]
    ephemerals = [_draws(inputs, f"phone ephemeral private key, slot {i}") for i in (0, 1)]
    reply = bytes.fromhex(transcript[1]["bytes"])
    noise, handshakes = dp.code_noise(state, hello, slots, reply, ephemerals)
    for i in (0, 1):
        assert handshakes[i].h_sig.hex() == v["slots"][i]["h_signed_by_phone"]
        assert handshakes[i].psk.hex() == v["slots"][i]["psk"]
    assert noise.hex() == transcript[2]["bytes"]
    hs, payload = dp.read_accept(bytes.fromhex(transcript[3]["bytes"]), handshakes)
    assert hs is handshakes[1] and payload.hex() == v["slots"][1]["accept_payload"]
    assert hs.next_secret.hex() == v["slots"][1]["next_resumption_secret"]
    _records(transcript, state, hs)


def test_wrong_code_is_a_clear_refusal() -> None:
    v = _load("wrong-code.json")
    refusals = [e for e in v["transcript"] if e.get("kind") == "REFUSE"]
    for entry in refusals:
        refusal = dp.Refusal(bytes.fromhex(entry["bytes"]))
        assert (refusal.code, refusal.reason, refusal.macs) == (entry["code"], entry["reason"], [])


def test_authenticated_refusals() -> None:
    v = _load("refusals.json")
    for case in ("resume_gap", "session_ended"):
        mac = v[case]["mac"]
        refusal_entry = next(e for e in v[case]["transcript"] if e.get("kind") == "REFUSE")
        refusal = dp.Refusal(bytes.fromhex(refusal_entry["bytes"]))
        secret = bytes.fromhex(mac["secret"])
        session = bytes.fromhex(mac["session_id"])
        hello = next(e for e in v[case]["transcript"] if e.get("kind") == "RESUME")
        ephemeral = bytes.fromhex(hello["noise_message_1"])[:32]
        assert refusal.authentic(session, secret, ephemeral)
        assert not refusal.authentic(session, bytes(32), ephemeral)
        if refusal.flags & 1:  # bound: another hello's ephemeral does not verify it
            assert not refusal.authentic(session, secret, bytes(32))
    for clear in v["clear"]:
        assert dp.Refusal(bytes.fromhex(clear["refusal"])).macs == []


def test_uris_that_parse() -> None:
    cases = [c for c in _load("uri.json")["cases"] if c["ok"]]
    assert len(cases) >= 4
    for case in cases:
        offer = dp.parse_uri(case["uri"])
        assert offer.name == case["station"]
        assert [[h, p] for h, p in offer.addresses] == case["addresses"]
        assert (offer.offer_id.hex(), offer.key.hex()) == (case["offer_id"], case["offer_key"])
        assert offer.psk.hex() == case["psk"]


def test_records_across_the_rekey() -> None:
    v = _load("records.json")
    assert dp.rekey(bytes.fromhex(v["key"])).hex() == v["rekey"]["rekeyed_key"]
    direction = dp.Direction(bytes.fromhex(v["key"]))
    for record in v["records"]:
        direction.counter = record["counter"]  # the vectors skip the middle
        assert direction.open(bytes.fromhex(record["bytes"])).hex() == record["frame_bytes"]


@pytest.mark.parametrize("module", ["docphone.py", "doclink.py"])
def test_the_document_phone_imports_nothing_of_ours(module: str) -> None:
    tree = ast.parse((Path(dp.__file__).parent / module).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    ours = {"tunnel", "wire", "station", "medic_phone", "spake2", "drill"}
    assert not {name.split(".")[0] for name in imported} & ours
    assert {name for name in imported if name.startswith("tests")} <= {"tests.interop"}
