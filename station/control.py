"""The station's local control: a Unix socket (mode 0600) speaking JSON lines.

The supervisor's socket answers ``status``, ``logout`` and ``route``; ``route`` names
the session worker's own socket, to which ``station send`` then talks directly, so
typed text never passes through the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station.errors import ConfigError, ControlError

if TYPE_CHECKING:
    from station.supervisor import Supervisor

MAX_LINE = 64 * 1024


class ControlServer:
    def __init__(self, path: Path, supervisor: Supervisor) -> None:
        self.path = path
        self._supervisor = supervisor
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        parent = self.path.parent
        try:
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = parent.lstat()
        except OSError as exc:
            raise ConfigError(f"cannot create control directory {parent}: {exc}") from None
        if parent.is_symlink() or info.st_uid != os.getuid():
            raise ConfigError(f"control directory {parent} is not ours: refusing to use it")
        if self.path.exists():
            if _is_live(self.path):
                raise ConfigError(
                    f"another station is running on control socket {self.path} (use --control)"
                )
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._handle, path=str(self.path), limit=MAX_LINE
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_json_lines(reader, writer, self._request)

    async def _request(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        sup = self._supervisor
        session = request.get("session")
        if op == "status":
            return {"ok": True, **sup.status()}
        if op in ("logout", "route"):
            matches = sup.find(session)
            if not matches:
                what = f"session {session}" if session else "paired session"
                return {"ok": False, "error": f"no {what} on this station"}
            if op == "route":
                if len(matches) > 1:
                    ids = ", ".join(str(m.info.session)[:16] for m in matches)
                    return {"ok": False, "error": f"several sessions ({ids}): choose --session"}
                info = matches[0].info
                return {"ok": True, "session": info.session, "control": info.control}
            if session is None and len(matches) > 1:
                ids = ", ".join(str(m.info.session)[:16] for m in matches)
                return {"ok": False, "error": f"several sessions ({ids}): choose --session"}
            ended = []
            for handle in matches:
                await sup.logout(handle, "explicit")
                ended.append(
                    {
                        "session": handle.info.session,
                        "undelivered": handle.info.undelivered
                        if handle.info.undelivered is not None
                        else handle.info.depth,
                    }
                )
            return {"ok": True, "ended": ended}
        return {"ok": False, "error": f"unknown op {op!r}"}


Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def serve_json_lines(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
) -> None:
    """Answer one JSON object per line with one JSON object per line, until EOF."""
    try:
        while line := await reader.readline():
            try:
                request = json.loads(line)
                op = request["op"]
                if not isinstance(op, str):
                    raise TypeError(op)
            except (ValueError, KeyError, TypeError):
                reply: dict[str, Any] = {"ok": False, "error": "malformed request"}
            else:
                reply = await handler(op, request)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, ValueError):
        pass  # a client that went away, or a line over the limit
    finally:
        writer.close()


def _is_live(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def request(path: Path, message: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
    """One synchronous JSON-lines request, for the CLI."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(MAX_LINE)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError:
        raise ControlError(f"no station is running (no control socket at {path})") from None
    except ConnectionRefusedError:
        raise ControlError(f"the station at {path} is gone (stale control socket)") from None
    except TimeoutError:
        raise ControlError(f"the station at {path} did not answer in {timeout:.0f} s") from None
    except OSError as exc:
        raise ControlError(f"cannot reach the station at {path}: {exc.strerror}") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError("the station sent a malformed reply") from None
    if not isinstance(reply, dict):
        raise ControlError("the station sent a malformed reply")
    return reply
