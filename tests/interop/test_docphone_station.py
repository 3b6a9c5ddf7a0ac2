"""The document-only phone against a real ``station start`` on 127.0.0.1.

It pairs by URI and by code (the code a rotation ago: slot 1), resumes twice after
dropping its transport while the station queues commands, receives every command
exactly once and in order, logs out (confirmed) and checks the signed receipt; back
after the logout it believes the authenticated SESSION_ENDED (MAC, reason, receipt);
a wrong code gets the clear WRONG_CODE.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.interop import doclink
from tests.interop import docphone as dp
from tests.procs import Proc, command, run, start_station

pytestmark = pytest.mark.integration


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Proc]:
    # Offers rotate every 2 s, so a code read before a rotation pairs through slot 1.
    proc = start_station(tmp_path, "--name", "Clinic Ä-1", "--offer-ttl", "2")
    yield proc
    proc.stop()


def _send(tmp_path: Path, session: str, texts: list[str]) -> list[int]:
    control = str(tmp_path / "ctl.sock")
    argv = [command("station"), "send", "--control", control, "--session", session, "--json"]
    result = run([*argv, "-"], stdin="\n".join(texts))
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["seq"] for line in result.stdout.splitlines()]


async def _linked_life(
    tmp_path: Path, station: Proc, url: str, state: dp.PhoneState, first: doclink.Link, tag: str
) -> dict[str, Any]:
    """Commands on the link, two drops with commands queued meanwhile, two resumes,
    then the confirmed logout."""
    session = state.session_id.hex()
    link = first
    expected: list[str] = []
    for round_ in range(3):
        texts = [f"{tag} round {round_} command {i}" for i in range(4 if round_ else 3)]
        if round_:
            await link.drop()  # the station queues what is typed meanwhile
        seqs = await asyncio.to_thread(_send, tmp_path, session, texts)
        assert seqs == list(range(len(expected) + 1, len(expected) + len(texts) + 1))
        expected += texts
        if round_:
            link = await doclink.resume(url, state)
        total = len(expected)
        await link.run(lambda: state.cursor >= total)  # noqa: B023 (awaited here)
    assert state.applied == dict(enumerate(expected, start=1))
    reason = await link.logout()
    return {"reason": reason, "frames": link.frames, "duplicates": state.duplicates}


def test_pairs_by_uri_and_by_code_resumes_twice_each(station: Proc, tmp_path: Path) -> None:
    ready = station.wait_for("ready")
    url = f"ws://127.0.0.1:{ready['port']}/"
    offer = dp.parse_uri(ready["pair_uri"])
    assert offer.name == "Clinic Ä-1"

    uri_state = dp.PhoneState(bytes(range(32)))

    async def by_uri() -> dict[str, Any]:
        state = uri_state
        link = await doclink.pair_by_uri(url, state, offer)
        paired = await asyncio.to_thread(station.wait_for, "paired")
        assert paired["fingerprint"] == state.fingerprint
        assert paired["session"] == state.session_id.hex() and state.station == "Clinic Ä-1"
        out = await _linked_life(tmp_path, station, url, state, link, "uri")
        assert state.receipt is not None and state.receipt["session"] == state.session_id.hex()
        assert state.receipt["undelivered_count"] == 0 and state.receipt["applied"] == 11
        return out

    uri = asyncio.run(by_uri())
    assert uri["reason"] == "remote" and uri["duplicates"] == 0
    assert station.wait_for("logout")["reason"] == "remote"
    assert station.wait_for("wiped")["undelivered"] == 0

    # Back after the logout: the supervisor answers with the worker's authenticated refusal.
    async def resume_after_logout() -> dp.Refusal:
        with pytest.raises(dp.Refusal) as refused:
            await doclink.resume(url, uri_state)
        return refused.value

    ended = asyncio.run(resume_after_logout())
    assert ended.code == 9 and ended.flags == 0  # SESSION_ENDED, unbound
    assert ended.authentic(uri_state.session_id, uri_state.secret, ended.ephemeral)
    assert not ended.authentic(uri_state.session_id, bytes(32), ended.ephemeral)
    items = ended.items()
    assert items[1] == b"remote"  # REASON
    signature, body = items[4][:64], items[4][64:]  # RECEIPT
    Ed25519PublicKey.from_public_bytes(uri_state.receipt_key).verify(signature, body)
    assert json.loads(body) == uri_state.receipt

    # A code shown before a rotation: the station now holds it as its previous code.
    mark = len(station.events)
    code = station.wait_for("offer", after=mark, timeout=20)["pair_code"]
    station.wait_for("offer", after=len(station.events), timeout=10)

    async def by_code() -> tuple[dict[str, Any], int]:
        state = dp.PhoneState(bytes(range(1, 33)))
        link, slot = await doclink.pair_by_code(url, state, code.replace("-", " "))
        paired = await asyncio.to_thread(
            station.wait_for, "paired", where=lambda e: e["session"] == state.session_id.hex()
        )
        assert paired["fingerprint"] == state.fingerprint
        return await _linked_life(tmp_path, station, url, state, link, "code"), slot

    code_life, slot = asyncio.run(by_code())
    assert slot == 1  # the previous code answers in slot 1
    assert code_life["reason"] == "remote" and code_life["duplicates"] == 0
    assert dp.DATA_RUN in code_life["frames"]  # the queued commands came as runs

    async def wrong_code() -> dp.Refusal:
        with pytest.raises(dp.Refusal) as refused:
            await doclink.pair_by_code(url, dp.PhoneState(bytes(32)), "0000 0000")
        return refused.value

    wrong = asyncio.run(wrong_code())
    assert (wrong.code, wrong.reason, wrong.macs) == (11, "wrong or expired code", [])
