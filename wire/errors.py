"""The one error of the application protocol: a message that does not decode."""

from __future__ import annotations


class WireError(Exception):
    """Bytes that are not a valid message of this protocol (the sender's fault).

    Raised by every decoder for every malformed input; the message names what is
    wrong without quoting the content."""
