"""``medic-phone links``, ``pending``, ``confirm``, ``discard`` and ``receipts``: the
stations this phone is linked to, the commands it keeps apart, and the wipe receipts."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from medic_phone.cli_common import HOME, fail, open_store, warn_if_clear
from medic_phone.errors import PhoneError
from medic_phone.keystore import resolve_home
from medic_phone.link_control import ask, running_links, tell_links
from medic_phone.node import TYPED_MESSAGES
from medic_phone.passphrase import passphrase_file_option, unlock
from medic_phone.store import PhoneStore
from wire import WireError
from wire.app import Receipt
from wire.control import Decide, DecideReply, Failure
from wire.receipts import read_body, verify


def _when(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


async def _with_store(home: Path, passphrase_file: Path | None, job: Any) -> Any:
    unlocked = unlock(home, passphrase_file)
    async with open_store(home, unlocked) as store:
        warn_if_clear(store, unlocked)
        return await job(store)


def _run(job: Any) -> Any:
    try:
        return asyncio.run(job)
    except PhoneError as exc:
        fail(str(exc))


@click.command()
@HOME
@passphrase_file_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def links(home: Path | None, passphrase_file: Path | None, as_json: bool) -> None:
    """List the stations this phone is linked to (and was): station, session, linked
    since, last contact, state, queued."""
    directory = resolve_home(str(home) if home else None)
    rows = _run(_with_store(directory, passphrase_file, lambda store: store.links()))
    running = {r.info.session: r.info for r in running_links(directory)}
    out = []
    for row in rows:
        live = running.get(row["id"])
        state = row["state"]
        if state == "linked":
            state = ("online" if live.linked else "offline") if live else "not running"
        out.append(
            {
                "station": row["station"],
                "session": row["id"],
                "linked_since": row["paired_at"],
                "last_contact": (live.last_contact if live else None) or row["last_contact"],
                "state": state,
                "end_reason": row["end_reason"],
                "queued": live.queued if live else 0,
                "pid": live.pid if live else None,
            }
        )
    if as_json:
        click.echo(json.dumps(out))
        return
    if not out:
        click.echo("No links yet.")
    for link in out:
        ended = f" ({link['end_reason']})" if link["end_reason"] else ""
        click.echo(
            f"{link['station']:20} {link['session'][:16]}  since {_when(link['linked_since'])}"
            f"  last contact {_when(link['last_contact'])}  {link['state']}{ended}"
            f"  queued {link['queued']}"
        )


@click.command()
@HOME
@passphrase_file_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def pending(home: Path | None, passphrase_file: Path | None, as_json: bool) -> None:
    """Commands that reached the phone after their TTL: kept apart, not applied, until
    you `confirm` or `discard` them."""
    directory = resolve_home(str(home) if home else None)
    rows = _run(_with_store(directory, passphrase_file, lambda store: store.pending()))
    if as_json:
        click.echo(json.dumps([dict(r) for r in rows]))
        return
    if not rows:
        click.echo("No commands waiting.")
    for row in rows:
        click.echo(
            f"[{row['seq']}] {row['station']} ({row['link_id'][:16]}),"
            f" arrived {_when(row['received_at'])}: {row['text']}"
        )


def _decide(
    home: Path | None, passphrase_file: Path | None, seq: int, session: str | None, confirm: bool
) -> None:
    directory = resolve_home(str(home) if home else None)

    async def find(store: PhoneStore) -> list[str]:
        return [
            r["link_id"]
            for r in await store.pending()
            if r["seq"] == seq and (session is None or r["link_id"].startswith(session))
        ]

    matches = _run(_with_store(directory, passphrase_file, find))
    if not matches:
        fail(f"no command {seq} is waiting (see `medic-phone pending`)")
    if len(matches) > 1:
        fail(f"several links have a command {seq} waiting: choose --session")
    link_id = matches[0]
    verb = "applied" if confirm else "discarded"
    for live in running_links(directory):
        if live.info.session == link_id:
            # The running link applies it and tells the station at once.
            reply = ask(live.socket, Decide(seq, confirm), DecideReply, timeout=10)
            if isinstance(reply, Failure):
                fail(reply.error)
            click.echo(f"[{seq}] {verb}; the station was told")
            return

    async def decide(store: PhoneStore) -> bool:
        return await store.decide(
            link_id, seq, confirm=confirm, as_messages=TYPED_MESSAGES, now=time.time()
        )

    if not _run(_with_store(directory, passphrase_file, decide)):
        fail(f"no command {seq} is waiting")
    if confirm:
        tell_links(directory)  # its message: the other links' mirrors show it
    click.echo(f"[{seq}] {verb} (no link is running: the station hears of it no more)")


@click.command()
@HOME
@passphrase_file_option
@click.option("--session", default=None, help="The link's session (id prefix), if ambiguous.")
@click.argument("seq", type=click.IntRange(min=1))
def confirm(home: Path | None, passphrase_file: Path | None, session: str | None, seq: int) -> None:
    """Apply a command that was kept apart (it arrived after its TTL)."""
    _decide(home, passphrase_file, seq, session, confirm=True)


@click.command()
@HOME
@passphrase_file_option
@click.option("--session", default=None, help="The link's session (id prefix), if ambiguous.")
@click.argument("seq", type=click.IntRange(min=1))
def discard(home: Path | None, passphrase_file: Path | None, session: str | None, seq: int) -> None:
    """Drop a command that was kept apart (it arrived after its TTL); it is never applied."""
    _decide(home, passphrase_file, seq, session, confirm=False)


@click.command()
@HOME
@passphrase_file_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def receipts(home: Path | None, passphrase_file: Path | None, as_json: bool) -> None:
    """The signed wipe receipts of this phone's sessions, checked offline.

    Exit status 1 if any receipt fails its signature check."""
    directory = resolve_home(str(home) if home else None)
    rows = _run(_with_store(directory, passphrase_file, lambda store: store.receipts()))
    out: list[dict[str, Any]] = []
    for row in rows:
        receipt = Receipt(row["body"], row["signature"])
        try:
            if row["key"] is None:
                raise WireError("no receipt key was learnt for this session")
            facts = verify(row["key"], receipt)
            verified = True
        except WireError:
            verified = False
            try:
                facts = read_body(row["body"])
            except WireError:
                out.append(
                    {"session": row["link_id"], "station": row["station"], "verified": False}
                )
                continue
        out.append(
            {
                "session": facts.session,
                "station": facts.station,
                "reason": facts.reason,
                "started": facts.started,
                "ended": facts.ended,
                "queued": facts.queued,
                "sent": facts.sent,
                "applied": facts.applied,
                "undelivered_seqs": list(facts.undelivered),
                "verified": verified and facts.session == row["link_id"],
            }
        )
    if as_json:
        click.echo(json.dumps(out))
    elif not out:
        click.echo("No receipts yet.")
    for item in [] if as_json else out:
        check = "signature ok" if item["verified"] else "SIGNATURE DOES NOT VERIFY"
        if "reason" not in item:
            click.echo(f"{item['station']} {item['session'][:16]}: unreadable receipt; {check}")
            continue
        lost = item["undelivered_seqs"]
        fate = (
            f"{len(lost)} command(s) typed at the kiosk never arrived"
            f" (seq {', '.join(map(str, lost))})"
            if lost
            else "every command typed at the kiosk arrived"
        )
        click.echo(
            f"{item['station']} {item['session'][:16]}: session ended ({item['reason']}) at"
            f" {_when(item['ended'])}; {item['queued']} typed, {item['applied']} applied;"
            f" {fate}; {check}"
        )
    if any(not item["verified"] for item in out):
        raise SystemExit(1)
