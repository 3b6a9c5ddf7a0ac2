"""Announcing the station on the LAN: ``_fieldstation._tcp.local.`` over zeroconf.

The TXT record says the protocol version, the station's name, a random tag made at
start, and whether a pairing offer is open -- never anything about a person. Leaving
sends goodbye packets; a change of the host's addresses is re-announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket

from zeroconf import InterfaceChoice, IPVersion, NonUniqueNameException
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from station.net import lan_addresses
from tunnel.handshake import WIRE_VERSION

SERVICE_TYPE = "_fieldstation._tcp.local."
ADDRESS_CHECK_INTERVAL = 5.0


def txt_record(name: str, tag: str, offer_open: bool) -> dict[str, str]:
    return {"v": str(WIRE_VERSION), "name": name, "tag": tag, "offer": "1" if offer_open else "0"}


class StationAdvertiser:
    def __init__(
        self,
        *,
        name: str,
        port: int,
        addresses: list[str] | None = None,
        interfaces: InterfaceChoice | list[str] = InterfaceChoice.All,
    ) -> None:
        self.name = name
        self.port = port
        self.tag = secrets.token_hex(4)
        self._fixed = addresses
        self._interfaces = interfaces
        self._offer_open = False
        self._zc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._watch: asyncio.Task[None] | None = None

    def _addresses(self) -> list[str]:
        return list(self._fixed) if self._fixed is not None else lan_addresses()

    def _make_info(self, addresses: list[str]) -> AsyncServiceInfo:
        instance = self._info.name if self._info is not None else f"{self.name}.{SERVICE_TYPE}"
        return AsyncServiceInfo(
            SERVICE_TYPE,
            instance,
            port=self.port,
            properties=txt_record(self.name, self.tag, self._offer_open),
            addresses=[socket.inet_aton(a) for a in addresses],
            server=f"fieldstation-{self.tag}.local.",
        )

    async def start(self, *, offer_open: bool = False) -> None:
        self._offer_open = offer_open
        self._zc = AsyncZeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
        self._current = self._addresses()
        self._info = self._make_info(self._current)
        try:
            await self._zc.async_register_service(self._info, allow_name_change=True)
        except NonUniqueNameException:
            await self._zc.async_register_service(self._info, allow_name_change=True)
        if self._fixed is None:
            self._watch = asyncio.create_task(self._watch_addresses())

    async def set_offer_open(self, offer_open: bool) -> None:
        if offer_open == self._offer_open or self._zc is None:
            return
        self._offer_open = offer_open
        await self._update(self._current)

    async def _update(self, addresses: list[str]) -> None:
        assert self._zc is not None
        self._info = self._make_info(addresses)
        await self._zc.async_update_service(self._info)

    async def _watch_addresses(self) -> None:
        while True:
            await asyncio.sleep(ADDRESS_CHECK_INTERVAL)
            found = self._addresses()
            if sorted(found) != sorted(self._current):
                self._current = found
                await self._update(found)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._zc is not None:
            if self._info is not None:
                await self._zc.async_unregister_service(self._info)  # goodbye packets
            await self._zc.async_close()
            self._zc = None
