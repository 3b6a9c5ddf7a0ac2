"""One connection attempt to one candidate address: TCP, then the WebSocket upgrade.

Each stage fails in its own way, and the way says something about the network: no
answer to the TCP connect (unreachable, or isolated from the station), a refusal (no
station listens there), or a connection closed before the upgrade completed (a station
that is busy, or refuses connections it cannot authenticate yet). ``AttemptError``
carries the verdict for the dial plan and the words for the medic.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI

from medic_phone.dialplan import Candidate, Failure
from tunnel.aio.websocket import ws_options

CONNECT_TIMEOUT = 2.5  # the TCP connect (an isolated client gets no answer at all)
UPGRADE_TIMEOUT = 3.0  # the WebSocket upgrade once TCP is up


class AttemptError(Exception):
    def __init__(self, failure: Failure, error: str) -> None:
        super().__init__(error)
        self.failure = failure
        self.error = error


@dataclass(eq=False)
class Attempt:
    """One attempt's state, as the race sees it."""

    candidate: Candidate
    started: float
    task: asyncio.Task[None] | None = None
    ws: ClientConnection | None = None
    conn: int | None = None
    verdict: str | None = None  # won | failed | abandoned
    connecting: bool = True  # still in the TCP connect or the WebSocket upgrade


def classify(exc: BaseException) -> tuple[Failure, str]:
    """A failed TCP connect, in the dial plan's terms and in words."""
    if isinstance(exc, ConnectionRefusedError):
        return Failure.REFUSED, "connection refused"
    if isinstance(exc, TimeoutError):
        return Failure.UNREACHABLE, f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(exc, OSError) and exc.errno is not None:
        return Failure.UNREACHABLE, errno.errorcode.get(exc.errno, str(exc.errno)).lower()
    return Failure.UNREACHABLE, type(exc).__name__


async def _tcp(candidate: Candidate) -> socket.socket:
    loop = asyncio.get_running_loop()
    try:
        # An address needs no resolver, so no hop to the executor's thread (~0.2 ms, more
        # on a busy phone) on the way back from every drop.
        infos = socket.getaddrinfo(
            candidate.host, candidate.port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
        )
    except socket.gaierror:  # a name: resolved off the loop
        infos = await loop.getaddrinfo(candidate.host, candidate.port, type=socket.SOCK_STREAM)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_websocket(candidate: Candidate, *, max_record: int) -> ClientConnection:
    """The WebSocket to ``candidate``, or ``AttemptError`` saying which stage failed."""
    try:
        sock = await _tcp(candidate)
    except (OSError, TimeoutError) as exc:
        raise AttemptError(*classify(exc)) from None
    try:
        async with asyncio.timeout(UPGRADE_TIMEOUT):
            return await connect(
                candidate.url,
                sock=sock,
                open_timeout=None,
                **ws_options(max_record),  # type: ignore[arg-type]
            )
    except (OSError, TimeoutError, EOFError, InvalidHandshake, InvalidURI) as exc:
        sock.close()
        raise AttemptError(Failure.RESET, f"closed before the upgrade ({exc})") from None
