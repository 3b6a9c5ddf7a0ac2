"""A LAN attacker for the hostile-pairing tests: pairing hellos as fast as it can.

Run as its own process on the attacker's host (``python -m tests.pairing_attacker``).
Several loops each open a WebSocket after another and send one kind of hello:

* ``code``: a complete code guess (two SPAKE2 slots with random codes, then the Noise
  messages of every slot the station answered) -- each answer to those is counted;
* ``uri``: a URI hello for the station's current offer id (as if sniffed) without its
  secret;
* ``v1``: version 1's offer-burning hello (``0x02 0x01`` + 33 bytes);
* ``junk``: a random-length PAIR_CODE of random bytes.

It prints one JSON summary at the end: counts per outcome and the times (seconds since
it started) of every complete code guess the station evaluated. Test kit, not product.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from collections import Counter
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tunnel.flights import WIRE_VERSION, MessageType
from tunnel.handshake import PhonePairByCode, PhonePairByUri, Refused, parse_refusal
from tunnel.identity import PhoneIdentity
from tunnel.refusal import RefuseCode


async def _recv(ws: ClientConnection) -> bytes:
    data = await ws.recv()
    return data.encode() if isinstance(data, str) else data


class Attacker:
    def __init__(self, url: str, offer_file: Path | None, seconds: float, stop: Path | None):
        self.url = url
        self.offer_file = offer_file
        self.deadline = time.monotonic() + seconds
        self.stop = stop
        self.start = time.monotonic()
        self.outcomes: Counter[str] = Counter()
        self.guesses: list[float] = []  # complete code guesses the station evaluated
        self.identity = PhoneIdentity.generate()

    def running(self) -> bool:
        return time.monotonic() < self.deadline and not (self.stop and self.stop.exists())

    async def loop(self, kind: str) -> None:
        while self.running():
            try:
                async with asyncio.timeout(10):
                    async with connect(self.url, open_timeout=5, max_size=4096) as ws:
                        outcome = await getattr(self, kind)(ws)
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
                outcome = f"{kind}:{type(exc).__name__}"
            self.outcomes[outcome] += 1

    async def code(self, ws: ClientConnection) -> str:
        guess = f"{secrets.randbelow(10**8):08d}"
        driver = PhonePairByCode(self.identity, f"{guess[:4]}-{guess[4:]}")
        await ws.send(driver.first_message())
        reply = await _recv(ws)
        try:
            noise, _ = driver.receive(reply)
        except Refused as refused:
            return f"code:hello refused {refused.code.name}"
        assert noise is not None
        await ws.send(noise)
        answer = await _recv(ws)
        if answer[0] != MessageType.REFUSE:
            self.guesses.append(time.monotonic() - self.start)
            return "code:GUESSED"
        refusal = parse_refusal(answer)
        if refusal.code is RefuseCode.WRONG_CODE:
            self.guesses.append(time.monotonic() - self.start)
        return f"code:guess refused {refusal.code.name}"

    async def uri(self, ws: ClientConnection) -> str:
        offer_id = secrets.token_bytes(8)
        if self.offer_file is not None and self.offer_file.exists():
            offer_id = bytes.fromhex(self.offer_file.read_text().strip() or offer_id.hex())
        forged = PhonePairByUri(self.identity, offer_id, os.urandom(32), os.urandom(32))
        await ws.send(forged.first_message())
        answer = await _recv(ws)
        if answer[0] != MessageType.REFUSE:
            return "uri:ANSWERED"
        return f"uri:refused {parse_refusal(answer).code.name}"

    async def v1(self, ws: ClientConnection) -> str:
        await ws.send(bytes([MessageType.PAIR_CODE, 1]) + os.urandom(33))
        return f"v1:refused {parse_refusal(await _recv(ws)).code.name}"

    async def junk(self, ws: ClientConnection) -> str:
        body = os.urandom(secrets.randbelow(200) + 1)
        await ws.send(bytes([MessageType.PAIR_CODE, WIRE_VERSION]) + body)
        answer = await _recv(ws)
        if answer[0] != MessageType.REFUSE:
            return "junk:answered"
        return f"junk:refused {parse_refusal(answer).code.name}"


async def _main(args: argparse.Namespace) -> None:
    attacker = Attacker(args.url, args.offer_file, args.seconds, args.stop_file)
    kinds = ["code"] * args.code_loops + ["uri", "uri", "v1", "junk"]
    await asyncio.gather(*(attacker.loop(kind) for kind in kinds))
    summary = {
        "seconds": round(time.monotonic() - attacker.start, 1),
        "outcomes": dict(attacker.outcomes),
        "guess_times": [round(t, 2) for t in attacker.guesses],
    }
    print(json.dumps(summary), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="tests.pairing_attacker")
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--offer-file", type=Path, default=None)
    parser.add_argument("--stop-file", type=Path, default=None)
    parser.add_argument("--code-loops", type=int, default=4)
    asyncio.run(_main(parser.parse_args()))
    sys.exit(0)


if __name__ == "__main__":
    main()
