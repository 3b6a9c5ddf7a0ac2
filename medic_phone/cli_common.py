"""What every ``medic-phone`` command shares: the home option, failing, the store."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, NoReturn

import click

from medic_phone.passphrase import Unlocked
from medic_phone.store import PhoneStore

HOME = click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Phone data directory (default: $FIELDSTATION_PHONE_HOME or ~/.local/share/medic-phone).",
)


class Fail(click.ClickException):
    """The command cannot do what was asked: one line on stderr, and its exit status
    (1: it failed; 2: what was typed is not valid)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance

    def show(self, file: Any = None) -> None:
        click.echo(f"medic-phone: {self.format_message()}", err=True)


def fail(message: str, code: int = 1) -> NoReturn:
    raise Fail(message, code)


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
