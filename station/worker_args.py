"""A session worker's command line: what the supervisor tells it when it starts it.

The names here and the arguments ``station.worker_handle`` builds are one contract.
"""

from __future__ import annotations

import argparse


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="station.worker", description="A session worker (started by the supervisor)."
    )
    parser.add_argument("--fd", type=int, required=True, help="socketpair fd to the supervisor")
    parser.add_argument("--name", required=True)
    parser.add_argument("--address", action="append", default=[], help="HOST:PORT, repeatable")
    parser.add_argument("--control-dir", required=True)
    parser.add_argument("--offer-ttl", type=float, required=True)
    parser.add_argument("--ppid", type=int, required=True)
    parser.add_argument("--queue-limit", type=int, required=True)
    # The station's wrong-code streak so far (see CodeBackoff.carried_over).
    parser.add_argument("--code-streak", type=int, default=0)
    parser.add_argument("--code-quiet-s", type=float, default=0.0)
    parser.add_argument("--code-paused-s", type=float, default=0.0)
    parser.add_argument(
        "--command-ttl", type=float, default=None, help="default TTL of a command, seconds"
    )
    parser.add_argument(
        "--ui-origin", default=None, help="the pairing screen's origin (frames this page)"
    )
    return parser.parse_args(argv)
