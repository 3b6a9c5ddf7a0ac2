"""The phone's errors, under one root; each says whose fault it was."""

from __future__ import annotations


class PhoneError(Exception):
    """Root of every error raised by the ``medic_phone`` package."""


class NotInitialized(PhoneError):
    """No identity or store here yet: the user must run ``medic-phone init``."""


class KeystoreError(PhoneError):
    """The identity file is unreadable or damaged."""


class WrongPassphrase(KeystoreError):
    """The passphrase does not open the sealed identity."""


class StoreError(PhoneError):
    """The store refused an operation (a bug in the caller, or a gap in commands)."""


class StoreCorrupt(StoreError):
    """The store's file is not a healthy SQLite database; nothing was changed."""


class DiscoveryError(PhoneError):
    """No station, or no single station, could be found on the LAN."""
