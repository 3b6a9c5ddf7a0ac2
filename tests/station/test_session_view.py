"""The session page's link banner: online, reconnecting for the first seconds of a drop,
then offline, always with the queued count."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from station.kiosk import session_view
from station.kiosk.session_view import SessionView


@dataclass
class _Endpoint:
    linked: bool = True
    undelivered: int = 0


@dataclass
class _Pump:
    endpoint: _Endpoint


async def _nothing(*_: object) -> Any:
    return {"ok": True, "seq": 1}


@pytest.mark.asyncio
async def test_banner_goes_reconnecting_then_offline_then_online(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session_view, "RECONNECTING_FOR", 0.2)
    endpoint = _Endpoint()
    view = SessionView(
        station="s",
        session="ab" * 16,
        fingerprint="fp",
        mirror=None,  # type: ignore[arg-type]
        pump=_Pump(endpoint),  # type: ignore[arg-type]
        framed_by=None,
        send_command=_nothing,
        on_logout=lambda: None,
        on_activity=_nothing,
    )
    told: list[dict[str, Any]] = []

    async def broadcast(message: dict[str, Any]) -> None:
        told.append(message)

    view.page.broadcast = broadcast  # type: ignore[method-assign]
    await view.link_changed()
    endpoint.linked, endpoint.undelivered = False, 3
    await view.link_changed()
    await view.link_changed()  # nothing new: nothing told
    await asyncio.sleep(0.4)
    endpoint.linked, endpoint.undelivered = True, 0
    await view.link_changed()
    assert [(m["state"], m["queued"]) for m in told] == [
        ("online", 0),
        ("reconnecting", 3),
        ("offline", 3),
        ("online", 0),
    ]
    await view.close("explicit")
