"""Announcing the station on the LAN: ``_fieldstation._tcp.local.`` over zeroconf.

The TXT record says the protocol version, the station's name, a random tag made at
start, and whether a pairing offer is open -- never anything about a person. The A
records are exactly the addresses the station listens on that are up. Leaving sends
goodbye packets. When the host's addresses change the records change with them, and
when an interface comes back the station announces itself again at once, so phones
that lost it reconnect without waiting for their next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket

from zeroconf import InterfaceChoice, IPVersion, NonUniqueNameException
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from tunnel.handshake import WIRE_VERSION

log = logging.getLogger(__name__)

SERVICE_TYPE = "_fieldstation._tcp.local."
MDNS_PORT = 5353
MAX_UNICAST = 32  # phones told directly when the station is back


def txt_record(name: str, tag: str, offer_open: bool) -> dict[str, str]:
    return {"v": str(WIRE_VERSION), "name": name, "tag": tag, "offer": "1" if offer_open else "0"}


class StationAdvertiser:
    def __init__(
        self,
        *,
        name: str,
        port: int,
        addresses: list[str],
        interfaces: InterfaceChoice | list[str] = InterfaceChoice.All,
    ) -> None:
        self.name = name
        self.port = port
        self.tag = secrets.token_hex(4)
        self._addresses = list(addresses)
        self._interfaces = interfaces
        self._offer_open = False
        self._zc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._lock = asyncio.Lock()  # one update on the wire at a time
        self._joined: set[str] = set()  # addresses whose interfaces zeroconf listens on
        self.announcements = 0

    @property
    def addresses(self) -> list[str]:
        return list(self._addresses)

    def _make_info(self) -> AsyncServiceInfo:
        instance = self._info.name if self._info is not None else f"{self.name}.{SERVICE_TYPE}"
        return AsyncServiceInfo(
            SERVICE_TYPE,
            instance,
            port=self.port,
            properties=txt_record(self.name, self.tag, self._offer_open),
            addresses=[socket.inet_aton(a) for a in self._addresses],
            server=f"fieldstation-{self.tag}.local.",
        )

    async def start(self, *, offer_open: bool = False) -> None:
        self._offer_open = offer_open
        self._zc = AsyncZeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
        self._joined = set(self._addresses)
        self._info = self._make_info()
        try:
            await self._zc.async_register_service(self._info, allow_name_change=True)
        except NonUniqueNameException:
            await self._zc.async_register_service(self._info, allow_name_change=True)
        self.announcements += 1

    async def set_offer_open(self, offer_open: bool) -> None:
        if offer_open == self._offer_open or self._zc is None:
            return
        self._offer_open = offer_open
        await self._update()

    async def set_addresses(self, addresses: list[str]) -> None:
        """The station's reachable addresses changed: new sockets, new records."""
        if self._zc is None or addresses == self._addresses:
            return
        new = set(addresses) - set(self._addresses) - self._joined
        self._addresses = list(addresses)
        if new and self._interfaces is InterfaceChoice.All:
            async with self._lock:
                with contextlib.suppress(OSError, RuntimeError):
                    # Join the mDNS group on interfaces that appeared since the start.
                    await self._zc.zeroconf.async_update_interfaces()
                self._joined |= new
        await self._update()

    async def reannounce(self, *, unicast_to: list[str] | tuple[str, ...] = ()) -> None:
        """An interface came back: say where the station is at once, to the LAN and to
        each phone that was linked. The unicast copy also makes the station resolve
        the phone's address, which refreshes the phone's own neighbour entry for the
        station: its next SYN leaves at once instead of waiting for an ARP retry."""
        await self._update()
        if self._zc is None or self._info is None:
            return
        zc = self._zc.zeroconf
        packet = zc.generate_service_broadcast(self._info, None)
        for address in unicast_to[:MAX_UNICAST]:
            with contextlib.suppress(OSError, RuntimeError):
                zc.async_send(packet, address, MDNS_PORT)

    async def _update(self) -> None:
        if self._zc is None:
            return
        async with self._lock:
            self._info = self._make_info()
            log.debug("mDNS: announcing %s at %s", self.name, ",".join(self._addresses))
            try:
                await self._zc.async_update_service(self._info)
            except (OSError, RuntimeError) as exc:
                log.info("mDNS update failed: %s", type(exc).__name__)
                return
            self.announcements += 1

    async def stop(self) -> None:
        if self._zc is not None:
            if self._info is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    await self._zc.async_unregister_service(self._info)  # goodbye packets
            await self._zc.async_close()
            self._zc = None
