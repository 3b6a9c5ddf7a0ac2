"""JSON lines over a Unix socket, typed: one request per line, one reply per line.

The one server and the one client for every local control socket (the supervisor's,
each worker's, each running phone link's). A line over the limit or one that is not a
request of that socket is answered with a ``Failure`` and skipped, so the requests
after it on the same connection are still answered, each on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from wire.codec import Registry
from wire.control import Failure, decode_reply, encode_reply
from wire.errors import WireError

MAX_LINE = 64 * 1024
_CHUNK = 64 * 1024
R = TypeVar("R")

Handler = Callable[[Any], Awaitable[object]]


class Unreachable(WireError):
    """No one answers on the socket, or the answer broke off (the server's side)."""


class _Oversized:
    def __init__(self, length: int) -> None:
        self.length = length


class _Lines:
    """Lines from a stream; a line over the limit is consumed and reported by length."""

    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        self._reader = reader
        self._limit = limit
        self._buffer = bytearray()

    async def next(self) -> bytes | _Oversized | None:
        dropped: int | None = None  # bytes of an over-long line skipped so far
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                if dropped is not None or end > self._limit:
                    return _Oversized((dropped or 0) + end)
                return line
            if dropped is not None or len(self._buffer) > self._limit:
                dropped = (dropped or 0) + len(self._buffer)
                self._buffer.clear()
            chunk = await self._reader.read(_CHUNK)
            if not chunk:
                if dropped is not None:
                    return _Oversized(dropped)
                rest, self._buffer = bytes(self._buffer), bytearray()
                return rest or None
            self._buffer += chunk


async def serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    requests: Registry,
    handler: Handler,
) -> None:
    """Answer each request line of ``requests`` with the handler's reply, until EOF."""
    try:
        lines = _Lines(reader, MAX_LINE)
        while (line := await lines.next()) is not None:
            reply: object
            if isinstance(line, _Oversized):
                reply = Failure(f"request over {MAX_LINE} bytes ({line.length:,})")
            else:
                try:
                    request = requests.decode(line)
                except WireError as exc:
                    reply = Failure(f"malformed request: {exc}")
                else:
                    reply = await handler(request)
            writer.write(encode_reply(reply) + b"\n")
            await writer.drain()
    except ConnectionError:
        pass  # a client that went away
    finally:
        writer.close()


async def listen(path: Path, requests: Registry, handler: Handler) -> asyncio.AbstractServer:
    """A 0600 Unix socket at ``path`` (what was there is replaced) serving ``requests``."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    old = os.umask(0o177)
    try:
        return await asyncio.start_unix_server(
            lambda r, w: serve(r, w, requests, handler), path=str(path)
        )
    finally:
        os.umask(old)


class Client:
    """A blocking client for the CLIs: one connection, many requests in turn."""

    def __init__(self, path: Path, *, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._buffer = b""
        try:
            self._sock.connect(str(path))
        except FileNotFoundError:
            self._sock.close()
            raise Unreachable(f"nothing listens at {path}") from None
        except ConnectionRefusedError:
            self._sock.close()
            raise Unreachable(f"{path} is stale: its process is gone") from None
        except OSError as exc:
            self._sock.close()
            raise Unreachable(f"cannot reach {path}: {exc.strerror}") from None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def ask(self, request: object, requests: Registry, expected: type[R]) -> R | Failure:
        """The typed reply to ``request`` (or a ``Failure``); ``WireError`` otherwise."""
        try:
            self._sock.sendall(requests.encode(request) + b"\n")
            while b"\n" not in self._buffer:
                chunk = self._sock.recv(_CHUNK)
                if not chunk:
                    raise Unreachable(f"{self.path} closed the connection")
                self._buffer += chunk
        except TimeoutError:
            raise Unreachable(f"{self.path} did not answer in {self.timeout:.0f} s") from None
        except OSError as exc:
            raise Unreachable(f"lost {self.path}: {exc.strerror}") from None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return decode_reply(line, expected)


def ask(
    path: Path, request: object, requests: Registry, expected: type[R], *, timeout: float = 10.0
) -> R | Failure:
    """One request on its own connection."""
    with Client(path, timeout=timeout) as client:
        return client.ask(request, requests, expected)
