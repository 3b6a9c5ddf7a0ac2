"""The ``station`` command: run the kiosk daemon and talk to it."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from drill.profiles import PROFILES
from station.errors import ControlError, StationError
from station.kiosk.browser import DEFAULT_BROWSER, check_browser
from station.supervisor import StationConfig, Supervisor, default_control_path, rfc3339_now
from wire import WireError, jsonlines
from wire.codec import to_json
from wire.control import (
    STATION_REQUESTS,
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

_CONTROL = click.option(
    "--control",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Control socket (default: $XDG_RUNTIME_DIR/fieldstation.sock).",
)


class Duration(click.ParamType):  # type: ignore[type-arg]
    """Seconds, written 90, 90s, 500ms, 5m or 1h."""

    name = "duration"
    _UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip().lower()
        unit = next((u for u in ("ms", "s", "m", "h") if text.endswith(u)), "")
        number = text[: len(text) - len(unit)] if unit else text
        try:
            seconds = float(number) * self._UNITS.get(unit, 1.0)
        except ValueError:
            self.fail(f"{value!r} is not a duration (like 30s, 5m, 1h)", param, ctx)
        if not seconds > 0 or seconds != seconds or seconds == float("inf"):
            self.fail(f"{value!r} is not a positive duration", param, ctx)
        return seconds


DURATION = Duration()


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"station: {message}", err=True)
    sys.exit(code)


def _control_path(path: Path | None) -> Path:
    return path or default_control_path()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fieldstation")
def main() -> None:
    """Field Station kiosk daemon: pair a medic's phone, mirror it, keep nothing."""


@main.command()
@click.option(
    "--name", default="field-station", show_default=True, help="Station name shown to phones."
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
    default=8765,
    show_default=True,
    help="WebSocket port (0: any free port).",
)
@click.option("--no-mdns", is_flag=True, help="Do not advertise on the LAN with mDNS.")
@click.option(
    "--inactivity",
    type=click.FloatRange(min=0.1),
    default=120.0,
    show_default=True,
    help="Log out after this many seconds without input at the kiosk.",
)
@click.option(
    "--max-session",
    type=click.FloatRange(min=0.1),
    default=43200.0,
    show_default=True,
    help="Log out a session this many seconds after pairing.",
)
@click.option(
    "--wipe-every",
    type=click.FloatRange(min=0.1),
    default=3600.0,
    show_default=True,
    help="Log out every session on this period (the scheduled wipe).",
)
@click.option(
    "--offer-ttl",
    type=click.FloatRange(min=1.0),
    default=30.0,
    show_default=True,
    help="Seconds before a pairing offer rotates.",
)
@click.option(
    "--max-sessions",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="Sessions at once; past it, no pairing offer is shown until one ends.",
)
@click.option(
    "--queue-limit",
    type=click.IntRange(min=1),
    default=10_000,
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
    default=0,
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
@_CONTROL
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
    control: Path | None,
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
        _fail("--kiosk shows the kiosk page: it cannot go with --no-ui", 2)
    if kiosk:
        try:
            check_browser(browser)
        except StationError as exc:
            _fail(str(exc), 2)
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
        _fail(str(exc), 2)
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
            f"Session {event['session'][:16]}: wiped{_undelivered_note(event['undelivered_seqs'])}"
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


def _undelivered_note(seqs: list[int]) -> str:
    if not seqs:
        return "; every command reached the phone"
    shown = ", ".join(str(q) for q in seqs[:20]) + (", ..." if len(seqs) > 20 else "")
    return f"; {len(seqs)} command(s) were never delivered (seq {shown})"


@main.command()
@_CONTROL
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
    control: Path | None,
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

    path = _control_path(control)
    try:
        route = _ask(path, Route(session), RouteReply)
    except ControlError as exc:
        _fail(str(exc))
        return
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
        sys.exit(3 if accepted else 1)
    sys.exit(4 if late else 0)


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


R = TypeVar("R")


def _ask(path: Path, request: object, expected: type[R]) -> R:
    """The supervisor's typed answer; ``ControlError`` saying why there is none."""
    try:
        reply = jsonlines.ask(path, request, STATION_REQUESTS, expected)
    except jsonlines.Unreachable as exc:
        if not path.exists():
            raise ControlError(f"no station is running (no control socket at {path})") from None
        raise ControlError(f"the station does not answer: {exc}") from None
    except WireError as exc:
        raise ControlError(f"the station sent a malformed reply: {exc}") from None
    if isinstance(reply, Failure):
        raise ControlError(reply.error)
    return reply


@main.command(name="open")
@_CONTROL
@click.option("--json", "as_json", is_flag=True, help="Print the link as one JSON object.")
def open_page(control: Path | None, as_json: bool) -> None:
    """Print a fresh link to the kiosk page; it works once, within 30 s.

    The page's address alone (in `station start`'s output and `station status`) opens
    nothing: the link comes only over the control socket, so only the station's owner
    gets one. Open it in the kiosk's browser; the page keeps its key in memory only.
    """
    try:
        reply = _ask(_control_path(control), Open(), LaunchLink)
    except ControlError as exc:
        _fail(str(exc))
        return
    if as_json:
        click.echo(json.dumps(to_json(reply)))
        return
    click.echo(reply.link)
    click.echo(f"(works once, within {reply.expires_in:.0f} s)", err=True)


@main.command()
@_CONTROL
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.option(
    "--link", "with_link", is_flag=True, help="Add a fresh one-use link to the kiosk page."
)
def status(control: Path | None, as_json: bool, with_link: bool) -> None:
    """Show the station's offer and sessions."""
    try:
        reply = _ask(_control_path(control), Status(link=with_link), StatusReply)
    except ControlError as exc:
        _fail(str(exc))
        return
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


@main.command()
@_CONTROL
@click.option("--session", default=None, help="Session id (prefix); needed with several sessions.")
def logout(control: Path | None, session: str | None) -> None:
    """Log a session out: its worker process ends, which is the wipe."""
    try:
        reply = _ask(_control_path(control), Logout(session), LogoutReply)
    except ControlError as exc:
        _fail(str(exc))
        return
    for ended in reply.ended:
        click.echo(
            f"logged out session {ended.session[:16]}; wiped"
            f"{_undelivered_note(list(ended.undelivered_seqs))}"
        )


@main.command()
@_CONTROL
@click.option(
    "--scan",
    "scan_text",
    default=None,
    metavar="TEXT",
    help="Count TEXT (UTF-8, UTF-16-LE, hex, base64) in the running station's memory.",
)
@click.option(
    "--strace-log",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="List every file written in an `strace -f` log of the station (to disk, and to "
    "RAM file systems such as /dev/shm, with those still there).",
)
def audit(control: Path | None, scan_text: str | None, strace_log: Path | None) -> None:
    """Show what could keep a session's bytes here, and prove what did not.

    Without options: the start-up preflight (swap, tmpfs, core_pattern, journald,
    init_on_free). Exit status 1 when a scan finds the text or the log shows a write.
    """
    from wipe.audit import parse_strace_log
    from wipe.memscan import scan_tree
    from wipe.preflight import format_preflight, run_preflight

    click.echo(format_preflight(run_preflight()))
    found = False
    if scan_text is not None:
        try:
            reply = _ask(_control_path(control), Status(), StatusReply)
        except ControlError as exc:
            _fail(str(exc))
            return
        result = scan_tree(reply.pid, scan_text)
        for pid, counts in sorted(result.counts.items()):
            hits = {k: v for k, v in counts.items() if v}
            role = "supervisor" if pid == reply.pid else "worker"
            click.echo(f"memory scan: pid {pid} ({role}): {hits or 'not found'}")
            found = found or bool(hits)
        for pid in result.unreadable:
            click.echo(f"memory scan: pid {pid}: unreadable (run as root)")
    if strace_log is not None:
        report = parse_strace_log(strace_log)
        click.echo(report.summary())
        for write in report.writes:
            click.echo(f"  pid {write.pid} {write.call} {write.path}")
        for path in report.left:
            click.echo(f"  in RAM, still there: {path}")
        found = found or not report.clean
    sys.exit(1 if found else 0)


@main.command()
@click.option("--phones", type=click.IntRange(1, 16), default=3, show_default=True)
@click.option(
    "--profile",
    type=click.Choice([*PROFILES, "custom"]),
    default="flaky-wifi",
    show_default=True,
    help="The links' fault profile; custom reads --scenario.",
)
@click.option(
    "--scenario",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="TOML timeline: [[phone]] tables with events = [{kind, start, end}] and optional"
    " latency, jitter, bandwidth.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same timeline.")
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="Seconds of traffic (then the links heal and the queues drain).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Commands per second to each phone.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def simulate(
    phones: int,
    profile: str,
    scenario: Path | None,
    seed: int,
    duration: float,
    rate: float,
    as_json: bool,
) -> None:
    """Run a whole clinic here (127.0.0.1, no mDNS) through faulty links, and check it.

    Exits non-zero on any loss, duplicate or reordering.
    """
    from rich.console import Console

    from drill.errors import DrillError
    from drill.report import clean, print_report
    from drill.simulate import SimConfig
    from drill.simulate import simulate as run_simulation

    config = SimConfig(
        phones=phones, profile=profile, scenario=scenario, seed=seed, duration=duration, rate=rate
    )
    console = Console(stderr=as_json)
    try:
        report = asyncio.run(run_simulation(config, console))
    except DrillError as exc:
        _fail(str(exc), 2)
        return
    if as_json:
        click.echo(json.dumps(report))
    else:
        print_report(console, report)
    sys.exit(0 if clean(report) else 1)


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"want HOST:PORT, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@main.command()
@click.option("--listen", required=True, metavar="HOST:PORT", help="Where phones connect.")
@click.option("--target", required=True, metavar="HOST:PORT", help="The station.")
@click.option(
    "--profile",
    type=click.Choice(["none", *PROFILES]),
    default="none",
    show_default=True,
)
@click.option(
    "--scenario",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="TOML timeline (the first [[phone]] table).",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Length of a generated timeline.",
)
@click.option("--latency", type=click.FloatRange(min=0), default=None, help="Seconds added.")
@click.option("--jitter", type=click.FloatRange(min=0), default=None, help="Up to this much more.")
@click.option("--bandwidth", type=click.IntRange(min=1), default=None, help="Bytes per second.")
@click.option("--slicer", type=click.IntRange(min=1), default=None, help="Max bytes per write.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Reset a connection after this many bytes.",
)
def proxy(
    listen: str,
    target: str,
    profile: str,
    scenario: Path | None,
    seed: int,
    duration: float,
    latency: float | None,
    jitter: float | None,
    bandwidth: int | None,
    slicer: int | None,
    limit: int | None,
) -> None:
    """A fault-injecting TCP proxy between a phone and a station.

    Type commands on stdin to force the link by hand: down, up, cut, status, and
    blackhole [to_station|to_phone] (both ways when not said).
    """
    from dataclasses import replace

    from drill.errors import DrillError
    from drill.profiles import LinkConditions
    from drill.proxy import FaultProxy
    from drill.scenario import PhoneLink, generated_links, scenario_links

    link: PhoneLink | None = None
    try:
        if scenario is not None:
            link = scenario_links(scenario, 1)[0]
        elif profile != "none":
            link = generated_links(profile, seed=seed, phones=1, duration=duration)[0]
    except DrillError as exc:
        _fail(str(exc), 2)
        return
    base = link.conditions if link is not None else LinkConditions()
    conditions = replace(
        base,
        latency=base.latency if latency is None else latency,
        jitter=base.jitter if jitter is None else jitter,
        bandwidth=base.bandwidth if bandwidth is None else bandwidth,
        slicer=base.slicer if slicer is None else slicer,
        limit=base.limit if limit is None else limit,
    )

    async def run() -> None:
        fault = FaultProxy(_host_port(listen), _host_port(target), conditions=conditions, seed=seed)
        await fault.start()
        if link is not None:
            fault.begin(link.schedule)
        click.echo(
            f"proxy on port {fault.port} -> {target}; commands: down up blackhole cut status"
        )
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            while line := await reader.readline():
                words = line.decode().split()
                if not words:
                    continue
                if words == ["blackhole", "to_station"] or words == ["blackhole", "to_phone"]:
                    fault.blackhole("to_station" if words[1] == "to_station" else "to_phone")
                elif len(words) == 1 and words[0] in ("down", "up", "blackhole", "cut"):
                    getattr(fault, words[0])()
                elif words != ["status"]:
                    click.echo(f"unknown command {' '.join(words)!r}", err=True)
                    continue
                s = fault.stats
                held = f" ({fault.held})" if fault.held not in (None, "both") else ""
                click.echo(
                    f"state {fault.state}{held}; connections {s.connections},"
                    f" resets {s.resets}, refused {s.refused}"
                )
            await asyncio.Event().wait()  # stdin closed: run until interrupted
        finally:
            await fault.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except DrillError as exc:
        _fail(str(exc), 2)
