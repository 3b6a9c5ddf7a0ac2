"""Issue 18 in a real browser: a command typed at the kiosk shows queued, then sent,
then applied (ticks, like a messenger); after a logout during an outage, the screen
says which ones never reached the phone, by seq and without their text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Frame, Page, expect

from tests.browser import artifacts
from tests.procs import Proc, command, init_phone, kiosk_link, link_phone, start_station

pytestmark = pytest.mark.integration

# Records every state each command's tick shows, in order, as the page changes it.
_WATCH = """() => {
  window.__seen = {};
  const note = () => {
    for (const tag of document.querySelectorAll('.fate[data-seq]')) {
      const seen = (window.__seen[tag.dataset.seq] ||= []);
      if (seen[seen.length - 1] !== tag.dataset.state) seen.push(tag.dataset.state);
    }
  };
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true,
    attributes: true, characterData: true});
  note();
}"""


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1600, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def _session_frame(page: Page) -> Frame:
    for frame in page.frames:
        if "/live" not in frame.url and "?t=" in frame.url:
            return frame
    raise AssertionError(f"no session frame in {[f.url for f in page.frames]}")


def _type(page: Page, text: str) -> None:
    box = page.frame_locator(".session-frame").locator("#text")
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def test_ticks_from_queued_to_applied_and_undelivered_after_logout(
    page: Page, tmp_path: Path
) -> None:
    shots = artifacts("kiosk", "fates")
    station = start_station(tmp_path)
    ready = station.wait_for("ready")
    page.goto(kiosk_link(tmp_path))
    proxy = Proc(
        [
            command("station"),
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--target",
            f"127.0.0.1:{ready['port']}",
        ],
        stdin=True,
    )
    port = int(proxy.wait_line(lambda line: line.startswith("proxy on port")).split()[3])
    home = init_phone(tmp_path / "phone", "--name", "ward-3 phone")
    phone = link_phone(station, home, str(ready["pair_uri"]), "--connect", f"127.0.0.1:{port}")
    expect(page.locator(".session-tab")).to_have_text("ward-3 phone")
    view = page.frame_locator(".session-frame")
    expect(view.locator(".banner")).to_have_text("Online")
    _session_frame(page).evaluate(_WATCH)

    # Typed while the phone is out of reach: queued; back: sent, then on the phone.
    proxy.write("down")
    expect(view.locator(".banner")).to_contain_text("Reconnecting", timeout=8000)
    _type(page, "Give 1 g paracetamol")
    expect(view.locator('.fate[data-seq="1"]')).to_have_attribute("data-state", "queued")
    page.screenshot(path=str(shots / "01-queued.png"))
    proxy.write("up")
    applied = view.locator('.message:not(.pending) .fate[data-seq="1"]')
    expect(applied).to_have_attribute("data-state", "applied", timeout=15000)
    expect(applied).to_contain_text(re.compile(r"on the phone · \d\d:\d\d"))
    page.screenshot(path=str(shots / "02-applied.png"))
    seen = _session_frame(page).evaluate("() => window.__seen['1']")
    print(f"states shown for seq 1: {seen}")
    assert seen[0] == "queued" and seen[-1] == "applied" and "sent" in seen
    assert seen.index("queued") < seen.index("sent") < seen.index("applied")

    # Two typed during an outage, then a logout: the screen names them, without text.
    proxy.write("down")
    expect(view.locator(".banner")).to_contain_text("Reconnecting", timeout=8000)
    _type(page, "Recheck BP at 10:30")
    _type(page, "Call the lab")
    expect(view.locator(".message.pending")).to_have_count(2)
    view.locator("#logout").click()
    expect(page.locator(".session-tab")).to_have_count(0)
    wiped = page.locator(".wiped-session")
    expect(wiped).to_contain_text("2 messages typed here never reached the phone (seq 2, 3)")
    expect(wiped).to_contain_text("ward-3 phone logged out (explicit)")
    page.screenshot(path=str(shots / "03-undelivered-after-logout.png"))
    html = "\n".join(frame.content() for frame in page.frames)
    for text in ("Recheck BP", "Call the lab", "paracetamol"):
        assert text not in html
    assert station.wait_for("wiped")["undelivered_seqs"] == [2, 3]
    phone.stop()
    proxy.stop()
