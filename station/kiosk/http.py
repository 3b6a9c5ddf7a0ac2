"""The little HTTP the kiosk pages need, answered by a ``websockets`` server.

Both kiosk servers (the supervisor's pairing screen and each worker's session page) are
``websockets`` servers on 127.0.0.1 that also answer plain GETs for their page and its
assets through ``process_request``. Everything here is about answering those safely:

* every response carries ``Cache-Control: no-store``, a strict Content-Security-Policy,
  ``nosniff``, ``no-referrer`` and no cookies;
* the ``Host`` header must name the server's own loopback address, so a web page on
  the internet cannot reach these servers through DNS rebinding;
* the capability in the query string (``k`` or ``t``) is compared in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from station.accept import kiosk_gate, serve_options

ASSET_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}

_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}


def new_token() -> str:
    return secrets.token_urlsafe(24)


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    path: str
    query: dict[str, str]
    host: str | None
    origin: str | None
    upgrade: bool


def parse_request(request: Request) -> ParsedRequest:
    parts = urlsplit(request.path)
    query = {k: v[0] for k, v in parse_qs(parts.query).items() if v}
    upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
    return ParsedRequest(
        parts.path, query, request.headers.get("Host"), request.headers.get("Origin"), upgrade
    )


def read_asset(name: str) -> bytes:
    """A page or script shipped inside the package (no CDN: the kiosk works offline)."""
    return resources.files("station.kiosk").joinpath("assets", name).read_bytes()


def page_csp(port: int, *, frame_ancestors: str = "'none'", frame_src: str | None = None) -> str:
    """The pages' policy: only this server's own scripts, styles, images and live
    channel; no plugins, forms or base rewriting. ``frame_*`` open the one framing
    the kiosk needs (the pairing screen frames each session's page)."""
    framing = f"frame-src {frame_src}; " if frame_src else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src ws://127.0.0.1:{port}; {framing}frame-ancestors {frame_ancestors}; "
        "base-uri 'none'; form-action 'none'"
    )


def security_headers(csp: str) -> list[tuple[str, str]]:
    return [
        ("Cache-Control", "no-store"),
        ("Pragma", "no-cache"),
        ("Content-Security-Policy", csp),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), usb=(), serial=()"),
    ]


def respond(status: int, body: bytes, content_type: str, csp: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            *security_headers(csp),
        ]
    )
    return Response(status, _REASONS.get(status, "Error"), headers, body)


def refuse(status: int, text: str, csp: str) -> Response:
    return respond(status, text.encode() + b"\n", "text/plain; charset=utf-8", csp)


def asset_response(name: str, csp: str) -> Response:
    suffix = name[name.rfind(".") :]
    return respond(200, read_asset(name), ASSET_TYPES[suffix], csp)


def loopback_host_ok(host: str | None, port: int) -> bool:
    """The browser asked for this server by its loopback address (no rebinding)."""
    return host == f"127.0.0.1:{port}"


def loopback_origin(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def live_refusal(
    req: ParsedRequest, *, port: int, open_now: int, limit: int, csp: str
) -> Response | None:
    """Why a WebSocket to ``/live`` is refused (another origin, too many open), or None."""
    if req.origin != loopback_origin(port):
        return refuse(403, "the live channel is for this page only", csp)
    if open_now >= limit:
        return refuse(403, f"too many open pages (at most {limit})", csp)
    return None


def accept_limits(name: str) -> dict[str, Any]:
    """``serve()`` keywords bounding connections not yet answered (half-open ones too),
    counted from the TCP accept, each with a short deadline (``station.accept``)."""
    return serve_options(kiosk_gate(name), proven_at_handshake=True)


async def close_server(server: Server | None, within: float) -> None:
    if server is not None:
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await server.wait_closed()
