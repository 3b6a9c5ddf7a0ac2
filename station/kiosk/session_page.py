"""One session's page on the big screen, served by that session's worker.

The worker is the only process that holds the session's plaintext, so it serves the
page that shows it: a ``websockets`` server on 127.0.0.1 and a random port, answering
GET for the page and its assets and a WebSocket at ``/live`` that carries the mirror,
the link state, the logout countdown and what the medic types. The supervisor's
pairing screen frames this page; it never sees what flows through it.

Only a browser that holds the page's token (given to the pairing screen, which holds
the kiosk's own key) may open the live channel, and only from this page's own origin.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from station.kiosk.http import (
    accept_limits,
    asset_response,
    close_server,
    live_refusal,
    loopback_host_ok,
    loopback_origin,
    new_token,
    page_csp,
    parse_request,
    refuse,
    same_token,
)

log = logging.getLogger(__name__)

MAX_CLIENTS = 4  # the kiosk's own tab, plus a reload racing the old one
MAX_INPUT = 16 * 1024  # one typed message and its envelope

Welcome = Callable[[], Awaitable[list[dict[str, Any]]]]
Request_ = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class SessionPage:
    """The page server. ``welcome`` gives a new tab the whole current state;
    ``on_request`` answers what the page sends (``send``, ``logout``, ``activity``)."""

    def __init__(self, *, framed_by: str | None, welcome: Welcome, on_request: Request_) -> None:
        self.token = new_token()
        self.port = 0
        self._framed_by = framed_by
        self._welcome = welcome
        self._on_request = on_request
        self._server: Server | None = None
        self._clients: set[ServerConnection] = set()
        # Pages still being welcomed, and what was broadcast meanwhile (sent after).
        self._joining: dict[ServerConnection, list[str]] = {}

    @property
    def url(self) -> str:
        return f"{loopback_origin(self.port)}/?t={self.token}"

    @property
    def viewers(self) -> int:
        return len(self._clients) + len(self._joining)

    def csp(self) -> str:
        return page_csp(self.port, frame_ancestors=self._framed_by or "'none'")

    async def start(self) -> None:
        self._server = await serve(
            self._live,
            "127.0.0.1",
            0,
            process_request=self._http,
            max_size=MAX_INPUT,
            max_queue=16,
            compression=None,
            **accept_limits("session_page"),
        )
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])

    def broadcast(self, message: dict[str, Any]) -> None:
        # Written without waiting on any one page: a stalled tab must not hold up the
        # session's mirror (its buffer is bounded by the keepalive timing it out).
        data = json.dumps(message, separators=(",", ":"))
        for backlog in self._joining.values():
            backlog.append(data)
        broadcast(self._clients, data)

    async def close(self, reason: str, undelivered: list[int] | None = None) -> None:
        """Tell every open page the session ended (it clears itself, keeping only the
        seqs that never reached the phone), then stop serving."""
        self.broadcast({"type": "ended", "reason": reason, "undelivered": undelivered or []})
        for ws in [*self._clients, *self._joining]:
            with contextlib.suppress(ConnectionClosed):
                await ws.close(1000, "session ended")
        await close_server(self._server, 1.0)

    # -- HTTP --------------------------------------------------------------------------

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        req = parse_request(request)
        csp = self.csp()
        if not loopback_host_ok(req.host, self.port):
            return refuse(400, "this page is served to 127.0.0.1 only", csp)
        if req.path == "/live" and req.upgrade:
            if not same_token(req.query.get("t"), self.token):
                return refuse(403, "wrong or missing session token", csp)
            return live_refusal(
                req, port=self.port, open_now=self.viewers, limit=MAX_CLIENTS, csp=csp
            )
        if req.path == "/":
            if not same_token(req.query.get("t"), self.token):
                return refuse(403, "wrong or missing session token", csp)
            return asset_response("session.html", csp)
        if req.path in ("/session.js", "/kiosk.css"):
            return asset_response(req.path[1:], csp)
        return refuse(404, "not found", csp)

    # -- the live channel --------------------------------------------------------------

    async def _live(self, ws: ServerConnection) -> None:
        self._joining[ws] = []
        try:
            welcome = [json.dumps(m, separators=(",", ":")) for m in await self._welcome()]
            # From here to joining the broadcast nothing awaits: what changed while the
            # welcome was read follows it, in order, and nothing can slip between. A
            # change the welcome already held comes twice, which is harmless: the page
            # keeps chats and messages by id.
            for data in [*welcome, *self._joining.pop(ws)]:
                broadcast([ws], data)
            self._clients.add(ws)
            async for raw in ws:
                reply = await self._handle(raw)
                if reply is not None:
                    await ws.send(json.dumps(reply, separators=(",", ":")))
        except ConnectionClosed:
            pass
        finally:
            self._joining.pop(ws, None)
            self._clients.discard(ws)

    async def _handle(self, raw: str | bytes) -> dict[str, Any] | None:
        try:
            request = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return {"type": "error", "message": "not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return {"type": "error", "message": "a request is an object with an op"}
        return await self._on_request(request)
