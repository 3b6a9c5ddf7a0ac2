"""What every ``medic-phone`` command shares: the home option, failing, the store."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import NoReturn

import click

from medic_phone.passphrase import Unlocked
from medic_phone.store import PhoneStore

HOME = click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Phone data directory (default: $FIELDSTATION_PHONE_HOME or ~/.local/share/medic-phone).",
)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"medic-phone: {message}", err=True)
    sys.exit(code)


def open_store(
    directory: Path, unlocked: Unlocked
) -> contextlib.AbstractAsyncContextManager[PhoneStore]:
    return PhoneStore.open(directory, store_key=unlocked.store_key)


def warn_if_clear(store: PhoneStore, unlocked: Unlocked) -> None:
    if unlocked.sealed and not store.sealed:
        click.echo(
            f"medic-phone: warning: {store.path} predates store sealing and is kept in clear;"
            " to protect it, run init with --passphrase on a new home",
            err=True,
        )
