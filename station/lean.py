"""Keep OpenSSL out of the station's long-lived processes (supervisor and workers).

They speak plain WebSockets on the LAN (the tunnel's cryptography is libsodium's), so
they never use ``ssl``; the only hashes they compute are BLAKE2b and the WebSocket
handshake's SHA-1, both built into CPython. Yet ``asyncio`` imports ``ssl`` and
``hashlib`` imports ``_hashlib``, and each loads libcrypto, whose start-up touches
~5 MB that then stays resident in every process (locked, in a worker). Marking both
modules as absent before anything imports them keeps libcrypto unloaded; asyncio,
hashlib and hmac are written to work without them.

Call ``forgo_openssl`` first thing in a process that will never need TLS. It changes
nothing if either module is already loaded, or if this Python lacks the built-in
hashes that would then serve ``hashlib``.
"""

from __future__ import annotations

import importlib.util
import sys

_OPENSSL_MODULES = ("ssl", "_ssl", "_hashlib")
_BUILTIN_HASHES = ("_blake2", "_sha1", "_sha256", "_sha512", "_md5")


def forgo_openssl() -> bool:
    """Make ``import ssl`` fail and ``hashlib`` use its built-in hashes; True if done."""
    if any(name in sys.modules for name in _OPENSSL_MODULES):
        return False
    if any(importlib.util.find_spec(name) is None for name in _BUILTIN_HASHES):
        return False
    for name in _OPENSSL_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]  # Python's "not importable"
    return True
