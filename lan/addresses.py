"""The host's addresses: which ones a listener can really be reached on, and when.

Used by the station (the URI's ``a=`` and the mDNS records list exactly the addresses
it listens on that are up) and by the phone (which addresses it has, to order the
station's and to notice a roam). An interface counts as up when it is administratively
up *and* running (it has carrier): a veth whose peer is down, or WiFi that lost its
access point, is not a way in. The flags come from ``SIOCGIFFLAGS`` on a socket, which
reads the calling process's own network namespace (``/sys`` may belong to another).
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass

_SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40
ANY_IPV4 = "0.0.0.0"  # noqa: S104 (a name for the wildcard, not a bind here)
WILDCARDS = frozenset({ANY_IPV4, "", "::"})


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    interface: str
    index: int
    address: str
    prefix: int
    up: bool  # administratively up and running (carrier)
    loopback: bool

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.address}/{self.prefix}", strict=False)


def interface_flags(name: str) -> int:
    """The interface's flags (``IFF_*``), or 0 when it is gone."""
    request = struct.pack("16sH14x", name.encode()[:15], 0)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            reply = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request)
    except OSError:
        return 0
    return int(struct.unpack_from("16sH", reply)[1])


def interface_addresses() -> list[InterfaceAddress]:
    """Every IPv4 address of every interface, in interface order, with its state."""
    import ifaddr  # here: a station on one address never lists interfaces, nor loads ctypes

    found: list[InterfaceAddress] = []
    for adapter in sorted(ifaddr.get_adapters(), key=lambda a: a.index or 0):
        flags = interface_flags(adapter.name)
        up = bool(flags & IFF_UP) and bool(flags & IFF_RUNNING)
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue  # IPv6: the station speaks IPv4 only (URI, mDNS records)
            address = ipaddress.IPv4Address(ip.ip)
            if address.is_link_local or address.is_unspecified:
                continue
            found.append(
                InterfaceAddress(
                    adapter.name,
                    adapter.index or 0,
                    str(address),
                    ip.network_prefix,
                    up,
                    address.is_loopback or bool(flags & IFF_LOOPBACK),
                )
            )
    return found


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def reachable_addresses(host: str) -> list[str]:
    """Where phones can reach a listener on ``host``: for the wildcard, every address of
    an interface that is up, LAN addresses first, loopback only when there is nothing
    else; for one address, that address."""
    if host not in WILDCARDS:
        return [host]
    up = [a for a in interface_addresses() if a.up]
    lan = [a.address for a in up if not a.loopback]
    if lan:
        return list(dict.fromkeys(lan))
    return list(dict.fromkeys(a.address for a in up if a.loopback)) or ["127.0.0.1"]


def lan_addresses() -> list[str]:
    """IPv4 addresses of interfaces that are up, loopback and link-local excluded."""
    return [a.address for a in interface_addresses() if a.up and not a.loopback]


def local_networks() -> list[ipaddress.IPv4Network]:
    """The networks this host is on now (interfaces up, loopback excluded)."""
    return [a.network for a in interface_addresses() if a.up and not a.loopback]


def order_by_reach(hosts: list[str]) -> list[str]:
    """Hosts on one of our own networks first (most likely to answer), order kept."""
    networks = local_networks()

    def near(host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in networks)

    return sorted(hosts, key=lambda h: 0 if near(h) else 1)
