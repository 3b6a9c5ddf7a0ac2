"""``station send``, ``open``, ``status`` and ``logout``: talking to a running station."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

import click

from station.cli.common import DURATION, ask, control_option, undelivered_note
from station.config import rfc3339_now
from wire import WireError, jsonlines
from wire.codec import to_json
from wire.control import (
    WORKER_REQUESTS,
    Failure,
    LaunchLink,
    Logout,
    LogoutReply,
    Open,
    Route,
    RouteReply,
    Send,
    SendReply,
    Status,
    StatusReply,
    Wait,
    WaitReply,
)


@click.command()
@control_option
@click.option("--session", default=None, help="Session id (prefix); needed with several sessions.")
@click.option(
    "--chat", default=None, help="The phone's chat to add it to (default: the kiosk chat)."
)
@click.option(
    "--id",
    "send_id",
    default=None,
    metavar="ID",
    help="Make a retry safe: a send with an id already queued in this session queues "
    "nothing again (with stdin, each line's id is ID:LINE).",
)
@click.option(
    "--ttl",
    type=DURATION,
    default=None,
    help="If it reaches the phone later than this (e.g. 2s, 10m), the phone keeps it apart "
    "for the medic to confirm or discard, instead of applying it.",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0, max=3600),
    default=None,
    metavar="SECONDS",
    help="Wait until every command is applied on the phone; exit 4 (with the state each "
    "reached) if that takes longer.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per command.")
@click.argument("text", required=False)
def send(
    control: Path,
    session: str | None,
    chat: str | None,
    send_id: str | None,
    ttl: float | None,
    wait: float | None,
    as_json: bool,
    text: str | None,
) -> None:
    """Send TEXT to the paired phone; without TEXT (or with '-'), one command per line of
    stdin. TEXT given here is visible to other local users in the process list: use
    stdin for anything about a patient.

    Each command is answered on its own: queued with its seq, or refused with the
    reason. Exit status: 0 all queued (and, with --wait, applied), 3 some queued and
    some refused, 1 none queued, 4 queued but not all applied within --wait.
    """
    from wire.app import MAX_TEXT

    route = ask(control, Route(session), RouteReply)
    short = route.session[:16]
    lines: Iterable[tuple[int, str]]
    if text is None or text == "-":
        lines = ((n, ln.rstrip("\r\n")) for n, ln in enumerate(sys.stdin, 1) if ln.strip())
        many = True
    else:
        lines, many = [(1, text)], False
    accepted = refused = 0
    seqs: list[int] = []
    late: dict[str, str] = {}
    try:
        with jsonlines.Client(Path(route.control), timeout=(wait or 0) + 10) as worker:
            for number, line in lines:
                label = f"line {number}: " if many else ""
                reply: SendReply | Failure
                if len(line) > MAX_TEXT:
                    reply = Failure(f"{len(line):,} characters; the limit is {MAX_TEXT:,}")
                else:
                    key = None if send_id is None else (f"{send_id}:{number}" if many else send_id)
                    reply = worker.ask(Send(line, chat, key, ttl), WORKER_REQUESTS, SendReply)
                if isinstance(reply, SendReply):
                    accepted += 1
                    seqs.append(reply.seq)
                else:
                    refused += 1
                _print_send(reply, number, label, short, as_json)
            if wait is not None and seqs:
                states = worker.ask(Wait(tuple(seqs), wait), WORKER_REQUESTS, WaitReply)
                if isinstance(states, WaitReply):
                    late = {q: s for q, s in states.states.items() if s != "applied"}
    except WireError as exc:
        click.echo(f"station: {exc}", err=True)
        refused += 1
    if refused and accepted:
        click.echo(f"station: {accepted} command(s) queued, {refused} refused", err=True)
    if late:
        listed = ", ".join(
            f"seq {q}: {s}" for q, s in sorted(late.items(), key=lambda i: int(i[0]))
        )
        click.echo(f"station: not applied on the phone within {wait:g} s ({listed})", err=True)
    elif wait is not None and seqs and not as_json:
        click.echo(f"applied on the phone: seq {', '.join(map(str, seqs))}")
    if refused:
        raise click.exceptions.Exit(3 if accepted else 1)
    raise click.exceptions.Exit(4 if late else 0)


def _print_send(
    reply: SendReply | Failure, number: int, label: str, session: str, as_json: bool
) -> None:
    if as_json:
        ok = {"ok": isinstance(reply, SendReply)}
        out = {"line": number, "session": session, **ok, **to_json(reply), "ts": rfc3339_now()}
        click.echo(json.dumps(out, separators=(",", ":")))
    elif isinstance(reply, SendReply):
        again = " (already queued with this --id)" if reply.duplicate else ""
        click.echo(f"{label}queued as seq {reply.seq} for session {session}{again}")
    else:
        click.echo(f"station: {label}{reply.error}", err=True)
    sys.stdout.flush()


@click.command(name="open")
@control_option
@click.option("--json", "as_json", is_flag=True, help="Print the link as one JSON object.")
def open_page(control: Path, as_json: bool) -> None:
    """Print a fresh link to the kiosk page; it works once, within 30 s.

    The page's address alone (in `station start`'s output and `station status`) opens
    nothing: the link comes only over the control socket, so only the station's owner
    gets one. Open it in the kiosk's browser; the page keeps its key in memory only.
    """
    reply = ask(control, Open(), LaunchLink)
    if as_json:
        click.echo(json.dumps(to_json(reply)))
        return
    click.echo(reply.link)
    click.echo(f"(works once, within {reply.expires_in:.0f} s)", err=True)


@click.command()
@control_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.option(
    "--link", "with_link", is_flag=True, help="Add a fresh one-use link to the kiosk page."
)
def status(control: Path, as_json: bool, with_link: bool) -> None:
    """Show the station's offer and sessions."""
    reply = ask(control, Status(link=with_link), StatusReply)
    if as_json:
        out = to_json(reply)
        if not with_link:
            for key in ("link", "label", "expires_in"):
                out.pop(key, None)
        click.echo(json.dumps(out))
        return
    click.echo(f"Station {reply.name!r} on port {reply.port}, up {reply.uptime_s} s")
    if reply.addresses:
        mdns = "announced on mDNS" if reply.mdns else "not on mDNS"
        click.echo(f"Phones connect to: {', '.join(reply.addresses)} ({mdns})")
    accept = reply.accept
    if accept is not None:
        refused = accept.refused_per_source + accept.refused_total
        if refused or accept.evicted or accept.pre_hello_timeouts:
            click.echo(
                f"Unauthenticated connections: {accept.unproven} open (at most"
                f" {accept.limit_total}, {accept.limit_per_source} per address); {refused}"
                f" refused, {accept.evicted} dropped for others, {accept.pre_hello_timeouts}"
                " timed out before their hello"
            )
    if reply.offer_open:
        if reply.code_paused_s:
            notice = reply.code_pairing
            click.echo(notice[:1].upper() + notice[1:])
        else:
            click.echo(f"Pairing code: {reply.pair_code}")
    if reply.ui:
        click.echo(f"Kiosk page: {reply.ui} ({reply.screens} open)")
    if reply.link and reply.expires_in is not None:
        click.echo(f"Link (works once, within {reply.expires_in:.0f} s): {reply.link}")
    if not reply.sessions:
        click.echo("No paired sessions.")
    for s in reply.sessions:
        state = "linked" if s.linked else "offline"
        name = f"{s.device} ({s.fingerprint})" if s.device else str(s.fingerprint)
        click.echo(
            f"  {s.session[:16]}  {state:7}  queued {s.queued:5}  idle {s.idle_s} s  phone {name}"
        )


@click.command()
@control_option
@click.option("--session", default=None, help="Session id (prefix); needed with several sessions.")
def logout(control: Path, session: str | None) -> None:
    """Log a session out: its worker process ends, which is the wipe."""
    reply = ask(control, Logout(session), LogoutReply)
    for ended in reply.ended:
        click.echo(
            f"logged out session {ended.session[:16]}; wiped"
            f"{undelivered_note(list(ended.undelivered_seqs))}"
        )
