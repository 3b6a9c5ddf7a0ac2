"""Where the ``medic-phone`` commands get the passphrase, and unlocking the phone with it.

Never from the command line: a process's arguments are readable by every local user
(``/proc/PID/cmdline``). In order of preference: ``--passphrase-file PATH`` (its first
line), the environment variable ``FIELDSTATION_PASSPHRASE`` (readable by the same user
only), or a prompt on the terminal.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from medic_phone.errors import PassphraseRequired, PhoneUsageError
from medic_phone.keystore import is_sealed, load_seed
from tunnel.identity import PhoneIdentity

PASSPHRASE_ENV = "FIELDSTATION_PASSPHRASE"
MAX_FILE_BYTES = 4096
HOW = (
    f"give it on a terminal (asked for), with --passphrase-file PATH, or in {PASSPHRASE_ENV}"
    " (never on the command line, where every local user can read it)"
)

passphrase_file_option = click.option(
    "--passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=f"Read the passphrase from the first line of this file (or set {PASSPHRASE_ENV}; "
    "on a terminal it is asked for).",
)


@dataclass(frozen=True, slots=True)
class Unlocked:
    """The phone's identity and its store key (None: the store is kept in clear)."""

    identity: PhoneIdentity = field(repr=False)
    store_key: bytes | None = field(repr=False)
    sealed: bool
    device_name: str = "medic-phone"


def read_passphrase(file: Path | None, *, ask: bool, confirm: bool = False) -> str | None:
    """The passphrase from ``file``, else the environment, else (``ask``) the terminal.

    None when none is given and ``ask`` is false; ``PassphraseRequired`` when ``ask``
    and there is no terminal to ask on.
    """
    if file is not None:
        return _from_file(file)
    given = os.environ.get(PASSPHRASE_ENV)
    if given:
        return given
    if not ask:
        return None
    if not sys.stdin.isatty():
        raise PassphraseRequired(f"a passphrase is needed and no terminal can ask for it: {HOW}")
    typed: Any = click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm, err=True)
    if not isinstance(typed, str) or not typed:
        raise PhoneUsageError("an empty passphrase protects nothing")
    return typed


def _from_file(file: Path) -> str:
    try:
        with file.open("rb") as handle:
            info = os.fstat(handle.fileno())
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PhoneUsageError(f"cannot read the passphrase file {file}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise PhoneUsageError(f"the passphrase file {file} is not a regular file")
    if len(data) > MAX_FILE_BYTES:
        raise PhoneUsageError(f"the passphrase file {file} is over {MAX_FILE_BYTES} bytes")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        click.echo(
            f"medic-phone: warning: {file} is readable by other users (chmod 600 it)", err=True
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PhoneUsageError(f"the passphrase file {file} is not UTF-8 text") from None
    line = text.split("\n", 1)[0].removesuffix("\r")
    if not line:
        raise PhoneUsageError(f"the passphrase file {file} holds an empty first line")
    return line


def unlock(home: Path, passphrase_file: Path | None) -> Unlocked:
    """Open the phone's keystore: the identity, and the store key of a sealed phone.

    Raises ``NotInitialized``, ``PassphraseRequired`` (sealed, none given, no terminal),
    ``WrongPassphrase`` or ``KeystoreError``.
    """
    sealed = is_sealed(home)
    passphrase = read_passphrase(passphrase_file, ask=True) if sealed else None
    stored = load_seed(home, passphrase=passphrase)
    return Unlocked(
        PhoneIdentity.from_seed(stored.seed), stored.store_key, stored.sealed, stored.device_name
    )
