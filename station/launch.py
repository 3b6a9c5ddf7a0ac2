"""The ``station`` command's entry point.

It decides, before anything heavy is imported, whether this process is the long-lived
supervisor (``station start``): that one keeps OpenSSL out (``station.lean``), the
short-lived commands need not.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["start"]:
        from station.lean import forgo_openssl

        forgo_openssl()
    from station.cli import main as cli

    cli()
