"""Where the tunnel's random values come from: the operating system, always, in use.

Every random value that goes on the wire or into a key is drawn here, named by what it
is for: Noise ephemeral keys and offer keys (``x25519``), session ids, offer ids and
secrets, SPAKE2 scalars. Production never installs anything, so each
draw is ``secrets.token_bytes``.

The wire test vectors (``docs/vectors/``) are complete transcripts from fixed
ephemerals and secrets, made by the real code paths. ``fixed(source)`` is their one
hook: inside the ``with`` block, and only in the current context (a ``ContextVar``, so
no other task or thread sees it), draws come from ``source(purpose, size)`` instead.
Nothing else changes: the same functions run, with the same checks, on other bytes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from tunnel.errors import UsageError

Source = Callable[[str, int], bytes]

X25519 = "x25519"  # a Noise ephemeral or an offer's static key (private half)
SESSION_ID = "session-id"
OFFER_ID = "offer-id"
OFFER_SECRET = "offer-secret"
SPAKE2 = "spake2"  # 64 bytes per SPAKE2 scalar (the spake2 package reduces them mod L)

_SOURCE: ContextVar[Source | None] = ContextVar("tunnel_entropy_source", default=None)


def random_bytes(size: int, purpose: str) -> bytes:
    """``size`` random bytes for ``purpose`` (one of the names above)."""
    source = _SOURCE.get()
    if source is None:
        return secrets.token_bytes(size)
    data = source(purpose, size)
    if len(data) != size:
        raise UsageError(f"a fixed entropy source gave {len(data)} bytes for {purpose}, not {size}")
    return data


@contextmanager
def fixed(source: Source) -> Iterator[None]:
    """Draw from ``source`` inside this block (test vectors only)."""
    token = _SOURCE.set(source)
    try:
        yield
    finally:
        _SOURCE.reset(token)
