"""The phone's identity on disk: one 0600 file holding the Ed25519 seed and a device name.

The file is small JSON. Either the 32-byte seed is stored in base64, or, with a
passphrase, it is sealed with ``nacl.secret.SecretBox`` under a key that argon2id
(``nacl.pwhash.argon2id.kdf``) derives from the passphrase; the salt and the cost
limits are stored beside it so the file alone says how to open it::

    {"version": 1, "name": "ward-3", "seed": "<base64>"}
    {"version": 1, "name": "ward-3", "kdf": "argon2id", "salt": "<base64>",
     "opslimit": 2, "memlimit": 67108864, "sealed": "<base64 nonce || box>",
     "store_key": "<base64 nonce || box>"}

With a passphrase the file also holds the phone store's key (32 random bytes, see
``medic_phone.sealing``), sealed under the same passphrase-derived key: one argon2id
derivation unlocks both, and a lost phone's files give up neither.

It is written atomically -- a temporary file created ``O_EXCL`` with mode 0600 from
the start (never chmod-ed after, so there is no moment when it is readable by
others), fsync-ed, then renamed over (or hard-linked onto, so an existing identity is
never clobbered by accident) -- and the directory is fsync-ed so the rename survives a
power cut. A reader therefore sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import json
import os
import secrets
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nacl.exceptions import CryptoError
from nacl.pwhash import argon2id
from nacl.secret import SecretBox
from nacl.utils import random as random_bytes

from medic_phone.errors import (
    IdentityExists,
    KeystoreError,
    NotInitialized,
    PassphraseRequired,
    PhoneUsageError,
    WrongPassphrase,
)
from medic_phone.sealing import STORE_KEY_LEN
from tunnel.identity import PhoneIdentity
from wipe.safedir import UnsafeDirectory, private_dir

KEY_FILE = "identity.key"
KEYSTORE_VERSION = 1
SEED_LEN = 32
HOME_ENV = "FIELDSTATION_PHONE_HOME"
DEFAULT_HOME = Path("~/.local/share/medic-phone")
MAX_DEVICE_NAME = 64
# A real keystore is a few hundred bytes; refusing big files keeps a stray file cheap.
MAX_FILE_BYTES = 16 * 1024

KdfStrength = Literal["interactive", "moderate"]
_LIMITS: dict[str, tuple[int, int]] = {
    "interactive": (argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE),
    "moderate": (argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE),
}
# Limits read from a file are capped: a crafted file must not make us allocate terabytes.
_MAX_OPSLIMIT = argon2id.OPSLIMIT_SENSITIVE
_MAX_MEMLIMIT = argon2id.MEMLIMIT_SENSITIVE


@dataclass(frozen=True, slots=True)
class StoredIdentity:
    """What the keystore holds: the seed (never in a repr), the device name, how it was kept."""

    seed: bytes = field(repr=False)
    device_name: str
    sealed: bool
    store_key: bytes | None = field(default=None, repr=False)  # sealed stores only


def resolve_home(home: str | None) -> Path:
    """The phone's home: ``--home``, else ``$FIELDSTATION_PHONE_HOME``, else the default."""
    chosen = home or os.environ.get(HOME_ENV) or str(DEFAULT_HOME)
    return Path(chosen).expanduser()


def identity_path(home: Path) -> Path:
    return home / KEY_FILE


# -- writing ------------------------------------------------------------------------------


def save_seed(
    home: Path,
    seed: bytes,
    *,
    device_name: str,
    passphrase: str | None = None,
    strength: KdfStrength = "interactive",
    force: bool = False,
    store_key: bytes | None = None,
) -> Path:
    """Store ``seed`` (and, sealed beside it, ``store_key``) under ``home`` (created
    0700); returns the file's path.

    Raises ``IdentityExists`` if an identity is already there and ``force`` is false.
    """
    if len(seed) != SEED_LEN:
        raise PhoneUsageError(f"an identity seed is {SEED_LEN} bytes, not {len(seed)}")
    _check_device_name(device_name)
    record: dict[str, object] = {"version": KEYSTORE_VERSION, "name": device_name}
    if passphrase is None:
        if store_key is not None:
            raise PhoneUsageError("a store key is kept only sealed, under a passphrase")
        record["seed"] = _b64encode(seed)
    else:
        record.update(_seal(seed, passphrase, strength, store_key))
    data = (json.dumps(record, sort_keys=True) + "\n").encode("ascii")
    path = identity_path(home)
    try:
        private_dir(home)  # ours, no symlink, 0700 (checked before any chmod)
    except UnsafeDirectory as exc:
        raise KeystoreError(f"cannot use the phone home: {exc}") from None
    _write_atomic(path, data, replace=force)
    return path


def create_identity(
    home: Path,
    *,
    name: str,
    passphrase: str | None = None,
    strength: KdfStrength = "interactive",
    force: bool = False,
    store_key: bytes | None = None,
) -> PhoneIdentity:
    """Generate a fresh Ed25519 identity and store it (see ``save_seed``)."""
    identity = PhoneIdentity.generate()
    save_seed(
        home,
        identity.seed,
        device_name=name,
        passphrase=passphrase,
        strength=strength,
        force=force,
        store_key=store_key,
    )
    return identity


def _check_device_name(name: str) -> None:
    if not name or len(name) > MAX_DEVICE_NAME or not name.isprintable():
        raise PhoneUsageError(
            f"a device name is 1 to {MAX_DEVICE_NAME} printable characters, not {name!r}"
        )


def _passphrase_bytes(passphrase: str) -> bytes:
    # NFC: the same passphrase typed on two keyboards must derive the same key.
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _seal(
    seed: bytes, passphrase: str, strength: str, store_key: bytes | None
) -> dict[str, object]:
    if not passphrase:
        raise PhoneUsageError("an empty passphrase would seal nothing; omit it instead")
    if strength not in _LIMITS:
        raise PhoneUsageError(f"unknown key-derivation strength {strength!r}")
    opslimit, memlimit = _LIMITS[strength]
    salt = random_bytes(argon2id.SALTBYTES)
    key = argon2id.kdf(
        SecretBox.KEY_SIZE,
        _passphrase_bytes(passphrase),
        salt,
        opslimit=opslimit,
        memlimit=memlimit,
    )
    box = SecretBox(key)
    record: dict[str, object] = {
        "kdf": "argon2id",
        "salt": _b64encode(salt),
        "opslimit": opslimit,
        "memlimit": memlimit,
        "sealed": _b64encode(bytes(box.encrypt(seed))),
    }
    if store_key is not None:
        record["store_key"] = _b64encode(bytes(box.encrypt(store_key)))
    return record


def _write_atomic(path: Path, data: bytes, *, replace: bool) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except OSError as exc:
        raise KeystoreError(f"cannot write {path}: {exc.strerror}") from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
        _fsync_directory(path.parent)
    except OSError as exc:
        raise KeystoreError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        # After a replace the temporary name is gone; after a link or a failure it is not.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _link_no_clobber(tmp: Path, path: Path) -> None:
    """Publish ``tmp`` as ``path`` only if ``path`` does not exist, atomically."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise IdentityExists(
            f"{path} already holds an identity; replacing it loses its links (use --force)"
        ) from None
    except OSError as exc:
        # Some filesystems have no hard links; there a check-then-rename must do.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        if path.exists():
            raise IdentityExists(
                f"{path} already holds an identity; replacing it loses its links (use --force)"
            ) from None
        os.replace(tmp, path)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading ------------------------------------------------------------------------------


def load_seed(home: Path, *, passphrase: str | None = None) -> StoredIdentity:
    """Read the stored seed; a sealed one needs ``passphrase`` (ignored for an open one).

    Raises ``NotInitialized`` (no file), ``PassphraseRequired``, ``WrongPassphrase``, or
    ``KeystoreError`` naming what is wrong with the file.
    """
    path = identity_path(home)
    record = _read_record(path)
    name = record.get("name")
    if not isinstance(name, str) or not name:
        raise KeystoreError(f"{path} is damaged: no device name")
    has_seed, has_sealed = "seed" in record, "sealed" in record
    if has_seed == has_sealed:
        raise KeystoreError(
            f"{path} is damaged: it must hold exactly one of a seed or a sealed seed"
        )
    store_key = None
    if has_seed:
        seed = _b64field(record, "seed", path)
    else:
        seed, store_key = _unseal(record, path, passphrase)
    if len(seed) != SEED_LEN:
        raise KeystoreError(f"{path} is damaged: the seed is {len(seed)} bytes, not {SEED_LEN}")
    if store_key is not None and len(store_key) != STORE_KEY_LEN:
        raise KeystoreError(f"{path} is damaged: the store key is {len(store_key)} bytes")
    return StoredIdentity(seed=seed, device_name=name, sealed=has_sealed, store_key=store_key)


def load_identity(home: Path, *, passphrase: str | None = None) -> PhoneIdentity:
    """The phone's Ed25519 identity, from the stored seed (see ``load_seed``)."""
    return PhoneIdentity.from_seed(load_seed(home, passphrase=passphrase).seed)


def is_sealed(home: Path) -> bool:
    """Whether the stored identity needs a passphrase (``NotInitialized`` if none)."""
    path = identity_path(home)
    return "sealed" in _read_record(path)


def _read_record(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise NotInitialized(
            f"no phone identity in {path.parent}: run `medic-phone init` first"
        ) from None
    except OSError as exc:
        raise KeystoreError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise KeystoreError(f"{path} is too large to be a phone identity file")
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise KeystoreError(f"{path} is damaged: not a JSON identity file") from None
    if not isinstance(record, dict):
        raise KeystoreError(f"{path} is damaged: not a JSON object")
    version = record.get("version")
    if version != KEYSTORE_VERSION or isinstance(version, bool):
        raise KeystoreError(f"{path} has unknown keystore version {version!r}")
    return record


def _unseal(
    record: dict[str, Any], path: Path, passphrase: str | None
) -> tuple[bytes, bytes | None]:
    if record.get("kdf") != "argon2id":
        raise KeystoreError(f"{path} is damaged: unknown key derivation {record.get('kdf')!r}")
    salt = _b64field(record, "salt", path)
    if len(salt) != argon2id.SALTBYTES:
        raise KeystoreError(f"{path} is damaged: the salt is {len(salt)} bytes")
    opslimit = _intfield(record, "opslimit", path, argon2id.OPSLIMIT_MIN, _MAX_OPSLIMIT)
    memlimit = _intfield(record, "memlimit", path, argon2id.MEMLIMIT_MIN, _MAX_MEMLIMIT)
    sealed = _b64field(record, "sealed", path)
    sealed_store_key = _b64field(record, "store_key", path) if "store_key" in record else None
    if not passphrase:
        raise PassphraseRequired(
            f"{path} is sealed with a passphrase: give it on a terminal (asked for), with"
            " --passphrase-file PATH, or in FIELDSTATION_PASSPHRASE"
        )
    key = argon2id.kdf(
        SecretBox.KEY_SIZE,
        _passphrase_bytes(passphrase),
        salt,
        opslimit=opslimit,
        memlimit=memlimit,
    )
    box = SecretBox(key)
    try:
        seed = bytes(box.decrypt(sealed))
    except CryptoError:
        # The MAC cannot tell a wrong passphrase from a flipped bit; the former is likelier.
        raise WrongPassphrase(f"the passphrase does not open {path}") from None
    if sealed_store_key is None:
        return seed, None
    try:
        return seed, bytes(box.decrypt(sealed_store_key))
    except CryptoError:
        raise KeystoreError(f"{path} is damaged: its store key does not open") from None


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64field(record: dict[str, Any], name: str, path: Path) -> bytes:
    value = record.get(name)
    if not isinstance(value, str):
        raise KeystoreError(f"{path} is damaged: {name!r} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeystoreError(f"{path} is damaged: {name!r} is not base64") from None


def _intfield(record: dict[str, Any], name: str, path: Path, low: int, high: int) -> int:
    value = record.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise KeystoreError(f"{path} is damaged: {name!r} is not an integer in [{low}, {high}]")
    return value
