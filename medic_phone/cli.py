"""The ``medic-phone`` command: the medic's phone node."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from medic_phone.errors import PhoneError
from medic_phone.keystore import create_identity, load_identity, resolve_home
from medic_phone.store import PhoneStore
from tunnel.errors import OfferFormatError, TunnelError

_HOME = click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Phone data directory (default: $FIELDSTATION_PHONE_HOME or ~/.local/share/medic-phone).",
)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"medic-phone: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fieldstation")
def main() -> None:
    """The medic's phone: the authority and the only key holder."""


@main.command()
@_HOME
@click.option("--name", default="medic-phone", show_default=True, help="This device's name.")
@click.option(
    "--passphrase",
    envvar="FIELDSTATION_PASSPHRASE",
    default=None,
    help="Seal the identity key with a passphrase (argon2id).",
)
@click.option("--force", is_flag=True, help="Replace an existing identity (its links are lost).")
def init(home: Path | None, name: str, passphrase: str | None, force: bool) -> None:
    """Create the phone's identity and its store."""
    directory = resolve_home(str(home) if home else None)
    try:
        identity = create_identity(directory, name=name, passphrase=passphrase, force=force)
        asyncio.run(_create_store(directory))
    except PhoneError as exc:
        _fail(str(exc))
        return
    click.echo(f"Initialised {directory}")
    click.echo(f"Phone fingerprint: {identity.fingerprint}")


async def _create_store(directory: Path) -> None:
    async with PhoneStore.create(directory):
        pass


@main.command()
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=3.0,
    show_default=True,
    help="Seconds to listen.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def discover(timeout: float, as_json: bool) -> None:
    """List the stations on the LAN (mDNS)."""
    from medic_phone.discovery import discover as run_discovery

    try:
        stations = asyncio.run(run_discovery(timeout))
    except PhoneError as exc:
        _fail(str(exc))
        return
    rows: list[dict[str, Any]] = [
        {
            "name": s.name,
            "addresses": list(s.addresses),
            "port": s.port,
            "offer_open": s.offer_open,
        }
        for s in stations
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("No stations found.")
    for row in rows:
        offer = "offer open" if row["offer_open"] else "no offer"
        click.echo(f"{row['name']}  {', '.join(row['addresses'])}  port {row['port']}  {offer}")


@main.command()
@click.argument("uri_or_code")
@_HOME
@click.option("--station", default=None, help="Station name, when several are on the LAN.")
@click.option(
    "--connect",
    default=None,
    metavar="HOST:PORT",
    help="Connect here instead (a proxy or port forward).",
)
@click.option(
    "--passphrase",
    envvar="FIELDSTATION_PASSPHRASE",
    default=None,
    help="Passphrase of a sealed identity.",
)
@click.option("--discover-timeout", type=click.FloatRange(min=0.1), default=3.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON event per line.")
def link(
    uri_or_code: str,
    home: Path | None,
    station: str | None,
    connect: str | None,
    passphrase: str | None,
    discover_timeout: float,
    as_json: bool,
) -> None:
    """Pair with a station (URI or short code) and stay linked until logout or Ctrl-C.

    Running it again with the same URI or code resumes that link.
    """
    from medic_phone.node import PhoneNode
    from medic_phone.targets import resolve_target

    directory = resolve_home(str(home) if home else None)
    emit = _json_printer if as_json else _human_printer

    async def run() -> int:
        identity = load_identity(directory, passphrase=passphrase)
        async with PhoneStore.open(directory) as store:
            target = await resolve_target(
                uri_or_code, store, station=station, connect=connect, listen_for=discover_timeout
            )
            node = PhoneNode(store, identity, emit, home=directory)
            return await node.run(target)

    try:
        code = asyncio.run(run())
    except KeyboardInterrupt:
        click.echo("detached; run the same command again to resume the link", err=True)
        sys.exit(130)
    except OfferFormatError as exc:
        _fail(f"not a valid pairing URI or code: {exc}", 2)
        return
    except (PhoneError, TunnelError) as exc:
        _fail(str(exc))
        return
    sys.exit(code)


def _json_printer(event: dict[str, Any]) -> None:
    click.echo(json.dumps(event, separators=(",", ":")))
    sys.stdout.flush()


def _human_printer(event: dict[str, Any]) -> None:
    kind = event["event"]
    if kind == "paired":
        click.echo(f"Linked with station {event['station']!r}")
    elif kind == "link_down":
        click.echo("Link down; reconnecting...")
    elif kind == "link_up":
        click.echo("Link back up")
    elif kind == "command":
        click.echo(f"[{event['seq']}] {event['text']}")
    elif kind == "logout":
        click.echo(f"Logged out ({event['reason']})")
    sys.stdout.flush()


@main.command()
@_HOME
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array in order of application.")
def log(home: Path | None, as_json: bool) -> None:
    """Print the commands this phone has applied."""
    directory = resolve_home(str(home) if home else None)

    async def read() -> list[dict[str, Any]]:
        async with PhoneStore.open(directory) as store:
            return [dict(c) for c in await store.commands()]

    try:
        rows = asyncio.run(read())
    except PhoneError as exc:
        _fail(str(exc))
        return
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("No commands applied yet.")
    for row in rows:
        stamp = datetime.fromtimestamp(float(row["received_at"]), UTC).strftime("%H:%M:%S")
        click.echo(f"{stamp}  [{row['seq']}] {row['station']}: {row['text']}")


@main.command()
@_HOME
@click.option("--chat", default="field-notes", show_default=True, help="Chat to add it to.")
@click.argument("text")
def say(home: Path | None, chat: str, text: str) -> None:
    """Add a message to the phone's own chats (as if typed on the phone).

    A running `link` pushes it to the station's mirror within a second.
    """
    import time

    directory = resolve_home(str(home) if home else None)

    async def add() -> int:
        async with PhoneStore.open(directory) as store:
            await store.ensure_chat(chat, chat.replace("-", " ").title())
            return await store.add_message(chat, "medic (phone)", text, time.time())

    try:
        version = asyncio.run(add())
    except PhoneError as exc:
        _fail(str(exc))
        return
    click.echo(f"added (version {version})")


@main.command()
@_HOME
def unlink(home: Path | None) -> None:
    """Log the station out remotely, through the running `link`."""
    directory = resolve_home(str(home) if home else None)
    path = directory / "node.sock"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(b'{"op":"unlink"}\n')
            reply = json.loads(sock.makefile().readline() or "{}")
    except (FileNotFoundError, ConnectionRefusedError):
        _fail(f"no running `medic-phone link` for {directory}")
        return
    except (OSError, ValueError) as exc:
        _fail(f"cannot reach the running link: {exc}")
        return
    if not reply.get("ok"):
        _fail(str(reply.get("error", "refused")))
    click.echo("Unlinked: the station logs out")
