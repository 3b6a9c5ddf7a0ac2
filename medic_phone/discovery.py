"""Finding stations on the LAN by mDNS (``_fieldstation._tcp.local.``).

mDNS can point, never decide. Anyone on the LAN can answer for any name, flush the
real station's records from a cache, or send goodbyes on its behalf. So the watcher
reads every answer as it arrives (a zeroconf record listener, before any cache) and
keeps every pointer it has seen: a goodbye or a cache flush removes nothing, and a
rogue's answer only adds one more address for the phone to try, where only a
completed Noise handshake counts. Bounded: at most ``MAX_INSTANCES`` services, a few
records of each.

Discovery returns on the first matching answer; the watcher keeps listening while the
phone links, so later answers (another station with an open offer, the station
announcing itself again after an outage) reach the phone at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zeroconf import (
    InterfaceChoice,
    IPVersion,
    RecordUpdate,
    RecordUpdateListener,
    Zeroconf,
)
from zeroconf._dns import DNSAddress, DNSPointer, DNSService, DNSText
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

from tunnel.handshake import WIRE_VERSION

SERVICE_TYPE = "_fieldstation._tcp.local."
MAX_INSTANCES = 64
MAX_PER_NAME = 8  # SRV targets of one instance, TXT variants, addresses of one host


@dataclass(frozen=True, slots=True)
class DiscoveredStation:
    name: str
    addresses: tuple[str, ...]
    port: int
    offer_open: bool
    version: int
    tag: str
    instance: str = ""


def _txt(text: bytes) -> dict[str, str]:
    props: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        length = text[pos]
        key, _, value = text[pos + 1 : pos + 1 + length].partition(b"=")
        pos += 1 + length
        props.setdefault(key.decode("utf-8", "replace"), value.decode("utf-8", "replace"))
    return props


@dataclass
class _Instance:
    targets: list[tuple[str, int]] = field(default_factory=list)  # SRV (host, port)
    texts: list[dict[str, str]] = field(default_factory=list)  # every TXT variant seen


class StationWatch(RecordUpdateListener):
    """Listens for station answers until stopped; every answer is kept."""

    def __init__(
        self,
        *,
        interfaces: InterfaceChoice | list[str] = InterfaceChoice.All,
        on_answer: Callable[[str], None] | None = None,
    ) -> None:
        self._interfaces = interfaces
        self._on_answer = on_answer  # called with the instance name of each answer
        self._instances: dict[str, _Instance] = {}
        self._hosts: dict[str, list[str]] = {}
        self._azc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._changed = asyncio.Event()
        self.started_at = 0.0
        self.answers = 0  # station records heard (any, goodbyes not counted)

    async def start(self) -> None:
        self.started_at = time.monotonic()
        self._azc = AsyncZeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
        zc = self._azc.zeroconf
        zc.async_add_listener(self, None)
        self._browser = AsyncServiceBrowser(zc, SERVICE_TYPE, handlers=[self._browsed])

    async def stop(self) -> None:
        if self._azc is None:
            return
        self._azc.zeroconf.async_remove_listener(self)
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await self._browser.async_cancel()
        await self._azc.async_close()
        self._azc = None

    def _browsed(self, **_: object) -> None:
        """The browser's own callback: records arrive through the listener anyway."""

    # -- the record stream ----------------------------------------------------------

    def async_update_records(self, zc: Zeroconf, now: float, records: list[RecordUpdate]) -> None:
        touched: set[str] = set()
        for update in records:
            record = update.new
            if record.is_expired(now) or record.ttl == 0:
                continue  # a goodbye: anyone can send one, so it removes nothing
            if isinstance(record, DNSPointer) and record.name == SERVICE_TYPE:
                if self._instance(record.alias) is not None:
                    touched.add(record.alias)
            elif isinstance(record, DNSService) and record.name.endswith(SERVICE_TYPE):
                inst = self._instance(record.name)
                if inst is not None:
                    _keep(inst.targets, (record.server.lower(), record.port))
                    touched.add(record.name)
            elif isinstance(record, DNSText) and record.name.endswith(SERVICE_TYPE):
                inst = self._instance(record.name)
                if inst is not None:
                    _keep(inst.texts, _txt(record.text))
                    touched.add(record.name)
            elif isinstance(record, DNSAddress) and len(record.address) == 4:
                host = record.name.lower()
                if host in self._hosts or self._wanted_host(host):
                    _keep(self._hosts.setdefault(host, []), socket.inet_ntoa(record.address))
                    touched.update(self._instances_of(host))
        if touched:
            self.answers += len(touched)
            self._changed.set()
            if self._on_answer is not None:
                for name in touched:
                    self._on_answer(name)

    def _instance(self, name: str) -> _Instance | None:
        inst = self._instances.get(name)
        if inst is None and len(self._instances) < MAX_INSTANCES:
            inst = self._instances[name] = _Instance()
        return inst

    def _wanted_host(self, host: str) -> bool:
        # Addresses may come before the SRV that names their host: keep a few anyway.
        return len(self._hosts) < MAX_INSTANCES * 2

    def _instances_of(self, host: str) -> list[str]:
        return [n for n, i in self._instances.items() if any(t[0] == host for t in i.targets)]

    # -- what the phone asks --------------------------------------------------------

    def stations(self) -> list[DiscoveredStation]:
        """Every station heard so far (one entry per TXT variant of each service)."""
        found: list[DiscoveredStation] = []
        for name, inst in self._instances.items():
            for host, port in inst.targets:
                addresses = tuple(self._hosts.get(host, ()))
                if not addresses:
                    continue
                for props in inst.texts or [{}]:
                    version_text = props.get("v", "")
                    version = int(version_text) if version_text.isdigit() else 0
                    if version != WIRE_VERSION:
                        continue
                    found.append(
                        DiscoveredStation(
                            name=props.get("name") or name.removesuffix("." + SERVICE_TYPE),
                            addresses=addresses,
                            port=port,
                            offer_open=props.get("offer") == "1",
                            version=version,
                            tag=props.get("tag", ""),
                            instance=name,
                        )
                    )
        return found

    async def wait_for(
        self, match: Callable[[DiscoveredStation], bool], within: float
    ) -> list[DiscoveredStation]:
        """The matching stations as soon as there is one, or [] after ``within`` s."""
        deadline = time.monotonic() + within
        while True:
            self._changed.clear()
            hits = [s for s in self.stations() if match(s)]
            left = deadline - time.monotonic()
            if hits or left <= 0:
                return hits
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._changed.wait()


def _keep(items: list[Any], item: object) -> None:
    if item not in items and len(items) < MAX_PER_NAME:
        items.append(item)


async def discover(
    listen_for: float, *, interfaces: InterfaceChoice | list[str] = InterfaceChoice.All
) -> list[DiscoveredStation]:
    """Every station that answers within ``listen_for`` seconds, one line per name."""
    watch = StationWatch(interfaces=interfaces)
    await watch.start()
    try:
        await asyncio.sleep(listen_for)
        merged: dict[tuple[str, str, int], DiscoveredStation] = {}
        for station in watch.stations():
            key = (station.name, station.tag, station.port)
            seen = merged.get(key)
            if seen is None:
                merged[key] = station
            else:
                addresses = tuple(dict.fromkeys(seen.addresses + station.addresses))
                merged[key] = DiscoveredStation(
                    seen.name,
                    addresses,
                    seen.port,
                    seen.offer_open or station.offer_open,
                    seen.version,
                    seen.tag,
                    seen.instance,
                )
        return sorted(merged.values(), key=lambda s: (s.name, s.tag))
    finally:
        await watch.stop()
