"""The phone's identity key on disk: one 0600 file, optionally sealed by a passphrase.

Sealing uses argon2id (PyNaCl's ``pwhash``) to derive a ``SecretBox`` key. The file is
written atomically (temporary file, fsync, rename) and created 0600 from the start,
never chmod-ed after.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from nacl import pwhash
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox
from nacl.utils import random as random_bytes

from medic_phone.errors import KeystoreError, NotInitialized, WrongPassphrase
from tunnel.identity import PhoneIdentity

KEY_FILE = "identity.key"
_KDF = pwhash.argon2id
DEFAULT_HOME = Path("~/.local/share/medic-phone")


def resolve_home(home: str | None) -> Path:
    """--home, else $FIELDSTATION_PHONE_HOME, else ~/.local/share/medic-phone."""
    chosen = home or os.environ.get("FIELDSTATION_PHONE_HOME") or str(DEFAULT_HOME)
    return Path(chosen).expanduser()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def create_identity(
    home: Path, *, name: str, passphrase: str | None = None, force: bool = False
) -> PhoneIdentity:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = home / KEY_FILE
    if path.exists() and not force:
        raise KeystoreError(f"{path} already holds an identity (use --force to replace it)")
    identity = PhoneIdentity.generate()
    record: dict[str, object] = {"version": 1, "name": name}
    if passphrase:
        salt = random_bytes(_KDF.SALTBYTES)
        ops, mem = _KDF.OPSLIMIT_INTERACTIVE, _KDF.MEMLIMIT_INTERACTIVE
        key = _KDF.kdf(SecretBox.KEY_SIZE, passphrase.encode(), salt, opslimit=ops, memlimit=mem)
        sealed = SecretBox(key).encrypt(identity.seed)
        record.update(
            kdf="argon2id",
            salt=base64.b64encode(salt).decode(),
            opslimit=ops,
            memlimit=mem,
            sealed=base64.b64encode(bytes(sealed)).decode(),
        )
    else:
        record["seed"] = base64.b64encode(identity.seed).decode()
    _write_atomic(path, json.dumps(record).encode())
    return identity


def load_identity(home: Path, *, passphrase: str | None = None) -> PhoneIdentity:
    path = home / KEY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotInitialized(f"no identity in {home}: run `medic-phone init` first") from None
    except OSError as exc:
        raise KeystoreError(f"cannot read {path}: {exc.strerror}") from None
    try:
        record = json.loads(raw)
        if record.get("version") != 1:
            raise KeystoreError(f"{path}: unknown keystore version {record.get('version')!r}")
        if "seed" in record:
            seed = base64.b64decode(record["seed"], validate=True)
        else:
            if not passphrase:
                raise WrongPassphrase(f"{path} is sealed: give --passphrase")
            key = _KDF.kdf(
                SecretBox.KEY_SIZE,
                passphrase.encode(),
                base64.b64decode(record["salt"]),
                opslimit=int(record["opslimit"]),
                memlimit=int(record["memlimit"]),
            )
            try:
                seed = SecretBox(key).decrypt(base64.b64decode(record["sealed"]))
            except CryptoError:
                raise WrongPassphrase("wrong passphrase for the phone identity") from None
        return PhoneIdentity.from_seed(bytes(seed))
    except KeystoreError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise KeystoreError(f"{path} is damaged ({type(exc).__name__})") from None
