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


# -- hosts on a switch ------------------------------------------------------------------


@dataclass
class Net:
    """Hosts on one /24, each plugged into a bridge that lives in a namespace of its own
    (the switch), so the root namespace and its interfaces are never touched."""

    tag: str
    subnet: str  # "10.x.y"
    switch: str  # the switch's namespace
    bridge: str
    hosts: dict[str, Host]
    ports: dict[str, str]  # host name -> its port on the bridge (in the switch namespace)
    namespaces: list[str]
    _next: int = 1

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def block_multicast(self) -> None:
        """Ports with ``mcast_flood off``: the switch forwards no multicast (mDNS) at all,
        as some access points do; unicast still flows."""
        for port in self.ports.values():
            _ip("-n", self.switch, "link", "set", "dev", port, "type", "bridge_slave",
                "mcast_flood", "off")  # fmt: skip

    def down(self, name: str) -> None:
        """The host's own interface goes down (``ip link set dev X down``)."""
        host = self.hosts[name]
        _ip("-n", host.ns, "link", "set", host.device, "down")

    def up(self, name: str) -> None:
        host = self.hosts[name]
        _ip("-n", host.ns, "link", "set", host.device, "up")
        _ip("-n", host.ns, "route", "replace", "224.0.0.0/4", "dev", host.device)

    def unplug(self, name: str) -> None:
        """The host's cable is pulled: its switch port goes down (it sees no carrier)."""
        _ip("-n", self.switch, "link", "set", self.ports[name], "down")

    def plug(self, name: str) -> None:
        _ip("-n", self.switch, "link", "set", self.ports[name], "up")

    def unused_address(self) -> str:
        """An address on the subnet that no host has (a gateway that does not exist)."""
        return f"{self.subnet}.254"

    def isolate(self, name: str, target: str) -> None:
        """Client isolation as guest WiFi does it: the host's packets to ``target`` go to
        a gateway that does not exist, while multicast (mDNS) still flows."""
        _ip("-n", self.hosts[name].ns, "route", "add", f"{target}/32", "via",
            self.unused_address())  # fmt: skip

    def move(self, name: str) -> str:
        """The host roams: its address is replaced by a new one on the same subnet."""
        host = self.hosts[name]
        new = self._address()
        _ip("-n", host.ns, "addr", "del", f"{host.address}/24", "dev", host.device)
        _ip("-n", host.ns, "addr", "add", f"{new}/24", "dev", host.device)
        _ip("-n", host.ns, "route", "replace", "224.0.0.0/4", "dev", host.device)
        self.hosts[name] = Host(host.ns, new, host.device)
        return new

    def drop_address(self, name: str) -> None:
        host = self.hosts[name]
        _ip("-n", host.ns, "addr", "del", f"{host.address}/24", "dev", host.device)

    def add_address(self, name: str) -> str:
        host = self.hosts[name]
        new = self._address()
        _ip("-n", host.ns, "addr", "add", f"{new}/24", "dev", host.device)
        _ip("-n", host.ns, "route", "replace", "224.0.0.0/4", "dev", host.device)
        self.hosts[name] = Host(host.ns, new, host.device)
        return new

    def extra_addresses(self, name: str, count: int) -> list[str]:
        """More addresses on the host's interface (an attacker with many sources)."""
        host = self.hosts[name]
        added = []
        for _ in range(count):
            address = self._address()
            _ip("-n", host.ns, "addr", "add", f"{address}/24", "dev", host.device)
            added.append(address)
        return added

    def second_interface(self, name: str) -> str:
        """A second interface on the host, on a subnet of its own whose other end is a
        namespace with nothing in it: its address is up, but no phone can reach it."""
        host = self.hosts[name]
        far = f"fs-nx-{self.tag}"
        _ip("netns", "add", far)
        self.namespaces.append(far)
        mine, theirs = f"fsx{self.tag}a", f"fsx{self.tag}b"
        subnet = f"10.{150 + secrets.randbelow(40)}.{secrets.randbelow(250)}"
        _ip("link", "add", mine, "type", "veth", "peer", "name", theirs)
        _ip("link", "set", mine, "netns", host.ns)
        _ip("link", "set", theirs, "netns", far)
        _ip("-n", host.ns, "addr", "add", f"{subnet}.1/24", "dev", mine)
        _ip("-n", host.ns, "link", "set", mine, "up")
        _ip("-n", far, "link", "set", theirs, "up")
        return f"{subnet}.1"

    def _address(self) -> str:
        self._next += 1
        return f"{self.subnet}.{self._next}"


@contextmanager
def lan(*names: str) -> Iterator[Net]:
    """Hosts named ``names`` on one switch; everything is removed afterwards."""
    reason = root_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
    net = Net(tag, subnet, f"fs-sw-{tag}", f"fsbr{tag}", {}, {}, [])
    try:
        _ip("netns", "add", net.switch)
        net.namespaces.append(net.switch)
        _ip("-n", net.switch, "link", "add", net.bridge, "type", "bridge")
        _ip("-n", net.switch, "link", "set", net.bridge, "up")
        for i, name in enumerate(names):
            ns = f"fs-{name[:6]}-{tag}"
            _ip("netns", "add", ns)
            net.namespaces.append(ns)
            device, port = f"fs{tag}h{i}", f"fs{tag}p{i}"
            _ip("link", "add", device, "type", "veth", "peer", "name", port)
            _ip("link", "set", device, "netns", ns)
            _ip("link", "set", port, "netns", net.switch)
            _ip("-n", net.switch, "link", "set", port, "master", net.bridge)
            _ip("-n", net.switch, "link", "set", port, "up")
            address = net._address()
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", device)
            _ip("-n", ns, "link", "set", device, "multicast", "on")
            _ip("-n", ns, "link", "set", device, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", device)
            net.hosts[name] = Host(ns, address, device)
            net.ports[name] = port
        yield net
    finally:
        for ns in reversed(net.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)
