"""One phone's WebSocket as the supervisor relays it.

Records for the phone leave from a bounded buffer in the socket's own task, each send
and the final close under a deadline (``tunnel.aio.websocket.BufferedSocket``). A dead
link (WiFi gone: sends block on a full TCP buffer, a close waits for a handshake that
never comes) therefore holds up only this socket: never the worker's pipe, the policy,
the control socket or another session. A socket that cannot keep up is aborted; the
phone resumes on a new one.
"""

from __future__ import annotations

from tunnel.aio.websocket import BufferedSocket


class PhoneSocket(BufferedSocket):
    def send(self, data: bytes) -> None:
        """Queue a record for the phone; never waits."""
        self.push(data)

    def close(self, code: int, reason: str) -> None:
        """Close after what is queued has gone (or at the deadlines); never waits."""
        self.close_soon(code, reason)
