"""The kiosk's pairing screen, served by the supervisor on 127.0.0.1.

It shows the open offer (a QR code of the ``fieldstation://`` URI, the short code, the
station's name) and one tab per paired medic. A tab frames that session's own page,
which the session's worker serves from its own origin: the supervisor hands the browser
the page's address and never sees what the page shows.

The page itself (``/``, its script and style) holds nothing and is served to anyone on
127.0.0.1. Its live channel and its QR code answer only a page that spent a one-use
launch link or holds the page key it got for one (see ``station.kiosk.screen_keys``),
because the live state names every session page with its token. The screen's address
(``url``) carries no key: it is what ``ready``, ``status`` and the logs show.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from station.errors import ConfigError
from station.kiosk.http import (
    ParsedRequest,
    accept_limits,
    asset_response,
    close_server,
    live_refusal,
    loopback_host_ok,
    loopback_origin,
    page_csp,
    parse_request,
    refuse,
    respond,
)
from station.kiosk.screen_keys import ScreenKeys

MAX_VIEWERS = 8

State = Callable[[], dict[str, Any]]
OfferUri = Callable[[str], str | None]


class PairingScreen:
    def __init__(self, *, port: int, state: State, offer_uri: OfferUri) -> None:
        self.keys = ScreenKeys()
        self.port = port
        self._state = state
        self._offer_uri = offer_uri
        self._server: Server | None = None
        self._viewers: dict[ServerConnection, str] = {}  # open screen -> its label
        # Set when a live channel is accepted, read by its handler: (a new page key to
        # hand over, or None for a page that already holds one; the page's label).
        self._granted: weakref.WeakKeyDictionary[ServerConnection, tuple[str | None, str]] = (
            weakref.WeakKeyDictionary()
        )
        self._closing: set[asyncio.Task[None]] = set()
        self._opened: deque[str] = deque(maxlen=64)  # labels whose link was spent
        self._last: str | None = None

    @property
    def origin(self) -> str:
        return loopback_origin(self.port)

    @property
    def url(self) -> str:
        """The screen's address, without any key: safe to print and to log."""
        return f"{self.origin}/"

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def launch_link(self, kind: str = "link") -> tuple[str, str, float]:
        """A fresh one-use link to the screen: (link, its page's label, seconds it works)."""
        launch = self.keys.launch(kind)
        return f"{self.origin}/#launch={launch.token}", launch.label, self.keys.ttl

    def viewers_of(self, label: str) -> int:
        return sum(1 for v in self._viewers.values() if v == label)

    def opened(self, label: str) -> bool:
        """Whether the launch link of this label was spent (its page opened once)."""
        return label in self._opened

    def revoke(self, label: str) -> None:
        """The page of this label loses its key; its open channels close."""
        self.keys.revoke(label)
        self._close_labels([label])

    def _close_labels(self, labels: list[str]) -> None:
        for ws, label in list(self._viewers.items()):
            if label in labels:
                task = asyncio.get_running_loop().create_task(self._close(ws))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def _close(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.close(4001, "this screen's key was revoked")

    def csp(self) -> str:
        return page_csp(self.port, frame_src="http://127.0.0.1:*")

    async def start(self) -> None:
        try:
            self._server = await serve(
                self._live,
                "127.0.0.1",
                self.port,
                process_request=self._http,
                max_size=4096,
                compression=None,
                **accept_limits("pairing_screen"),
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"UI port {self.port} on 127.0.0.1 is already in use (choose --ui-port)"
                ) from None
            raise ConfigError(f"cannot serve the kiosk page on port {self.port}: {exc}") from None
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])

    async def changed(self) -> None:
        """Push the state to every open screen if it differs from the last push."""
        data = json.dumps(self._state(), separators=(",", ":"))
        if data == self._last:
            return
        self._last = data
        for ws in list(self._viewers):
            with contextlib.suppress(ConnectionClosed):
                await ws.send(data)

    async def close(self) -> None:
        await close_server(self._server, 2.0)

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        req = parse_request(request)
        csp = self.csp()
        if not loopback_host_ok(req.host, self.port):
            return refuse(400, "the kiosk page is served to 127.0.0.1 only", csp)
        if req.path in ("/pairing.js", "/kiosk.css"):
            return asset_response(req.path[1:], csp)
        if req.path == "/":
            return asset_response("pairing.html", csp)
        if req.path == "/live" and req.upgrade:
            return self._admit(connection, req, csp)
        label = self.keys.label_of(req.query.get("k", ""))
        if label is None:
            return refuse(403, "wrong or missing page key (run `station open` for a link)", csp)
        if req.path == "/qr.svg":
            uri = self._offer_uri(req.query.get("o", ""))
            if uri is None:
                return refuse(404, "that offer has rotated", csp)
            return respond(200, qr_svg(uri), "image/svg+xml", csp)
        return refuse(404, "not found", csp)

    def _admit(self, connection: ServerConnection, req: ParsedRequest, csp: str) -> Response | None:
        """A live channel opens with a page key, or by spending a launch token."""
        refused = live_refusal(
            req, port=self.port, open_now=len(self._viewers), limit=MAX_VIEWERS, csp=csp
        )
        if refused is not None:
            return refused  # before a launch token is spent: it still works after this
        if "k" in req.query:
            label = self.keys.label_of(req.query["k"])
            if label is None:
                return refuse(403, "wrong or revoked page key (run `station open`)", csp)
            self._granted[connection] = (None, label)
            return None
        spent = self.keys.spend(req.query.get("launch", ""))
        if spent is None:
            return refuse(403, "this launch link was used or has expired (run `station open`)", csp)
        key, label, evicted = spent
        self._opened.append(label)
        self._close_labels(evicted)
        self._granted[connection] = (key, label)
        return None

    async def _live(self, ws: ServerConnection) -> None:
        granted = self._granted.pop(ws, None)
        if granted is None:
            await ws.close(4001, "not admitted")
            return
        key, label = granted
        self._viewers[ws] = label
        try:
            if key is not None:
                await ws.send(json.dumps({"type": "key", "key": key}))
            await ws.send(json.dumps(self._state(), separators=(",", ":")))
            async for _ in ws:
                pass  # the screen only listens
        except ConnectionClosed:
            pass
        finally:
            self._viewers.pop(ws, None)


def qr_svg(uri: str) -> bytes:
    """The offer as an SVG QR code: dark on white, a quiet zone, no script, no title."""
    # Imported when a QR is first drawn: segno's writers pull in urllib.request (with
    # http.client and email), ~1.4 MB that the supervisor otherwise never needs.
    import segno

    buffer = io.BytesIO()
    segno.make(uri, error="m").save(
        buffer, kind="svg", scale=8, border=4, dark="#000", light="#fff", xmldecl=False
    )
    return buffer.getvalue()
