"""What a clinic simulation found, checked against what each phone says it applied.

The counts come from the phones themselves (``medic-phone log --json``: the commands
each one applied, in order, with when), compared with what the station accepted for
it; the outages are the ones its proxy really applied.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from drill.simulate import PhoneRun

PER_PHONE_COLUMNS = (
    ("phone", "phone"),
    ("sent", "sent"),
    ("delivered", "delivered"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("out_of_order", "out of order"),
    ("outages", "outages"),
    ("max_queue", "max queue"),
    ("refused", "refused"),
)


def quantiles(
    values: Sequence[float], keys: tuple[str, ...] = ("p50", "p99", "max")
) -> dict[str, float]:
    """Nearest-rank quantiles (``p50``, ``p99``...) and ``max``, rounded to the millisecond."""
    if not values:
        return dict.fromkeys(keys, 0.0)
    ordered = sorted(values)
    out = {}
    for key in keys:
        if key == "max":
            out[key] = round(ordered[-1], 3)
        else:
            q = int(key[1:]) / 100
            out[key] = round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)
    return out


def phone_figures(
    phone: PhoneRun, rows: Sequence[dict[str, Any]], start_wall: float
) -> tuple[dict[str, Any], list[float], list[float]]:
    """One phone's counts, its command latencies and its recovery times (seconds).

    ``rows`` are the phone's applied commands of this session, in order of application.
    """
    texts = [str(r["text"]) for r in rows]
    received = {str(r["text"]): float(r["received_at"]) for r in rows}
    got = [t for t in texts if t in phone.sent]
    applied = set(texts)
    expected = [t for t in phone.order if t in applied]
    figures = {
        "phone": phone.index,
        "sent": len(phone.order),
        "delivered": len(set(got)),
        "lost": len(set(phone.order) - applied),
        "duplicated": len(texts) - len(applied),
        "out_of_order": sum(1 for a, b in zip(got, expected, strict=False) if a != b),
        "outages": len(phone.proxy.stats.outages),
        "max_queue": phone.max_depth,
        "refused": phone.refused,
        "pushed": phone.pushed,
    }
    latencies = [received[t] - phone.sent[t] for t in got]
    arrivals = sorted(received.values())
    recoveries = []
    for outage in phone.proxy.stats.outages:
        if outage.end is None and outage.kind != "cut":
            continue
        back = start_wall + (outage.start if outage.end is None else outage.end)
        after = [a for a in arrivals if a >= back]
        if after:
            recoveries.append(after[0] - back)
    return figures, latencies, recoveries


def build_report(
    *,
    profile: str,
    seed: int,
    duration: float,
    phones: Sequence[PhoneRun],
    applied: Sequence[Sequence[dict[str, Any]]],
    start_wall: float,
) -> dict[str, Any]:
    """The report's figures (without the logout part, which comes after it)."""
    per_phone: list[dict[str, Any]] = []
    latencies: list[float] = []
    recoveries: list[float] = []
    for phone, rows in zip(phones, applied, strict=True):
        figures, lat, rec = phone_figures(phone, rows, start_wall)
        per_phone.append(figures)
        latencies += lat
        recoveries += rec
    total = {key: sum(int(p[key]) for p in per_phone) for key in _TOTALS}
    return {
        "profile": profile,
        "seed": seed,
        "phones": len(phones),
        "duration_s": duration,
        **total,
        "recovery_s": quantiles(recoveries),
        "latency_ms": quantiles([x * 1000 for x in latencies], keys=("p50", "p99")),
        "max_queue_depth": max((p.max_depth for p in phones), default=0),
        "per_phone": per_phone,
    }


_TOTALS = ("sent", "delivered", "lost", "duplicated", "out_of_order", "outages")


def clean(report: dict[str, Any]) -> bool:
    """Nothing lost, duplicated or reordered, and no typed text left after logout."""
    wipe = report.get("wipe_check", {})
    return not (
        report["lost"] or report["duplicated"] or report["out_of_order"] or wipe.get("found")
    )


def progress_table(title: str, phones: Sequence[PhoneRun]) -> Table:
    """The live view: per phone, link, queue depth, sent, delivered and the outage timer."""
    table = Table(title=title)
    for column in ("phone", "link", "queued", "sent", "delivered", "outage"):
        table.add_column(column, justify="right")
    now = time.monotonic()
    for phone in phones:
        proxy = phone.proxy
        outage = ""
        if proxy.state != "up" and proxy.stats.outages:
            began = proxy.started_at + proxy.stats.outages[-1].start
            outage = f"{proxy.state} {now - began:4.1f} s"
        table.add_row(
            str(phone.index),
            "linked" if phone.linked else "offline",
            str(phone.depth),
            str(len(phone.order)),
            str(phone.delivered),
            outage,
        )
    return table


def print_report(console: Console, report: dict[str, Any]) -> None:
    table = Table(title="Clinic simulation: checked against what each phone applied")
    for _, title in PER_PHONE_COLUMNS:
        table.add_column(title, justify="right")
    for p in report["per_phone"]:
        table.add_row(*(str(p[key]) for key, _ in PER_PHONE_COLUMNS))
    console.print(table)
    r, lat = report["recovery_s"], report["latency_ms"]
    console.print(
        f"recovery after a link returns: p50 {r['p50']} s, p99 {r['p99']} s, max {r['max']} s;"
        f" command latency p50 {lat['p50']} ms, p99 {lat['p99']} ms;"
        f" max queue depth {report['max_queue_depth']}"
    )
    console.print(
        f"logout: {report['wiped']} session(s) wiped, {report['undelivered']} command(s)"
        " never delivered"
    )
    wipe = report["wipe_check"]
    if wipe["ran"]:
        console.print(
            f"wipe check: {wipe['found']} copies of {wipe['canaries']} typed command(s) left in"
            " the station's memory after logout"
        )
    else:
        console.print(f"wipe check skipped: {wipe['why']}")
    ok = clean(report)
    console.print("[green]OK: nothing lost, duplicated or reordered[/]" if ok else "[red]FAILED[/]")
