"""Finding stations on the LAN by mDNS (``_fieldstation._tcp.local.``)."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from medic_phone.errors import DiscoveryError
from tunnel.handshake import WIRE_VERSION

SERVICE_TYPE = "_fieldstation._tcp.local."


@dataclass(frozen=True, slots=True)
class DiscoveredStation:
    name: str
    addresses: tuple[str, ...]
    port: int
    offer_open: bool
    version: int
    tag: str


def _text(props: dict[bytes, bytes | None], key: str) -> str:
    value = props.get(key.encode())
    return value.decode("utf-8", "replace") if value else ""


async def discover(
    listen_for: float, *, interfaces: InterfaceChoice | list[str] = InterfaceChoice.All
) -> list[DiscoveredStation]:
    """Every station that answers within ``listen_for`` seconds (unsupported versions left out)."""
    names: set[str] = set()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            names.discard(name)
        else:
            names.add(name)

    azc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
    browser = AsyncServiceBrowser(azc.zeroconf, SERVICE_TYPE, handlers=[on_change])
    try:
        await asyncio.sleep(listen_for)
        found: list[DiscoveredStation] = []
        for name in sorted(names):
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if not await info.async_request(azc.zeroconf, 1000):
                continue
            props = info.properties or {}
            version_text = _text(props, "v")
            version = int(version_text) if version_text.isdigit() else 0
            if version != WIRE_VERSION or info.port is None:
                continue
            found.append(
                DiscoveredStation(
                    name=_text(props, "name") or name.removesuffix("." + SERVICE_TYPE),
                    addresses=tuple(socket.inet_ntoa(a) for a in info.addresses),
                    port=info.port,
                    offer_open=_text(props, "offer") == "1",
                    version=version,
                    tag=_text(props, "tag"),
                )
            )
        return found
    finally:
        await browser.async_cancel()
        await azc.async_close()


async def find_station(
    name: str | None,
    listen_for: float,
    *,
    interfaces: InterfaceChoice | list[str] = InterfaceChoice.All,
) -> DiscoveredStation:
    stations = await discover(listen_for, interfaces=interfaces)
    if name is not None:
        stations = [s for s in stations if s.name == name]
        if not stations:
            raise DiscoveryError(f"no station named {name!r} answered on the LAN")
    if not stations:
        raise DiscoveryError("no station answered on the LAN (use --connect HOST:PORT?)")
    if len(stations) > 1:
        listed = ", ".join(sorted(s.name for s in stations))
        raise DiscoveryError(f"several stations answered ({listed}): choose one with --station")
    return stations[0]
