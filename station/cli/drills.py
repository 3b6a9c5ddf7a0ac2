"""``station simulate`` and ``station proxy``: drilling WiFi trouble (see ``drill``)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from drill.profiles import PROFILES
from station.cli.common import Fail


@click.command()
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
        raise Fail(str(exc), 2) from None
    if as_json:
        click.echo(json.dumps(report))
    else:
        print_report(console, report)
    raise click.exceptions.Exit(0 if clean(report) else 1)


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"want HOST:PORT, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command()
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
        raise Fail(str(exc), 2) from None
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
        raise Fail(str(exc), 2) from None
