"""The tunnel's errors, under one root.

Every error says whose fault it was:

* ``UsageError`` -- the caller misused the API (a bug on our side of the line).
* ``PeerError`` -- the peer sent something wrong: malformed, oversized, replayed,
  unauthenticated. The connection must be dropped; nothing reached the application.
* ``LinkError`` -- the network failed (timeout, connection lost). Resume may fix it.
* ``PairingError`` -- pairing could not proceed (bad or expired offer, wrong code).
* ``QueueFull`` -- a bounded queue refused an entry; the caller must show it.

``close_reason`` is what may go on the wire in a close frame: a fixed, short string
that names the class of failure and leaks nothing about keys, counters or content.
"""

from __future__ import annotations


class TunnelError(Exception):
    """Root of every error raised by the ``tunnel`` package."""

    close_reason = "internal error"


class UsageError(TunnelError):
    """The API was misused (wrong state, bad argument): a bug in the caller."""

    close_reason = "internal error"


class PeerError(TunnelError):
    """The peer sent something we must refuse; the connection is dropped."""

    close_reason = "protocol error"


class MalformedRecord(PeerError):
    """Bytes that do not parse as a record or frame."""

    close_reason = "malformed record"


class OversizedRecord(PeerError):
    """A record or message larger than the negotiated maximum."""

    close_reason = "record too large"


class AuthenticationFailed(PeerError):
    """A record or handshake message failed authentication (wrong key, modified)."""

    close_reason = "authentication failed"


class ReplayedRecord(PeerError):
    """A record whose counter was already used (a replay)."""

    close_reason = "replayed record"


class ReorderedRecord(PeerError):
    """A record whose counter is ahead of the next expected one (gap or reorder)."""

    close_reason = "reordered record"


class HandshakeFailed(PeerError):
    """The handshake did not complete: wrong psk or code, bad signature, bad payload."""

    close_reason = "handshake failed"


class ResumeRefused(PeerError):
    """A resume attempt with a stale, replayed or unknown resumption secret."""

    close_reason = "resume refused"


class LinkError(TunnelError):
    """The network failed: the transport was lost or the peer went silent."""

    close_reason = "link lost"


class LinkTimeout(LinkError):
    """No sign of life from the peer within the liveness timeout."""

    close_reason = "timeout"


class PairingError(TunnelError):
    """Pairing could not proceed."""

    close_reason = "pairing refused"


class OfferFormatError(PairingError, ValueError):
    """A ``fieldstation://`` URI or short code that does not parse."""


class OfferExpired(PairingError):
    """The pairing offer's expiry has passed."""

    close_reason = "offer expired"


class OfferUsed(PairingError):
    """The pairing offer was already used (offers are single-use)."""

    close_reason = "offer used"


class QueueFull(TunnelError):
    """A bounded queue is full; the entry was refused, not dropped."""

    close_reason = "queue full"

    def __init__(self, message: str, *, depth: int, size: int) -> None:
        super().__init__(message)
        self.depth = depth
        self.size = size


class SessionClosed(TunnelError):
    """The session has ended (logout); it can never be resumed."""

    close_reason = "session closed"

    def __init__(self, message: str, *, reason: str = "closed") -> None:
        super().__init__(message)
        self.reason = reason
