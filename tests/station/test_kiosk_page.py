"""The kiosk page in a real browser: Debian's Chromium driven by Playwright.

The station, the phone and the fault proxy are the real commands, on 127.0.0.1. Each
step's screenshot is saved under test-artifacts/kiosk/.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, FrameLocator, Page, expect

from tests.browser import artifacts
from tests.procs import Proc, command, init_phone, kiosk_link, link_phone, run, start_station

pytestmark = pytest.mark.integration

# Every wait has a generous ceiling: a loaded 2-core machine runs Chromium, the station,
# the phone and the proxy at once. How fast things are is printed, not asserted.
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)


def _station(tmp_path: Path, *extra: str) -> Proc:
    return start_station(tmp_path, *extra)


def _phone(tmp_path: Path, name: str) -> Path:
    return init_phone(tmp_path / name, "--name", name)


def _say(home: Path, chat: str, text: str) -> None:
    result = run([command("medic-phone"), "say", "--home", str(home), "--chat", chat, text])
    assert result.returncode == 0, result.stderr


def _applied(home: Path) -> list[str]:
    result = run([command("medic-phone"), "log", "--home", str(home), "--json"])
    assert result.returncode == 0, result.stderr
    return [str(row["text"]) for row in json.loads(result.stdout)]


def _wait(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1600, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


class Shots:
    def __init__(self, page: Page, name: str) -> None:
        self.page = page
        self.dir = artifacts("kiosk", name)
        self.n = 0

    def __call__(self, step: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(self.dir / f"{self.n:02d}-{step}.png"))


def test_pair_mirror_type_drop_and_logout(page: Page, tmp_path: Path) -> None:
    shot = Shots(page, "session")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("websocket", lambda ws: requests.append(ws.url))
    station = _station(tmp_path)
    ready = station.wait_for("ready")
    page.goto(kiosk_link(tmp_path))

    # Before pairing: the QR, the short code and the station's name.
    expect(page.locator("#station-name")).to_have_text("field-station")
    expect(page.locator("#qr")).to_be_visible()
    _qr_loaded(page)
    expect(page.locator("#code")).to_have_text(re.compile(r"^\d{4}-\d{4}$"))
    assert page.locator("#code").text_content() == _fresh_offer(station)["pair_code"]
    shot("pairing-screen")

    # A phone with a chat of its own pairs, through a fault proxy we can pull down.
    home = _phone(tmp_path, "phone-a")
    _say(home, "ward-3", "Bed 4: BP 120/80, pulse 88")
    proxy = Proc(
        [command("station"), "proxy", "--listen", "127.0.0.1:0", "--target", _target(ready)],
        stdin=True,
    )
    port = int(proxy.wait_line(lambda line: line.startswith("proxy on port")).split()[3])
    phone = link_phone(station, home, str(ready["pair_uri"]), "--connect", f"127.0.0.1:{port}")
    tab = page.locator(".session-tab")
    expect(tab).to_have_count(1)
    expect(page.locator("#pairing")).to_be_hidden()
    frame = page.frame_locator(".session-frame")
    expect(frame.locator(".banner")).to_have_text("Online")
    expect(frame.locator(".body", has_text="Bed 4: BP 120/80")).to_be_visible()

    # A change on the phone shows on the page ("within a second": the figure is printed).
    _say(home, "ward-3", "Bed 4: sats 97%")
    started = time.monotonic()  # from the moment the phone's store has it
    expect(frame.locator(".body", has_text="sats 97%")).to_be_visible()
    print(f"a phone change reached the page {time.monotonic() - started:.2f} s after `say`")
    shot("mirrored")

    # Typed on the page, applied on the phone, in the chat it was typed in.
    frame.locator("button.chat", has_text="Ward 3").click()
    _type(frame, "Start 500 ml saline")
    _wait(lambda: "Start 500 ml saline" in _applied(home))
    expect(frame.locator(".message:not(.pending) .body", has_text="500 ml saline")).to_be_visible()
    assert _chat_bodies(home)["ward-3"][-1] == "Start 500 ml saline"
    shot("typed-and-applied")

    # The link drops: the banner says so, with what waits in the queue.
    proxy.write("down")
    # "Reconnecting" for the first 10 s of a drop, then "Offline" (test_session_view checks
    # that sequence on a fake clock); a slow page may first show either.
    expect(frame.locator(".banner")).to_contain_text(re.compile("Reconnecting|Offline"))
    queued = ["Recheck BP in 15 min", "Call the lab", "Bed 4 stable"]
    for text in queued:
        _type(frame, text)
    expect(frame.locator(".banner")).to_contain_text("3 messages queued")
    expect(frame.locator(".message.pending")).to_have_count(3)
    assert _applied(home)[-1] == "Start 500 ml saline"  # nothing got through
    shot("reconnecting-with-queue")

    proxy.write("up")
    expect(frame.locator(".banner")).to_have_text("Online")
    _wait(lambda: _applied(home)[-3:] == queued)
    expect(frame.locator(".message.pending")).to_have_count(0)
    expect(frame.locator(".body", has_text="Bed 4 stable")).to_be_visible()
    shot("back-online")

    # Logout: back to pairing, and nothing of the session left in the page.
    frame.locator("#logout").click()
    expect(page.locator(".session-tab")).to_have_count(0)
    expect(page.locator("#pairing")).to_be_visible()
    expect(page.locator("#qr")).to_be_visible()
    assert station.wait_for("logout")["reason"] == "explicit"
    assert phone.wait_for("logout")["reason"] == "explicit"
    shot("logged-out")
    _assert_nothing_left(page, ["Bed 4", "saline", "sats", "Call the lab", "Ward 3"])

    # Every request the page made stayed on this machine (no CDN, no fonts, no beacons).
    assert requests
    assert all(re.match(r"^(http|ws)://127\.0\.0\.1:\d+/", url) for url in requests), requests


def test_two_medics_each_in_their_own_tab(page: Page, tmp_path: Path) -> None:
    shot = Shots(page, "two-medics")
    station = _station(tmp_path)
    page.goto(kiosk_link(tmp_path))
    phones = []
    for name, note in (("phone-a", "only on phone A"), ("phone-b", "only on phone B")):
        home = _phone(tmp_path, name)
        _say(home, "notes", note)
        uri = str(_fresh_offer(station)["pair_uri"])
        proc = Proc([command("medic-phone"), "link", uri, "--home", str(home), "--json"])
        proc.wait_for("paired")
        phones.append(proc)
        expect(page.locator(".session-tab")).to_have_count(len(phones))
    frames = page.locator(".session-frame")
    expect(frames).to_have_count(2)
    first, second = (
        page.frame_locator(".session-frame >> nth=0"),
        page.frame_locator(".session-frame >> nth=1"),
    )
    page.locator(".session-tab >> nth=0").click()
    expect(first.locator(".body", has_text="only on phone A")).to_be_visible()
    expect(first.locator(".body", has_text="only on phone B")).to_have_count(0)
    shot("medic-1")
    page.locator(".session-tab >> nth=1").click()
    expect(second.locator(".body", has_text="only on phone B")).to_be_visible()
    expect(second.locator(".body", has_text="only on phone A")).to_have_count(0)
    shot("medic-2")
    # One logs out; the other stays.
    second.locator("#logout").click()
    expect(page.locator(".session-tab")).to_have_count(1)
    expect(
        page.frame_locator(".session-frame").locator(".body", has_text="phone A")
    ).to_be_attached()
    assert "only on phone B" not in _all_text(page)
    shot("one-left")


def test_inactivity_countdown_and_keyboard(page: Page, tmp_path: Path) -> None:
    shot = Shots(page, "countdown")
    station = _station(tmp_path, "--inactivity", "32")
    ready = station.wait_for("ready")
    page.goto(kiosk_link(tmp_path))
    home = _phone(tmp_path, "phone-a")
    phone = Proc([command("medic-phone"), "link", str(ready["pair_uri"]), "--home", str(home)])
    station.wait_for("paired")
    frame = page.frame_locator(".session-frame")
    countdown = frame.locator("#countdown")
    expect(countdown).to_contain_text("Logging out in")
    expect(countdown).to_contain_text("no activity")
    shot("countdown")
    # "Press any key to stay": one key, nothing typed, and the countdown goes.
    frame.locator("#text").focus()
    page.keyboard.press("Shift")
    expect(countdown).to_be_hidden()
    shot("countdown-reset")
    # Keyboard only: type, Enter sends.
    page.keyboard.type("still here")
    page.keyboard.press("Enter")
    _wait(lambda: "still here" in _applied(home))
    phone.stop()


# -- helpers ------------------------------------------------------------------------------


def _qr_loaded(page: Page) -> None:
    page.wait_for_function(
        "() => { const qr = document.getElementById('qr');"
        " return !qr.hidden && qr.complete && qr.naturalWidth > 100; }",
        timeout=WAIT_MS,
    )


def _target(ready: dict[str, object]) -> str:
    return f"127.0.0.1:{ready['port']}"


def _fresh_offer(station: Proc) -> dict[str, object]:
    status = json.loads(
        run([command("station"), "status", "--control", station_control(station), "--json"]).stdout
    )
    assert status["offer_open"], status
    return {"pair_uri": status["pair_uri"], "pair_code": status["pair_code"]}


def station_control(station: Proc) -> str:
    return str(station.wait_for("ready")["control"])


def _type(frame: FrameLocator, text: str) -> None:
    box = frame.locator("#text")
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def _chat_bodies(home: Path) -> dict[str, list[str]]:
    """The phone's messages by chat, read from its SQLite file (read-only).

    Plain sqlite3: Playwright's sync API owns this thread's event loop."""
    from medic_phone.store import DB_FILE

    found: dict[str, list[str]] = {}
    uri = f"file:{home / DB_FILE}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute("SELECT chat_id, body FROM messages ORDER BY version").fetchall()
    for chat, body in rows:
        found.setdefault(str(chat), []).append(str(body))
    return found


def _all_text(page: Page) -> str:
    """The markup of the page and of every frame still in it."""
    return "\n".join(frame.content() for frame in page.frames)


def _assert_nothing_left(page: Page, needles: list[str]) -> None:
    html = _all_text(page)
    for needle in needles:
        assert needle not in html, f"{needle!r} is still in the page"
    storage = page.evaluate(
        """async () => ({
            local: localStorage.length,
            session: sessionStorage.length,
            idb: (await indexedDB.databases()).length,
            workers: (await navigator.serviceWorker.getRegistrations()).length,
            cookie: document.cookie,
        })"""
    )
    assert storage == {"local": 0, "session": 0, "idb": 0, "workers": 0, "cookie": ""}
    assert page.context.cookies() == []


@pytest.mark.root
def test_page_text_never_reaches_the_supervisor(page: Page, tmp_path: Path) -> None:
    import os
    import secrets

    from wipe.memscan import scan_tree

    if os.geteuid() != 0:
        pytest.skip("reading another process's memory needs root")
    station = _station(tmp_path)
    ready = station.wait_for("ready")
    page.goto(kiosk_link(tmp_path))
    home = _phone(tmp_path, "phone-a")
    typed = "PAGE-CANARY-" + secrets.token_hex(8)
    pushed = "PHONE-CANARY-" + secrets.token_hex(8)
    _say(home, "notes", pushed)
    phone = Proc([command("medic-phone"), "link", str(ready["pair_uri"]), "--home", str(home)])
    station.wait_for("paired")
    frame = page.frame_locator(".session-frame")
    expect(frame.locator(".body", has_text=pushed)).to_be_visible()
    _type(frame, typed)
    _wait(lambda: typed in _applied(home))
    expect(frame.locator(".message:not(.pending) .body", has_text=typed)).to_be_visible()
    supervisor = station.popen.pid
    status = json.loads(
        run([command("station"), "status", "--control", station_control(station), "--json"]).stdout
    )
    worker = int(status["sessions"][0]["pid"])
    for canary in (typed, pushed):
        during = scan_tree(supervisor, canary)
        assert during.total(worker) > 0, "positive control: the worker holds the text"
        assert during.total(supervisor) == 0, "the supervisor must never hold page text"
    frame.locator("#logout").click()
    station.wait_for("wiped")
    for canary in (typed, pushed):
        assert scan_tree(supervisor, canary).total() == 0
    phone.stop()


def test_pairing_screen_follows_rotating_offers(page: Page, tmp_path: Path) -> None:
    station = _station(tmp_path, "--offer-ttl", "1.5")
    page.goto(kiosk_link(tmp_path))
    code = page.locator("#code")
    expect(code).to_have_text(re.compile(r"^\d{4}-\d{4}$"))
    first_code = str(code.text_content())
    first_qr = page.locator("#qr").get_attribute("src")
    # Offers rotate every 1.5 s, so the page may skip one on a slow machine: it must move
    # on to a newer offer, and show one the station really made.
    expect(code).not_to_have_text(first_code)
    shown = str(code.text_content())
    station.wait_for("offer", where=lambda e: e["pair_code"] == shown, timeout=30)
    assert page.locator("#qr").get_attribute("src") != first_qr
    _qr_loaded(page)


_CONTRAST = """
(selectors) => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor;
      if (c && c !== "rgba(0, 0, 0, 0)" && c !== "transparent") return c;
    }
    return "rgb(255, 255, 255)";
  };
  const out = {};
  for (const s of selectors) {
    const el = document.querySelector(s);
    if (!el) { out[s] = null; continue; }
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(rgb(background(el)));
    out[s] = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  }
  return out;
}
"""


def test_readable_contrast_and_keyboard_only_use(page: Page, tmp_path: Path) -> None:
    station = _station(tmp_path, "--inactivity", "32")
    ready = station.wait_for("ready")
    page.goto(kiosk_link(tmp_path))
    screen = page.evaluate(_CONTRAST, ["#station-name", "#code", ".steps", ".tab"])
    home = _phone(tmp_path, "phone-a")
    _say(home, "notes", "a note")
    phone = Proc([command("medic-phone"), "link", str(ready["pair_uri"]), "--home", str(home)])
    station.wait_for("paired")
    frame = page.frame_locator(".session-frame")
    expect(frame.locator(".body", has_text="a note")).to_be_visible()
    expect(frame.locator("#countdown")).to_be_visible()
    inner = page.frames[-1].evaluate(
        _CONTRAST,
        ["#banner", "#countdown", ".chat", ".body", ".sender", "#logout", "#send", "#text"],
    )
    ratios = {**screen, **inner}
    # WCAG AA for body text is 4.5:1; everything here is at least that.
    print("contrast:", {k: round(v, 1) for k, v in ratios.items() if v is not None})
    assert all(r is not None and r >= 4.5 for r in ratios.values()), ratios

    # Keyboard only, from the top of the page: Tab reaches the compose box and Log out.
    page.locator("body").focus()
    reached = []
    for _ in range(25):
        page.keyboard.press("Tab")
        reached.append(
            page.frames[-1].evaluate("document.activeElement && document.activeElement.id")
        )
        if reached[-1] == "text":
            break
    assert reached[-1] == "text", reached
    page.keyboard.type("typed without a mouse")
    page.keyboard.press("Enter")
    _wait(lambda: "typed without a mouse" in _applied(home))
    page.keyboard.press("Shift+Tab")
    for _ in range(10):
        if page.frames[-1].evaluate("document.activeElement.id") == "logout":
            break
        page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    assert station.wait_for("logout")["reason"] == "explicit"
    expect(page.locator(".session-tab")).to_have_count(0)
    phone.stop()
