"""Network namespaces for tests: hosts of our own, joined by a veth pair.

Everything the LAN tests send (mDNS included) stays inside namespaces the test creates:
10.x addresses that exist only there, multicast routed onto the veth. Needs root and
iproute2; without them the tests skip with the reason printed (in CI as root, a
missing `ip` is a failure).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest


def root_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        if os.environ.get("CI"):
            pytest.fail("iproute2 (`ip`) is missing in CI: the Makefile should install it")
        return "needs iproute2 (`ip`)"
    return None


requires_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (network namespaces, veth)"
)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass(frozen=True)
class Host:
    ns: str
    address: str
    device: str

    def prefix(self) -> list[str]:
        """Prepend to a command to run it inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns]


@dataclass(frozen=True)
class Lan:
    station: Host
    phone: Host

    def down(self) -> None:
        _ip("-n", self.station.ns, "link", "set", self.station.device, "down")

    def up(self) -> None:
        _ip("-n", self.station.ns, "link", "set", self.station.device, "up")


@contextmanager
def two_hosts() -> Iterator[Lan]:
    """A station host and a phone host on one /24 over a veth pair; removed afterwards."""
    reason = root_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
    station = Host(f"fs-st-{tag}", f"{subnet}.1", f"fsv-s-{tag}")
    phone = Host(f"fs-ph-{tag}", f"{subnet}.2", f"fsv-p-{tag}")
    created: list[str] = []
    try:
        for host in (station, phone):
            _ip("netns", "add", host.ns)
            created.append(host.ns)
        _ip("link", "add", station.device, "type", "veth", "peer", "name", phone.device)
        for host in (station, phone):
            _ip("link", "set", host.device, "netns", host.ns)
            _ip("-n", host.ns, "addr", "add", f"{host.address}/24", "dev", host.device)
            _ip("-n", host.ns, "link", "set", host.device, "multicast", "on")
            _ip("-n", host.ns, "link", "set", host.device, "up")
            _ip("-n", host.ns, "link", "set", "lo", "up")
            _ip("-n", host.ns, "route", "add", "224.0.0.0/4", "dev", host.device)
        yield Lan(station, phone)
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)


@contextmanager
def switched_hosts(count: int) -> Iterator[list[Host]]:
    """``count`` hosts on one /24, each a namespace with a veth to a bridge that lives in
    a namespace of its own (a switch): nothing is added to the machine's own network."""
    reason = root_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
    switch = f"fs-sw-{tag}"
    hosts = [Host(f"fs-h{i}-{tag}", f"{subnet}.{i + 1}", f"fsh{i}-{tag}") for i in range(count)]
    created: list[str] = []
    try:
        _ip("netns", "add", switch)
        created.append(switch)
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        for i, host in enumerate(hosts):
            _ip("netns", "add", host.ns)
            created.append(host.ns)
            port = f"fsp{i}-{tag}"
            _ip("link", "add", host.device, "type", "veth", "peer", "name", port)
            _ip("link", "set", host.device, "netns", host.ns)
            _ip("link", "set", port, "netns", switch)
            _ip("-n", switch, "link", "set", port, "master", "br0")
            _ip("-n", switch, "link", "set", port, "up")
            _ip("-n", host.ns, "addr", "add", f"{host.address}/24", "dev", host.device)
            _ip("-n", host.ns, "link", "set", host.device, "multicast", "on")
            _ip("-n", host.ns, "link", "set", host.device, "up")
            _ip("-n", host.ns, "link", "set", "lo", "up")
            _ip("-n", host.ns, "route", "add", "224.0.0.0/4", "dev", host.device)
        yield hosts
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)


@dataclass(frozen=True)
class ThreeLan:
    """A station, a phone and an attacker, each a host of its own on one switch."""

    station: Host
    phone: Host
    attacker: Host


@contextmanager
def three_hosts() -> Iterator[ThreeLan]:
    """Station, phone and attacker hosts on one bridge (``switched_hosts``)."""
    with switched_hosts(3) as (station, phone, attacker):
        yield ThreeLan(station, phone, attacker)
