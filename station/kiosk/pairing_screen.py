"""The kiosk's pairing screen, served by the supervisor on 127.0.0.1.

It shows the open offer (a QR code of the ``fieldstation://`` URI, the short code, the
station's name) and one tab per paired medic. A tab frames that session's own page,
which the session's worker serves from its own origin: the supervisor hands the browser
the page's address and never sees what the page shows.

The screen's URL carries the kiosk key (``?k=``), printed by ``station start`` and given
to the browser that ``--kiosk`` launches. Without it nothing here answers, because the
live state holds the session pages' tokens.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
from collections.abc import Callable
from typing import Any

import segno
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from station.errors import ConfigError
from station.kiosk.http import (
    asset_response,
    close_server,
    live_refusal,
    loopback_host_ok,
    loopback_origin,
    new_token,
    page_csp,
    parse_request,
    refuse,
    respond,
    same_token,
)

MAX_VIEWERS = 8

State = Callable[[], dict[str, Any]]
OfferUri = Callable[[str], str | None]


class PairingScreen:
    def __init__(self, *, port: int, state: State, offer_uri: OfferUri) -> None:
        self.key = new_token()
        self.port = port
        self._state = state
        self._offer_uri = offer_uri
        self._server: Server | None = None
        self._viewers: set[ServerConnection] = set()
        self._last: str | None = None

    @property
    def origin(self) -> str:
        return loopback_origin(self.port)

    @property
    def url(self) -> str:
        return f"{self.origin}/?k={self.key}"

    @property
    def viewers(self) -> int:
        return len(self._viewers)

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
        if not same_token(req.query.get("k"), self.key):
            return refuse(
                403, "wrong or missing kiosk key (use the URL station start printed)", csp
            )
        if req.path == "/live" and req.upgrade:
            return live_refusal(
                req, port=self.port, open_now=len(self._viewers), limit=MAX_VIEWERS, csp=csp
            )
        if req.path == "/":
            return asset_response("pairing.html", csp)
        if req.path == "/qr.svg":
            uri = self._offer_uri(req.query.get("o", ""))
            if uri is None:
                return refuse(404, "that offer has rotated", csp)
            return respond(200, qr_svg(uri), "image/svg+xml", csp)
        return refuse(404, "not found", csp)

    async def _live(self, ws: ServerConnection) -> None:
        self._viewers.add(ws)
        try:
            await ws.send(json.dumps(self._state(), separators=(",", ":")))
            async for _ in ws:
                pass  # the screen only listens
        except ConnectionClosed:
            pass
        finally:
            self._viewers.discard(ws)


def qr_svg(uri: str) -> bytes:
    """The offer as an SVG QR code: dark on white, a quiet zone, no script, no title."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(
        buffer, kind="svg", scale=8, border=4, dark="#000", light="#fff", xmldecl=False
    )
    return buffer.getvalue()
