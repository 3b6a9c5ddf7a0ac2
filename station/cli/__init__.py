"""The ``station`` command: run the kiosk daemon and talk to it."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fieldstation")
def main() -> None:
    """Field Station kiosk daemon: pair a medic's phone, mirror it, keep nothing."""


def _register() -> None:
    from station.cli.audit import audit
    from station.cli.drills import proxy, simulate
    from station.cli.session import logout, open_page, send, status
    from station.cli.start import start

    for command in (start, send, open_page, status, logout, audit, simulate, proxy):
        main.add_command(command)


_register()
