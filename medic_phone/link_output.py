"""How ``medic-phone link`` prints its events: JSON lines or lines for a person."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click


def print_json(event: dict[str, Any]) -> None:
    """One JSON line per event, with its time (`--json`)."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    click.echo(json.dumps({**event, "ts": stamp}, separators=(",", ":")))
    sys.stdout.flush()


def print_human(event: dict[str, Any]) -> None:
    """One line for a person, for the events a person needs to see."""
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
    elif kind == "expired":
        click.echo(
            f"[{event['seq']}] kept apart: it arrived {event['late_s']} s after its TTL of"
            f" {event['ttl']:g} s ran out; `medic-phone pending` to confirm or discard it"
        )
    elif kind == "receipt":
        if event["verified"]:
            at = datetime.fromtimestamp(float(event["ended"]), UTC).strftime("%H:%M")
            click.echo(
                f"Station {event['station']!r}: session ended ({event['reason']}) at {at} UTC;"
                f" {event['summary']} (signed receipt kept: `medic-phone receipts`)"
            )
        else:
            click.echo("A wipe receipt arrived that does not verify: not kept", err=True)
    elif kind == "connecting":
        click.echo(f"Connecting to {', '.join(event['addresses'])}")
    elif kind == "connect_failed":
        click.echo(f"  {event['address']}: {event['error']}")
    elif kind == "diagnosis":
        click.echo(f"Cannot reach the station: {event['message']}")
    elif kind == "status":
        click.echo(
            f"Offline for {event['offline_s']:.0f} s; still trying"
            f" (last error: {event['last_error'] or 'none'})"
        )
    sys.stdout.flush()
