"""``station audit``: the preflight, a memory scan, a write audit."""

from __future__ import annotations

from pathlib import Path

import click

from station.cli.common import ask, control_option
from wire.control import Status, StatusReply


@click.command()
@control_option
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
def audit(control: Path, scan_text: str | None, strace_log: Path | None) -> None:
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
        reply = ask(control, Status(), StatusReply)
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
    raise click.exceptions.Exit(1 if found else 0)
