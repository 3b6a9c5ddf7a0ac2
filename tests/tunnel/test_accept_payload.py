"""ACCEPT carries the station's name as UTF-8, at most 64 bytes, cut between characters."""

from __future__ import annotations

import pytest

from tunnel.payloads import accept_payload, read_accept

SESSION = bytes(range(16))


@pytest.mark.parametrize(
    "name",
    ["Clinic A", "Clinic " + "é" * 57, "€" * 64, "x" * 63 + "€", "🚑" * 20],
)
def test_a_long_name_still_reads_as_utf8(name: str) -> None:
    payload = accept_payload(SESSION, name)
    assert len(payload) - len(SESSION) <= 64
    session, station = read_accept(payload)  # raised HandshakeFailed before the fix
    assert session == SESSION
    assert name.startswith(station)
    assert len(station.encode()) > 60 or station == name


def test_a_short_name_is_whole() -> None:
    assert read_accept(accept_payload(SESSION, "Clinic Ä-1")) == (SESSION, "Clinic Ä-1")
