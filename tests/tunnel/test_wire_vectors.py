"""The wire vectors in docs/vectors/ are exactly what the real code makes now."""

from __future__ import annotations

import json

import pytest

from tests.vectors import FILES, default_dir, generate, render


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return {name: render(content) for name, content in generate().items()}


@pytest.mark.parametrize("name", FILES)
def test_committed_vectors_are_what_the_code_makes(name: str, generated: dict[str, str]) -> None:
    path = default_dir() / name
    assert path.exists(), f"{path} is missing: run python -m tests.vectors"
    committed = path.read_text(encoding="utf-8")
    assert committed == generated[name], (
        f"{name} differs from what the code makes now: if the wire changed on purpose,"
        " run python -m tests.vectors, say why in docs/PROTOCOL.md, and bump the version"
    )


def test_generation_is_deterministic(generated: dict[str, str]) -> None:
    again = {name: render(content) for name, content in generate().items()}
    assert again == generated


def test_the_vectors_hold_what_the_document_promises(generated: dict[str, str]) -> None:
    session = json.loads(generated["session.json"])
    kinds = [e.get("kind") for e in session["transcript"] if "kind" in e]
    assert kinds.count("RESUME") == 2 and kinds[:2] == ["PAIR_URI", "ACCEPT"]
    frames = [e["frame"]["name"] for e in session["transcript"] if e.get("kind") == "record"]
    for name in ("Ack", "Data", "DataRun", "Ping", "Pong", "Close", "Notice"):
        assert name in frames
    pairing = session["pairing"]
    assert pairing["signed_message"].endswith(pairing["h_signed_by_phone"])
    assert len(bytes.fromhex(pairing["extra"])) == 32
    assert pairing["extra_hkdf_output3_64"].startswith(pairing["extra"])
    code = json.loads(generated["pair-code.json"])
    assert [s["spake2"]["keys_match"] for s in code["slots"]] == [False, True]
    refusals = json.loads(generated["refusals.json"])
    assert {c["code_name"] for c in refusals["clear"]} >= {"VERSION", "SESSION_UNKNOWN"}
    assert refusals["resume_gap"]["transcript"][2]["flags"] == 1
    records = json.loads(generated["records.json"])
    counters = [r["counter"] for r in records["records"]]
    assert counters == [0, 1, 65535, 65536, 65537]
    keys = {r["counter"]: r["key"] for r in records["records"]}
    assert keys[65535] == records["key"] and keys[65536] == records["rekey"]["rekeyed_key"]
