"""The phone's errors, under one root; each class says whose fault it was.

* ``PhoneUsageError`` -- the API was misused (bad argument): a bug in the caller.
* ``NotInitialized`` -- nothing here yet: the user must run ``medic-phone init``.
* ``KeystoreError`` -- the identity file is unreadable, damaged, or already there;
  ``WrongPassphrase`` -- the user's passphrase does not open it.
* ``StoreError`` -- the store refused an operation (a caller bug, or a gap in the
  station's commands); ``StoreCorrupt`` -- the file on disk is damaged (left untouched);
  ``StoreMissing`` -- there is no store (both a ``StoreError`` and ``NotInitialized``).
* ``DiscoveryError`` -- the LAN did not yield one station.

Every message is one specific line fit for the CLI's stderr; none carries a key, a
passphrase or message content.
"""

from __future__ import annotations


class PhoneError(Exception):
    """Root of every error raised by the ``medic_phone`` package."""


class PhoneUsageError(PhoneError, ValueError):
    """An argument the API cannot accept (wrong seed length, empty passphrase): a caller bug."""


class NotInitialized(PhoneError):
    """No identity or store here yet: the user must run ``medic-phone init``."""


class KeystoreError(PhoneError):
    """The identity file is unreadable or damaged (the disk's or an editor's fault)."""


class IdentityExists(KeystoreError):
    """An identity is already there; replacing it (and losing its links) needs ``force``."""


class WrongPassphrase(KeystoreError):
    """The passphrase does not open the sealed identity (the user's fault)."""


class PassphraseRequired(WrongPassphrase):
    """The identity is sealed and no passphrase was given."""


class StoreError(PhoneError):
    """The store refused an operation (a bug in the caller, or a gap in commands)."""


class StoreCorrupt(StoreError):
    """The store's file is not a healthy phone store; nothing was changed or deleted."""


class StoreMissing(StoreError, NotInitialized):
    """There is no store (no home directory, no database, or an empty one)."""


class DiscoveryError(PhoneError):
    """No station, or no single station, could be found on the LAN."""


class StoreLocked(StoreError):
    """The store is sealed and no key was given: the user must give the passphrase."""


class StoreKeyMismatch(StoreError):
    """The key does not open this sealed store (it belongs to another identity)."""
