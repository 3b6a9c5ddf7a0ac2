"""The ``medic-phone`` command: the medic's phone node."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from medic_phone.cli_common import HOME as _HOME
from medic_phone.cli_common import fail as _fail
from medic_phone.cli_common import open_store as _open_store
from medic_phone.cli_common import warn_if_clear as _warn_if_clear
from medic_phone.errors import IdentityExists, PhoneError
from medic_phone.keystore import create_identity, identity_path, resolve_home
from medic_phone.link_output import print_human, print_json
from medic_phone.passphrase import passphrase_file_option, read_passphrase, unlock
from medic_phone.sealing import new_store_key
from medic_phone.store import PhoneStore
from tunnel.errors import OfferFormatError, TunnelError
from wire.control import Failure, Unlink, UnlinkReply


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fieldstation")
def main() -> None:
    """The medic's phone: the authority and the only key holder."""


@main.command()
@_HOME
@click.option("--name", default="medic-phone", show_default=True, help="This device's name.")
@click.option(
    "--passphrase",
    "ask",
    is_flag=True,
    help="Protect the identity key and the store with a passphrase, asked for on the "
    "terminal (or given by --passphrase-file or FIELDSTATION_PASSPHRASE).",
)
@passphrase_file_option
@click.option("--force", is_flag=True, help="Replace an existing identity (its links are lost).")
def init(
    home: Path | None, name: str, ask: bool, passphrase_file: Path | None, force: bool
) -> None:
    """Create the phone's identity and its store.

    With a passphrase, the identity key and everything the store keeps that could
    carry a patient's words or resume a link are sealed under it (argon2id, then
    XSalsa20-Poly1305); without one, they are kept in clear.
    """
    directory = resolve_home(str(home) if home else None)
    try:
        passphrase = read_passphrase(passphrase_file, ask=ask, confirm=True)
        if not force and identity_path(directory).exists():
            raise IdentityExists(
                f"{identity_path(directory)} already holds an identity; replacing it loses"
                " its links (use --force)"
            )
        # The store first: a home whose store cannot take this key is refused before the
        # identity is replaced.
        store_key = new_store_key() if passphrase else None
        asyncio.run(_create_store(directory, store_key))
        identity = create_identity(
            directory, name=name, passphrase=passphrase, force=force, store_key=store_key
        )
    except PhoneError as exc:
        _fail(str(exc))
    click.echo(f"Initialised {directory}")
    click.echo(f"Phone fingerprint: {identity.fingerprint}")
    if passphrase:
        click.echo("Protected: the identity key and the store are sealed under the passphrase.")
    else:
        click.echo(
            "NOT PROTECTED: no passphrase, so the identity key and the store (phone.db) are "
            "kept in clear. Whoever copies this phone's files reads every command and "
            "message and can resume its links. To protect them, run init on a new home "
            "with --passphrase."
        )


async def _create_store(directory: Path, store_key: bytes | None) -> None:
    async with PhoneStore.create(directory, store_key=store_key):
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
@passphrase_file_option
@click.option(
    "--discover-timeout",
    type=click.FloatRange(min=0.1),
    default=3.0,
    show_default=True,
    help="With a code: how long to wait for a first station to answer on mDNS.",
)
@click.option(
    "--no-mdns", is_flag=True, help="Do not listen for the station on mDNS (URI or --connect)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON event per line.")
@click.option(
    "-v", "--verbose", is_flag=True, help="Log states and counts to stderr (never content)."
)
def link(
    uri_or_code: str,
    home: Path | None,
    station: str | None,
    connect: str | None,
    passphrase_file: Path | None,
    discover_timeout: float,
    no_mdns: bool,
    as_json: bool,
    verbose: bool,
) -> None:
    """Pair with a station (URI or short code) and stay linked until logout or Ctrl-C.

    Running it again with the same URI or code resumes that link.
    """
    from medic_phone.node import PhoneNode
    from medic_phone.targets import resolve_target

    if verbose:
        import logging

        logging.basicConfig(
            level=logging.DEBUG, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
        )
        logging.getLogger("zeroconf").setLevel(
            logging.DEBUG if os.environ.get("FS_ZC_DEBUG") else logging.INFO
        )
        logging.getLogger("websockets").setLevel(logging.INFO)
        logging.getLogger("aiosqlite").setLevel(logging.INFO)
    directory = resolve_home(str(home) if home else None)
    emit = print_json if as_json else print_human
    paired = False

    def track(event: dict[str, Any]) -> None:
        nonlocal paired
        paired = paired or event["event"] in ("paired", "link_up")
        emit(event)

    async def run() -> int:
        unlocked = unlock(directory, passphrase_file)
        async with _open_store(directory, unlocked) as store:
            _warn_if_clear(store, unlocked)
            target = await resolve_target(
                uri_or_code,
                store,
                station=station,
                connect=connect,
                listen_for=discover_timeout,
                mdns=not no_mdns,
            )
            nonlocal paired
            paired = await store.find_link(target.key) is not None
            node = PhoneNode(
                store, unlocked.identity, track, home=directory, device_name=unlocked.device_name
            )
            return await node.run(target)

    try:
        code = asyncio.run(run())
    except KeyboardInterrupt:
        if paired:
            click.echo("detached; run the same command again to resume the link", err=True)
        else:
            click.echo("stopped before pairing: nothing was linked", err=True)
        raise click.exceptions.Exit(130) from None
    except OfferFormatError as exc:
        _fail(f"not a valid pairing URI or code: {exc}", 2)
    except (PhoneError, TunnelError) as exc:
        _fail(str(exc))
    raise click.exceptions.Exit(code)


@main.command()
@_HOME
@passphrase_file_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array in order of application.")
def log(home: Path | None, passphrase_file: Path | None, as_json: bool) -> None:
    """Print the commands this phone has applied."""
    directory = resolve_home(str(home) if home else None)

    async def read() -> list[dict[str, Any]]:
        unlocked = unlock(directory, passphrase_file)
        async with _open_store(directory, unlocked) as store:
            _warn_if_clear(store, unlocked)
            return [dict(c) for c in await store.commands()]

    try:
        rows = asyncio.run(read())
    except PhoneError as exc:
        _fail(str(exc))
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
@passphrase_file_option
@click.option("--chat", default="field-notes", show_default=True, help="Chat to add it to.")
@click.argument("text")
def say(home: Path | None, passphrase_file: Path | None, chat: str, text: str) -> None:
    """Add a message to the phone's own chats (as if typed on the phone).

    Every running `link` is told at once and pushes it to its station's mirror.
    """
    import time

    from medic_phone.link_control import tell_links

    directory = resolve_home(str(home) if home else None)

    async def add() -> int:
        unlocked = unlock(directory, passphrase_file)
        async with _open_store(directory, unlocked) as store:
            _warn_if_clear(store, unlocked)
            await store.ensure_chat(chat, chat.replace("-", " ").title())
            return await store.add_message(chat, "medic (phone)", text, time.time())

    try:
        version = asyncio.run(add())
    except PhoneError as exc:
        _fail(str(exc))
    tell_links(directory)
    click.echo(f"added (version {version})")


@main.command()
@_HOME
@click.option("--station", "station_name", default=None, help="Only the link with this station.")
@click.option("--session", default=None, help="Only the link with this session (id prefix).")
@click.option("--all", "every", is_flag=True, help="Every running link of this phone.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0, max=3600),
    default=10.0,
    show_default=True,
    help="Seconds to keep trying to reach the station.",
)
def unlink(
    home: Path | None, station_name: str | None, session: str | None, every: bool, wait: float
) -> None:
    """Log the station out, through the running `link`, and say whether it heard.

    If the station cannot be reached within --wait seconds, the running link keeps
    trying, and the exit status is 1.
    """
    from medic_phone.link_control import ask, running_links

    directory = resolve_home(str(home) if home else None)
    links = running_links(directory)
    if station_name is not None:
        links = [r for r in links if r.info.station == station_name]
    if session is not None:
        links = [r for r in links if (r.info.session or "").startswith(session)]
    if not links:
        _fail(f"no running `medic-phone link` for {directory} matches")
    if len(links) > 1 and not every:
        names = ", ".join(f"{r.info.station} ({(r.info.session or '')[:16]})" for r in links)
        _fail(f"several links are running ({names}): choose --station, --session or --all")
    failed = False
    for running in links:
        try:
            reply = ask(running.socket, Unlink(wait), UnlinkReply, timeout=wait + 5)
        except PhoneError as exc:
            click.echo(f"medic-phone: {exc}", err=True)
            failed = True
            continue
        if isinstance(reply, Failure):
            click.echo(f"medic-phone: {reply.error}", err=True)
            failed = True
            continue
        name = reply.station or running.info.station
        if reply.reached:
            if reply.already_ended:
                click.echo(f"Station {name!r} had already ended the session ({reply.reason})")
            else:
                click.echo(f"Unlinked: station {name!r} logged the session out")
        elif not reply.paired:
            click.echo("Stopped pairing (nothing was linked yet)")
        else:
            failed = True
            click.echo(f"medic-phone: {_not_reached(name, reply)}", err=True)
    raise click.exceptions.Exit(1 if failed else 0)


def _not_reached(station: str, reply: UnlinkReply) -> str:
    text = (
        f"station {station!r} was not reached within {reply.waited_s or 0:g} s; the running"
        " link keeps trying to log it out"
    )
    if reply.policy is not None:
        at = datetime.fromtimestamp(reply.policy.logout_at, UTC)
        text += (
            f"; the station's own policy logs the session out at {at:%H:%M:%S} UTC"
            f" ({reply.policy.reason}) unless the kiosk is in use"
        )
    else:
        text += "; the station's own policy (inactivity, by default 120 s) logs it out"
    return text


def _register() -> None:
    from medic_phone.cli_links import confirm, discard, links, pending, receipts

    for command in (links, pending, confirm, discard, receipts):
        main.add_command(command)


_register()
