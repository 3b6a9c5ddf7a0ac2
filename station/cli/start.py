"""``station start``: the supervisor in the foreground, and what it prints."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from station.cli.common import DEFAULTS, DURATION, Fail, control_option, undelivered_note
from station.config import StationConfig, rfc3339_now
from station.errors import StationError
from station.kiosk.browser import DEFAULT_BROWSER, check_browser
from station.supervisor import Supervisor


@click.command()
@click.option(
    "--name", default=DEFAULTS.name, show_default=True, help="Station name shown to phones."
)
@click.option(
    "--host",
    default="0.0.0.0",  # noqa: S104 (phones are on the LAN; the kiosk page stays on loopback)
    show_default=True,
    help="Address phones connect to (default: every interface). A loopback address keeps "
    "the station on this machine and turns mDNS off.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULTS.port,
    show_default=True,
    help="WebSocket port (0: any free port).",
)
@click.option("--no-mdns", is_flag=True, help="Do not advertise on the LAN with mDNS.")
@click.option(
    "--inactivity",
    type=click.FloatRange(min=0.1),
    default=DEFAULTS.inactivity,
    show_default=True,
    help="Log out after this many seconds without input at the kiosk.",
)
@click.option(
    "--max-session",
    type=click.FloatRange(min=0.1),
    default=DEFAULTS.max_session,
    show_default=True,
    help="Log out a session this many seconds after pairing.",
)
@click.option(
    "--wipe-every",
    type=click.FloatRange(min=0.1),
    default=DEFAULTS.wipe_every,
    show_default=True,
    help="Log out every session on this period (the scheduled wipe).",
)
@click.option(
    "--offer-ttl",
    type=click.FloatRange(min=1.0),
    default=DEFAULTS.offer_ttl,
    show_default=True,
    help="Seconds before a pairing offer rotates.",
)
@click.option(
    "--max-sessions",
    type=click.IntRange(1, 256),
    default=DEFAULTS.max_sessions,
    show_default=True,
    help="Sessions at once; past it, no pairing offer is shown until one ends.",
)
@click.option(
    "--queue-limit",
    type=click.IntRange(min=1),
    default=DEFAULTS.queue_limit,
    show_default=True,
    help="Commands a session may hold for an offline phone before refusing more.",
)
@click.option(
    "--command-ttl",
    type=DURATION,
    default=None,
    help="A command that reaches the phone later than this after it was typed is kept apart "
    "on the phone for the medic to confirm or discard (default: off; e.g. 10m).",
)
@click.option(
    "--ui-port",
    type=click.IntRange(0, 65535),
    default=DEFAULTS.ui_port,
    show_default=True,
    help="Port of the kiosk page on 127.0.0.1 (0: any free port; the address is printed).",
)
@click.option("--no-ui", is_flag=True, help="Do not serve the kiosk page.")
@click.option(
    "--kiosk",
    is_flag=True,
    help="Open the kiosk page in Chromium, full screen, with a RAM-only profile renewed at "
    "every logout.",
)
@click.option(
    "--browser",
    default=DEFAULT_BROWSER,
    show_default=True,
    help="The Chromium that --kiosk launches.",
)
@control_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON event per line.")
@click.option(
    "-v", "--verbose", is_flag=True, help="Log states and counts to stderr (never content)."
)
def start(
    name: str,
    host: str,
    port: int,
    no_mdns: bool,
    inactivity: float,
    max_session: float,
    wipe_every: float,
    offer_ttl: float,
    max_sessions: int,
    queue_limit: int,
    command_ttl: float | None,
    ui_port: int,
    no_ui: bool,
    kiosk: bool,
    browser: str,
    control: Path,
    as_json: bool,
    verbose: bool,
) -> None:
    """Run the station supervisor until SIGINT/SIGTERM (every session is wiped)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr)
    # websockets logs each request line and header at DEBUG: the kiosk pages' keys and
    # tokens travel there, and stderr may be a journal other users read. It also logs a
    # line per connection at INFO, which a flood of connections turns into a flood of
    # lines: only with -v.
    logging.getLogger("websockets").setLevel(logging.INFO if verbose else logging.WARNING)
    if kiosk and no_ui:
        raise Fail("--kiosk shows the kiosk page: it cannot go with --no-ui", 2)
    if kiosk:
        try:
            check_browser(browser)
        except StationError as exc:
            raise Fail(str(exc), 2) from None
    config = StationConfig(
        name=name,
        host=host,
        port=port,
        mdns=not no_mdns,
        inactivity=inactivity,
        max_session=max_session,
        wipe_every=wipe_every,
        control=control,
        offer_ttl=offer_ttl,
        max_sessions=max_sessions,
        queue_limit=queue_limit,
        command_ttl=command_ttl,
        ui=not no_ui,
        ui_port=ui_port,
        kiosk_browser=browser if kiosk else None,
    )
    emit = _json_printer if as_json else _human_printer
    from wipe.harden import harden_supervisor

    # First: from here on it holds page keys and offers (no core file, no ptrace).
    emit({"event": "supervisor_hardening", **harden_supervisor().as_dict(), "ts": rfc3339_now()})
    supervisor = Supervisor(config, emit)
    try:
        asyncio.run(supervisor.run())
    except StationError as exc:
        raise Fail(str(exc), 2) from None
    except KeyboardInterrupt:
        pass


def _json_printer(event: dict[str, Any]) -> None:
    click.echo(json.dumps(event, separators=(",", ":")))
    sys.stdout.flush()


def _human_printer(event: dict[str, Any]) -> None:
    kind = event["event"]
    if kind == "preflight":
        from wipe.preflight import Check, format_preflight

        click.echo(format_preflight([Check(**c) for c in event["checks"]]))
    elif kind in ("hardening", "supervisor_hardening"):
        measures = {k: v for k, v in event.items() if isinstance(v, dict)}
        line = ", ".join(
            f"{k}={'yes' if v['applied'] else 'NO (' + str(v['detail']) + ')'}"
            for k, v in measures.items()
        )
        who = "worker" if kind == "hardening" else "supervisor"
        click.echo(f"{who} hardening: {line}")
    elif kind in ("ready", "offer"):
        if kind == "ready":
            click.echo(f"Station {event['name']!r} listening on port {event['port']}")
            addresses = ", ".join(event.get("addresses") or [])
            click.echo(f"Phones connect to: {addresses or 'no address is up yet'}")
            if event.get("mdns_note"):
                click.echo(str(event["mdns_note"]))
            elif not event.get("mdns"):
                click.echo("mDNS off (--no-mdns): phones need the QR code or the URI")
            click.echo(f"Control socket: {event['control']}")
            if event.get("ui"):
                click.echo(f"Kiosk page: {event['ui']} (run `station open` for a link to it)")
        if sys.stdout.isatty():
            from station.qr import terminal_qr

            click.echo(terminal_qr(event["pair_uri"]))
        click.echo(f"Pairing code: {event['pair_code']}")
        click.echo(f"Pairing URI:  {event['pair_uri']}")
    elif kind == "paired":
        click.echo(f"Paired session {event['session'][:16]} (phone {event['fingerprint']})")
    elif kind in ("link_down", "link_up"):
        state = "back online" if kind == "link_up" else "offline (queueing)"
        click.echo(f"Session {event['session'][:16]}: {state}")
    elif kind == "logout":
        click.echo(f"Session {event['session'][:16]}: logout ({event['reason']})")
    elif kind == "wiped":
        click.echo(
            f"Session {event['session'][:16]}: wiped{undelivered_note(event['undelivered_seqs'])}"
        )
    elif kind == "pairing_failed":
        click.echo(f"Pairing attempt failed ({event.get('reason') or 'no reason'})")
    elif kind == "code_paused":
        click.echo(f"{event['message'][:1].upper()}{event['message'][1:]}")
        click.echo(f"Next pairing code (after the pause): {event['pair_code']}")
    elif kind == "resume_gap":
        click.echo(
            f"Session {event['session'][:16]}: refused a resume: commands"
            f" {event['first']}-{event['last']} were acknowledged by that phone before"
            " but are missing from its store (restored from an older copy?)"
        )
    elif kind == "advertised":
        click.echo(f"Announced on mDNS as {event['name']!r}")
    elif kind == "addresses":
        click.echo(f"Phones connect to: {', '.join(event['addresses']) or 'no address is up'}")
    elif kind == "kiosk":
        click.echo(f"Kiosk browser started (pid {event['pid']}, RAM profile {event['profile']})")
    sys.stdout.flush()
