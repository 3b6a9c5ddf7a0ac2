"""A rogue station on the LAN; the rogue tests run it in the attacker's namespace
(``python -m tests.rogue_station --name clinic-a --address A``).

It looks up the real station by name, then every ``--every`` seconds:
* advertises ``--adverts`` fake services with the same station name and an open offer;
* answers for the real station's own service and host names with its own address
  (cache-flush set, so a plain mDNS cache drops the real address);
* sends goodbyes for the real station's records.
On its own address it listens on two ports: one refuses everything in clear text
(``SESSION_ENDED`` for every resume, "wrong or expired code" for pairing), the other
accepts the WebSocket and then says nothing. Prints one JSON line of counts a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import time
from dataclasses import asdict, dataclass

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from zeroconf import IPVersion
from zeroconf._dns import DNSAddress, DNSPointer, DNSService, DNSText
from zeroconf._protocol.outgoing import DNSOutgoing
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf
from zeroconf.const import (
    _CLASS_IN,
    _CLASS_UNIQUE,
    _FLAGS_AA,
    _FLAGS_QR_RESPONSE,
    _TYPE_A,
    _TYPE_PTR,
    _TYPE_SRV,
    _TYPE_TXT,
)

from tunnel.handshake import WIRE_VERSION, MessageType, RefuseCode, encode_refusal

SERVICE = "_fieldstation._tcp.local."
TTL = 120


@dataclass
class Counts:
    packets: int = 0
    resumes_refused: int = 0
    pairings_refused: int = 0
    silent: int = 0


def _txt(name: str, tag: str) -> bytes:
    props = [f"v={WIRE_VERSION}", f"name={name}", f"tag={tag}", "offer=1"]
    return b"".join(bytes([len(p)]) + p.encode() for p in props)


def _records(instance: str, host: str, address: str, port: int, txt: bytes, ttl: int) -> list:  # type: ignore[type-arg]
    unique = _CLASS_IN | _CLASS_UNIQUE
    return [
        DNSPointer(SERVICE, _TYPE_PTR, _CLASS_IN, ttl, instance),
        DNSService(instance, _TYPE_SRV, unique, ttl, 0, 0, port, host),
        DNSText(instance, _TYPE_TXT, unique, ttl, txt),
        DNSAddress(host, _TYPE_A, unique, ttl, socket.inet_aton(address)),
    ]


def _send(sock: socket.socket, records: list, counts: Counts) -> None:  # type: ignore[type-arg]
    out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
    for record in records:
        out.add_answer_at_time(record, 0)
    for packet in out.packets():
        sock.sendto(packet, ("224.0.0.251", 5353))
        counts.packets += 1


async def refuse(ws: ServerConnection, counts: Counts) -> None:
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        async with asyncio.timeout(10):
            first = await ws.recv()
        if isinstance(first, bytes) and first[:1] == bytes([MessageType.RESUME]):
            counts.resumes_refused += 1
            await ws.send(encode_refusal(RefuseCode.SESSION_ENDED, "session ended"))
        else:
            counts.pairings_refused += 1
            await ws.send(encode_refusal(RefuseCode.HANDSHAKE_FAILED, "wrong or expired code"))
        await ws.close()


async def silent(ws: ServerConnection, counts: Counts) -> None:
    counts.silent += 1
    with contextlib.suppress(ConnectionClosed):
        await ws.wait_closed()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--adverts", type=int, default=30)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=120.0)
    args = parser.parse_args()
    counts = Counts()
    refusing = await serve(lambda ws: refuse(ws, counts), args.address, 0)
    hanging = await serve(lambda ws: silent(ws, counts), args.address, 0)
    ports = [s.sockets[0].getsockname()[1] for s in (refusing, hanging)]

    # The real station's names, as any mDNS participant can learn them.
    azc = AsyncZeroconf(interfaces=[args.address], ip_version=IPVersion.V4Only)
    info = AsyncServiceInfo(SERVICE, f"{args.name}.{SERVICE}")
    deadline = time.monotonic() + 30
    while not await info.async_request(azc.zeroconf, 1000):
        if time.monotonic() > deadline:
            raise SystemExit("the real station never answered")
    real_host = str(info.server)
    real_addresses = [socket.inet_ntoa(a) for a in info.addresses]
    real_txt = info.text or b""
    await azc.async_close()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(args.address))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    sock.bind((args.address, 0))
    txt = _txt(args.name, "r0gue000")
    print(json.dumps({"real_host": real_host, "real_addresses": real_addresses, "ports": ports}))
    end = time.monotonic() + args.duration
    next_report = 0.0
    while time.monotonic() < end:
        for i in range(args.adverts):
            instance = f"{args.name} ({i + 2}).{SERVICE}"
            _send(sock, _records(instance, f"rogue-{i}.local.", args.address,
                                 ports[i % 2], txt, TTL), counts)  # fmt: skip
        # Answers for the real station's names, pointing at the rogue...
        real = _records(f"{args.name}.{SERVICE}", real_host, args.address, ports[0], txt, TTL)
        _send(sock, real, counts)
        # ...and goodbyes for the real station's own records.
        bye = _records(f"{args.name}.{SERVICE}", real_host, real_addresses[0], info.port or 0,
                       real_txt, 0)  # fmt: skip
        _send(sock, bye, counts)
        if time.monotonic() >= next_report:
            print(json.dumps(asdict(counts)), flush=True)
            next_report = time.monotonic() + 1.0
        await asyncio.sleep(args.every)
    print(json.dumps(asdict(counts)), flush=True)
    refusing.close()
    hanging.close()


if __name__ == "__main__":
    asyncio.run(main())
