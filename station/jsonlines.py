"""JSON lines over a Unix socket: one request object per line, one reply per line.

Used by the supervisor's and the workers' control sockets and by the ``station``
commands. A line over the limit is answered with an error and skipped to its end, so
the requests after it on the same connection are still answered, each on its own.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from station.errors import ControlError

MAX_LINE = 64 * 1024
_CHUNK = 64 * 1024

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


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


async def serve_json_lines(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
) -> None:
    """Answer one JSON object per line with one JSON object per line, until EOF."""
    try:
        lines = _Lines(reader, MAX_LINE)
        while (line := await lines.next()) is not None:
            reply: dict[str, Any]
            if isinstance(line, _Oversized):
                reply = {"ok": False, "error": f"request over {MAX_LINE} bytes"}
            else:
                try:
                    request = json.loads(line)
                    op = request["op"]
                    if not isinstance(op, str):
                        raise TypeError(op)
                except (ValueError, KeyError, TypeError):
                    reply = {"ok": False, "error": "malformed request"}
                else:
                    reply = await handler(op, request)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
    except ConnectionError:
        pass  # a client that went away
    finally:
        writer.close()


class JsonLinesClient:
    """A blocking client for the CLI: one connection, many requests in turn."""

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
            raise ControlError(f"no station is running (no control socket at {path})") from None
        except ConnectionRefusedError:
            self._sock.close()
            raise ControlError(f"the station at {path} is gone (stale control socket)") from None
        except OSError as exc:
            self._sock.close()
            raise ControlError(f"cannot reach the station at {path}: {exc.strerror}") from None

    def __enter__(self) -> JsonLinesClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        try:
            self._sock.sendall(json.dumps(message).encode() + b"\n")
            while b"\n" not in self._buffer:
                chunk = self._sock.recv(_CHUNK)
                if not chunk:
                    raise ControlError("the station closed the control connection")
                self._buffer += chunk
        except TimeoutError:
            raise ControlError(
                f"the station at {self.path} did not answer in {self.timeout:.0f} s"
            ) from None
        except OSError as exc:
            raise ControlError(f"lost the station at {self.path}: {exc.strerror}") from None
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            reply = json.loads(line)
        except ValueError:
            raise ControlError("the station sent a malformed reply") from None
        if not isinstance(reply, dict):
            raise ControlError("the station sent a malformed reply")
        return reply


def request(path: Path, message: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
    """One request on its own connection."""
    with JsonLinesClient(path, timeout=timeout) as client:
        return client.request(message)
