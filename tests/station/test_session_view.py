"""The session page's link banner (online, reconnecting for the first seconds of a drop,
then offline, always with the queued count) and how a newly opened page joins the live
channel."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from station.kiosk import session_view
from station.kiosk.session_page import SessionPage
from station.kiosk.session_view import SessionView
from tests.tunnel.helpers import make_pair
from tunnel.aio.pump import EndpointPump
from tunnel.testing import ConnectionPair, FakeClock


async def _nothing(*_: object) -> Any:
    return {"ok": True, "seq": 1}


@pytest.mark.asyncio
async def test_banner_goes_reconnecting_then_offline_then_online(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real station endpoint, its link cut and resumed through the test kit, all on one
    fake clock: the view's clock and the loop's timers both read it, so the 10 s of
    "reconnecting" pass when the test says so, not on the wall clock."""
    clock = FakeClock(1_000.0)
    monkeypatch.setattr(asyncio.get_running_loop(), "time", clock)
    setup = make_pair()
    pair = ConnectionPair(setup.pair.phone, setup.pair.station, clock=clock)
    pair.connect()
    pair.transfer()

    async def no_events(_: object) -> None:
        return None

    view = SessionView(
        station="s",
        session="ab" * 16,
        fingerprint="fp",
        mirror=None,  # type: ignore[arg-type]
        pump=EndpointPump(pair.station, no_events, clock=clock),
        framed_by=None,
        send_command=_nothing,
        on_logout=lambda: None,
        on_activity=_nothing,
        clock=clock,
    )
    told: list[dict[str, Any]] = []
    view.page.broadcast = told.append  # type: ignore[method-assign,assignment]

    async def settle() -> None:  # let every callback that is due run
        for _ in range(20):
            await asyncio.sleep(0)

    view.link_changed()
    pair.cut()  # the WiFi goes; the kiosk keeps typing into the queue
    for text in (b"a", b"b", b"c"):
        pair.station.send(text, pair.now)
    view.link_changed()
    view.link_changed()  # nothing new: nothing told
    clock.advance(session_view.RECONNECTING_FOR - 0.001)
    await settle()
    assert [m["state"] for m in told] == ["online", "reconnecting"]  # not a moment early
    clock.advance(0.001)
    await settle()  # the view's own timer turns the banner offline
    pair.connect()
    pair.transfer()  # the phone resumes: online, the queue resent but not yet acknowledged
    view.link_changed()
    pair.advance(0.1)  # the phone's ack
    view.acked(pair.station.channel.acked)
    assert [(m["state"], m["queued"]) for m in told if m["type"] == "link"] == [
        ("online", 0),
        ("reconnecting", 3),
        ("offline", 3),
        ("online", 3),
        ("online", 0),
    ]
    view.deadline(30.0, "inactivity")
    assert told[-1] == {"type": "deadline", "in_s": 30.0, "reason": "inactivity"}
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
