"""The session page's link banner (online, reconnecting for the first seconds of a drop,
then offline, always with the queued count) and how a newly opened page joins the live
channel."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import connect

from station.kiosk import session_view
from station.kiosk.session_page import SessionPage
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

    view.page.broadcast = told.append  # type: ignore[method-assign,assignment]
    view.link_changed()
    endpoint.linked, endpoint.undelivered = False, 3
    view.link_changed()
    view.link_changed()  # nothing new: nothing told
    await asyncio.sleep(0.4)
    endpoint.linked, endpoint.undelivered = True, 0
    view.link_changed()
    assert [(m["state"], m["queued"]) for m in told] == [
        ("online", 0),
        ("reconnecting", 3),
        ("offline", 3),
        ("online", 0),
    ]
    await view.close("explicit")


@pytest.mark.asyncio
async def test_a_change_while_a_page_is_welcomed_follows_the_welcome() -> None:
    """A page that opens while the mirror changes gets the change after its welcome
    (which resets the page), never before it and never not at all."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def welcome() -> list[dict[str, Any]]:
        entered.set()
        await release.wait()
        return [{"type": "mirror", "reset": True, "n": 0}]

    async def no_reply(_: dict[str, Any]) -> None:
        return None

    page = SessionPage(framed_by=None, welcome=welcome, on_request=no_reply)
    await page.start()
    origin = f"http://127.0.0.1:{page.port}"
    try:
        async with connect(f"ws://127.0.0.1:{page.port}/live?t={page.token}", origin=origin) as ws:  # type: ignore[arg-type]
            await asyncio.wait_for(entered.wait(), 5)
            page.broadcast({"type": "mirror", "reset": False, "n": 1})
            assert page.viewers == 1
            release.set()
            page.broadcast({"type": "mirror", "reset": False, "n": 2})
            got = [json.loads(await asyncio.wait_for(ws.recv(), 5))["n"] for _ in range(3)]
            assert got == [0, 1, 2]
            await page.close("explicit")
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {
                "type": "ended",
                "reason": "explicit",
                "undelivered": [],
            }
    finally:
        await page.close("test over")
