"""Noticing at once when this host's interfaces or addresses change.

A route netlink socket subscribed to link and IPv4 address changes wakes a watcher,
which then reads the state again (``lan.addresses``) and reports what changed: an
interface that came back (carrier), an address that went or came. Where netlink is not
available the watcher polls instead. Both are bounded: one socket, one small read
buffer, one snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from lan.addresses import InterfaceAddress, interface_addresses

log = logging.getLogger(__name__)

_RTMGRP_LINK = 0x1
_RTMGRP_IPV4_IFADDR = 0x10
POLL_INTERVAL = 1.0  # without netlink
SETTLE = 0.02  # a burst of netlink messages is read as one change


@dataclass(frozen=True, slots=True)
class NetChange:
    came_up: frozenset[str]  # interfaces that are up now and were not
    went_down: frozenset[str]
    added: frozenset[str]  # addresses usable now that were not (new, or back up)
    removed: frozenset[str]  # addresses no longer configured at all (not merely down)
    addresses: tuple[InterfaceAddress, ...]  # the state now


def _snapshot() -> tuple[InterfaceAddress, ...]:
    return tuple(interface_addresses())


def diff(before: tuple[InterfaceAddress, ...], after: tuple[InterfaceAddress, ...]) -> NetChange:
    up_before = {a.interface for a in before if a.up}
    up_after = {a.interface for a in after if a.up}
    live_before = {a.address for a in before if a.up}
    live_after = {a.address for a in after if a.up}
    # A carrier that blinks keeps its address: only an address that is gone is a roam.
    gone = {a.address for a in before} - {a.address for a in after}
    return NetChange(
        frozenset(up_after - up_before),
        frozenset(up_before - up_after),
        frozenset(live_after - live_before),
        frozenset(gone),
        after,
    )


def _open_netlink() -> socket.socket | None:
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except (OSError, AttributeError):
        return None
    try:
        sock.bind((0, _RTMGRP_LINK | _RTMGRP_IPV4_IFADDR))
        sock.setblocking(False)
    except OSError:
        sock.close()
        return None
    return sock


class NetWatch:
    """Calls ``on_change`` (on the event loop) each time interfaces or addresses change."""

    def __init__(self, on_change: Callable[[NetChange], None]) -> None:
        self._on_change = on_change
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.state: tuple[InterfaceAddress, ...] = ()
        self.using_netlink = False

    def start(self) -> None:
        self.state = _snapshot()
        self._sock = _open_netlink()
        if self._sock is not None:
            self.using_netlink = True
            asyncio.get_running_loop().add_reader(self._sock.fileno(), self._readable)
        self._task = asyncio.create_task(self._run())

    def _readable(self) -> None:
        assert self._sock is not None
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self._sock.recv(65536):  # the content is not needed: we read the state
                pass
        self._wake.set()

    async def _run(self) -> None:
        while True:
            if self.using_netlink:
                await self._wake.wait()
                await asyncio.sleep(SETTLE)
                self._wake.clear()
            else:
                await asyncio.sleep(POLL_INTERVAL)
            now = _snapshot()
            change = diff(self.state, now)
            self.state = now
            if change.came_up or change.went_down or change.added or change.removed:
                try:
                    self._on_change(change)
                except Exception:  # a watcher's bug must not stop watching
                    log.exception("network change handler failed")

    async def stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
