"""The kiosk pages' HTTP and live channels, without a browser: headers, keys, origins.

Every response must carry ``Cache-Control: no-store``, a strict CSP and no cookie; every
asset must come from the station itself; the session page and its live channel must
refuse anyone without the session's token or from another origin.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.procs import Proc, command, kiosk_link, run, start_station

pytestmark = pytest.mark.integration

ASSETS = ("pairing.html", "pairing.js", "session.html", "session.js", "kiosk.css")


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Proc]:
    proc = start_station(tmp_path)
    yield proc
    proc.stop()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _assert_safe_headers(headers: dict[str, str]) -> None:
    assert headers["Cache-Control"] == "no-store"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors" in csp and "base-uri 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in headers


def _open(link: str) -> tuple[str, dict[str, Any]]:
    """Spend a launch link on the screen's live channel: (the page key, the state)."""
    parts = urlsplit(link)
    origin = f"{parts.scheme}://{parts.netloc}"
    launch = parts.fragment.removeprefix("launch=")
    with connect(f"ws://{parts.netloc}/live?launch={launch}", origin=origin) as ws:
        handed = json.loads(ws.recv(timeout=5))
        state: dict[str, Any] = json.loads(ws.recv(timeout=5))
    assert handed["type"] == "key" and state["type"] == "state"
    return str(handed["key"]), state


def test_assets_are_local_and_use_no_browser_storage() -> None:
    assets = resources.files("station.kiosk").joinpath("assets")
    for name in ASSETS:
        text = assets.joinpath(name).read_text()
        assert not re.search(r"https?://", text), f"{name} names a remote address"
        for api in ("localStorage", "sessionStorage", "indexedDB", "serviceWorker", "cookie"):
            assert api not in text, f"{name} uses {api}"
        assert "innerHTML" not in text and "eval(" not in text
        if name.endswith(".html"):
            refs = re.findall(r'(?:src|href)="([^"]+)"', text)
            assert refs and all(r.startswith("/") and not r.startswith("//") for r in refs)
            assert "<script>" not in text and "style=" not in text  # nothing inline


def _refused(url: str, origin: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin=origin)
    return refused.value.response.status_code


def test_pairing_screen_headers_key_host_and_qr(station: Proc, tmp_path: Path) -> None:
    ready = station.wait_for("ready")
    base = str(ready["ui"])
    assert urlsplit(base).path == "/" and not urlsplit(base).query, "the address holds no key"
    status, headers, body = _get(base)
    assert status == 200 and b"Link your phone" in body  # the page itself holds nothing
    _assert_safe_headers(headers)
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert _get(base, {"Host": "attacker.example"})[0] == 400  # DNS rebinding
    for asset in ("pairing.js", "kiosk.css"):
        status, headers, _ = _get(base + asset)
        assert status == 200
        _assert_safe_headers(headers)
    netloc = urlsplit(base).netloc
    origin = f"http://{netloc}"
    # Nothing live answers without a link: no key, a made-up key, a made-up launch.
    for query in ("", "k=", "k=wrong", "launch=wrong"):
        assert _refused(f"ws://{netloc}/live?{query}", origin) == 403
    link = kiosk_link(tmp_path)
    launch = urlsplit(link).fragment.removeprefix("launch=")
    # A refusal for the origin comes before the link is spent: it still works after.
    assert _refused(f"ws://{netloc}/live?launch={launch}", "http://evil.example") == 403
    key, state = _open(link)
    offer = state["offer"]
    assert offer["code"] == ready["pair_code"] and state["sessions"] == []
    # Spent: the same link opens nothing twice.
    assert _refused(f"ws://{netloc}/live?launch={launch}", origin) == 403
    with connect(f"ws://{netloc}/live?k={key}", origin=origin) as ws:  # the page's key
        assert json.loads(ws.recv(timeout=5))["type"] == "state"
    status, headers, svg = _get(f"{base}qr.svg?k={key}&o={offer['id']}")
    assert status == 200 and headers["Content-Type"] == "image/svg+xml"
    assert svg.startswith(b"<svg") and b"<script" not in svg
    assert _get(f"{base}qr.svg?k={key}&o=rotated")[0] == 404
    assert _get(f"{base}qr.svg?k=wrong&o={offer['id']}")[0] == 403
    assert _get(f"{base}qr.svg?o={offer['id']}")[0] == 403
    printed = "\n".join(station.lines + station.stderr)
    assert launch not in printed and key not in printed


def test_launch_links_expire_and_come_only_from_the_control_socket(tmp_path: Path) -> None:
    station = start_station(tmp_path, "--no-ui")
    ctl = ["--control", str(tmp_path / "ctl.sock")]
    result = run([command("station"), "open", *ctl])
    assert result.returncode == 1 and "--no-ui" in result.stderr
    station.stop()
    from station.kiosk.screen_keys import MAX_KEYS, ScreenKeys

    keys = ScreenKeys(ttl=5)
    old = keys.launch("link", now=100.0)
    assert keys.usable(old.token, now=104.9) and not keys.usable(old.token, now=105.0)
    assert keys.spend(old.token, now=105.0) is None
    fresh = keys.launch("kiosk", now=200.0)
    spent = keys.spend(fresh.token, now=201.0)
    assert spent is not None and spent[1] == fresh.label
    assert keys.spend(fresh.token, now=201.0) is None  # once
    assert keys.label_of(spent[0]) == fresh.label
    keys.revoke(fresh.label)
    assert keys.label_of(spent[0]) is None
    labels = []
    for _ in range(MAX_KEYS + 2):
        launch = keys.launch("link", now=300.0)
        result_ = keys.spend(launch.token, now=300.0)
        assert result_ is not None
        labels.append(result_[1])
        evicted = result_[2]
    assert evicted == [labels[1]]  # the oldest key goes first, with its page


def test_session_page_needs_its_token_and_origin(station: Proc, tmp_path: Path) -> None:
    ready = station.wait_for("ready")
    home = tmp_path / "phone"
    assert run([command("medic-phone"), "init", "--home", str(home)]).returncode == 0
    said = run([command("medic-phone"), "say", "--home", str(home), "--chat", "c1", "hello"])
    assert said.returncode == 0
    phone = Proc([command("medic-phone"), "link", str(ready["pair_uri"]), "--home", str(home)])
    station.wait_for("paired")
    [session] = _open(kiosk_link(tmp_path))[1]["sessions"]
    page = session["page"]
    token = page.split("t=")[1]
    assert token not in "\n".join(station.lines), "the page token is never printed"
    parts = urlsplit(page)
    origin = f"http://{parts.netloc}"
    status, headers, body = _get(page)
    assert status == 200 and b"session.js" in body
    _assert_safe_headers(headers)
    ui_origin = "http://" + urlsplit(str(ready["ui"])).netloc
    assert f"frame-ancestors {ui_origin}" in headers["Content-Security-Policy"]
    assert _get(f"{origin}/")[0] == 403
    assert _get(f"{origin}/?t=wrong")[0] == 403
    assert _get(page, {"Host": "attacker.example"})[0] == 400
    for bad_origin, query in (("http://evil.example", f"t={token}"), (origin, "t=wrong")):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://{parts.netloc}/live?{query}", origin=bad_origin)
        assert refused.value.response.status_code == 403
    with connect(f"ws://{parts.netloc}/live?t={token}", origin=origin) as ws:
        kinds = _until(ws, "link")
        assert [k["type"] for k in kinds][:3] == ["hello", "mirror", "link"]
        assert kinds[1]["messages"][0]["body"] == "hello"
        ws.send("not json")
        assert _until(ws, "error")[-1]["message"] == "not JSON"  # a deadline may come first
        ws.send(json.dumps({"op": "send", "ref": 1, "text": ""}))
        error = _until(ws, "error")[-1]
        assert error["ref"] == 1 and "empty command" in error["message"]
        ws.send(json.dumps({"op": "send", "ref": 2, "text": "x" * 5000}))
        assert _until(ws, "error")[-1]["ref"] == 2
        ws.send(json.dumps({"op": "send", "ref": 3, "text": "typed here", "chat": "c1"}))
        assert _until(ws, "sent")[-1]["seq"] == 1
        ws.send(json.dumps({"op": "logout"}))
        assert _until(ws, "ended")[-1]["reason"] == "explicit"
    assert station.wait_for("logout")["reason"] == "explicit"
    phone.stop()


def _until(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    seen = []
    while True:
        message = json.loads(ws.recv(timeout=10))
        seen.append(message)
        if message["type"] == kind:
            return seen
