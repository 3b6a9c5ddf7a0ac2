"""The running link's control socket: what ``medic-phone`` asks a running link.

``info`` (for ``links`` and ``unlink``), ``decide`` (``confirm``/``discard`` of a
command kept apart), ``unlink`` (a confirmed logout, waiting up to ``wait`` seconds for
the station to answer), and ``changed`` (another process wrote to the store: push now).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING

from tunnel.session import PhoneEndpoint
from wire.control import (
    Changed,
    Decide,
    Failure,
    Info,
    InfoReply,
    LogoutDeadline,
    Noted,
    Unlink,
    UnlinkReply,
)

if TYPE_CHECKING:
    from medic_phone.node import PhoneNode

MAX_WAIT = 3600.0  # s: the longest an unlink may wait for the station


class ControlHandler:
    def __init__(self, node: PhoneNode) -> None:
        self._node = node

    def _endpoint(self) -> PhoneEndpoint:
        assert self._node.pump is not None
        endpoint = self._node.pump.endpoint
        assert isinstance(endpoint, PhoneEndpoint)
        return endpoint

    async def __call__(self, request: object) -> object:
        node = self._node
        match request:
            case Info():
                endpoint = self._endpoint()
                return InfoReply(
                    pid=os.getpid(),
                    station=endpoint.station or node.target_station,
                    session=node.link_id,
                    linked=endpoint.linked,
                    logout_pending=endpoint.logout_pending is not None,
                    policy=self.policy(),
                    last_contact=node.last_contact,
                    queued=endpoint.undelivered,
                )
            case Decide(seq, confirm):
                return await node.decide(seq, confirm=confirm)
            case Unlink(wait):
                if not 0 <= wait <= MAX_WAIT:
                    return Failure("wait must be 0 to 3600 seconds")
                return await self._unlink(wait)
            case Changed():
                node.changed_elsewhere()
                return Noted()
        return Failure(f"not a request of a phone link: {type(request).__name__}")

    def policy(self) -> LogoutDeadline | None:
        policy = self._node.news.policy
        return None if policy is None else LogoutDeadline(policy.logout_at, policy.reason)

    async def _unlink(self, wait: float) -> UnlinkReply:
        """Log the station out and say whether it heard: the session ends only when the
        station answers our Close; until then the logout is owed and goes again on
        every reconnection, also after ``wait`` has run out."""
        node = self._node
        pump, endpoint = node.pump, self._endpoint()
        assert pump is not None
        if endpoint.session_id is None:
            await pump.close("remote")  # not paired yet: just stop pairing
            return UnlinkReply(reached=False, paired=False)
        if endpoint.ended is None:
            await pump.close("remote", confirm=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await node.ended.wait()
        how = node.ended_how
        if how is not None and (how.confirmed or how.by_peer):
            return UnlinkReply(
                reached=True, already_ended=how.by_peer, reason=how.reason, station=endpoint.station
            )
        return UnlinkReply(
            reached=False,
            station=endpoint.station,
            waited_s=wait,
            last_contact=node.last_contact,
            policy=self.policy(),
        )
