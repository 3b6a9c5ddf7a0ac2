"""``station simulate``: a whole clinic on this machine, through faulty links.

One station and N phones, each phone its own ``medic-phone link`` process, each behind
its own fault proxy following a seeded outage timeline (so a seed replays the same
run). The kiosk sends commands to every phone at a rate while the phones add messages
that mirror back. At the end the phones' own stores are read to count what was
delivered, lost, duplicated or out of order; then every session is logged out, which
is the wipe, and what never reached a phone is reported.

Everything runs on 127.0.0.1 with mDNS off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from medic_phone.store import PhoneStore
from station.errors import ConfigError
from station.proxy import FaultProxy, Toxics
from tunnel.testing.faults import FaultProfile, FaultSchedule, get_profile

BIN = Path(sys.executable).parent
HOTSPOT_BANDWIDTH = 48_000  # bytes per second each way


@dataclass(frozen=True)
class SimConfig:
    phones: int = 3
    profile: str = "flaky-wifi"
    scenario: Path | None = None
    seed: int = 1
    duration: float = 30.0
    rate: float = 5.0  # commands per second, per phone
    push_every: float = 2.0  # seconds between messages added on each phone


# The flaky WiFi: drops every 5-20 s, lasting 1-10 s, some of them blackholes.
FLAKY_WIFI = FaultProfile(
    name="flaky-wifi",
    mean_interval=12.0,
    min_duration=1.0,
    max_duration=10.0,
    cut=2.0,
    blackhole=2.0,
    down=3.0,
    one_way=0.0,
    conditions=get_profile("flaky-wifi").conditions,
    description="drops every 5-20 s lasting 1-10 s, some blackholes without a close",
)


def _profile(name: str) -> FaultProfile:
    return FLAKY_WIFI if name == "flaky-wifi" else get_profile(name)


def schedules(config: SimConfig) -> list[FaultSchedule]:
    """One timeline per phone, the same for the same seed; at least one outage each."""
    if config.profile == "custom":
        if config.scenario is None:
            raise ConfigError("--profile custom needs --scenario FILE")
        return _scenario(config.scenario, config.phones)
    profile = _profile(config.profile)
    out = []
    for index in range(config.phones):
        for attempt in range(100):
            schedule = FaultSchedule.generate(
                profile, seed=config.seed * 1000 + index * 100 + attempt, duration=config.duration
            )
            if schedule.events:
                break
        out.append(schedule)
    return out


def _scenario(path: Path, phones: int) -> list[FaultSchedule]:
    """A TOML timeline: ``[[phone]]`` tables, each with ``events = [{kind, start, end}]``."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"scenario {path}: {exc}") from None
    tables = data.get("phone", [])
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"scenario {path}: no [[phone]] tables")
    try:
        parsed = [FaultSchedule.from_events(t.get("events", [])) for t in tables]
    except Exception as exc:  # the test kit names the bad event
        raise ConfigError(f"scenario {path}: {exc}") from None
    return [parsed[i % len(parsed)] for i in range(phones)]


@dataclass
class PhoneRun:
    index: int
    home: Path
    proxy: FaultProxy
    schedule: FaultSchedule
    process: asyncio.subprocess.Process | None = None
    session: str = ""
    control: str = ""
    sent: dict[str, float] = field(default_factory=dict)  # text -> sent at (wall clock)
    order: list[str] = field(default_factory=list)
    refused: int = 0
    delivered: int = 0
    linked: bool = False
    depth: int = 0
    max_depth: int = 0
    pushed: int = 0


class Simulation:
    def __init__(self, config: SimConfig, console: Console) -> None:
        self.config = config
        self.console = console
        self.station: asyncio.subprocess.Process | None = None
        self.station_events: list[dict[str, Any]] = []
        self.event_arrived = asyncio.Event()
        self.phones: list[PhoneRun] = []
        self.undelivered: dict[str, int] = {}
        self._readers: list[asyncio.Task[None]] = []

    # -- processes -------------------------------------------------------------------

    async def _spawn(self, *argv: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        )

    async def _read_station(self) -> None:
        assert self.station is not None and self.station.stdout is not None
        async for line in self.station.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                self.station_events.append(event)
                self._on_station_event(event)
                self.event_arrived.set()

    def _on_station_event(self, event: dict[str, Any]) -> None:
        for phone in self.phones:
            if phone.session and event.get("session") == phone.session:
                kind = event["event"]
                if kind == "queued":
                    phone.depth = int(event["depth"])
                    phone.max_depth = max(phone.max_depth, phone.depth)
                elif kind in ("link_up", "link_down"):
                    phone.linked = kind == "link_up"
                elif kind == "wiped":
                    self.undelivered[phone.session] = int(event["undelivered"])

    async def _read_phone(self, phone: PhoneRun) -> None:
        assert phone.process is not None and phone.process.stdout is not None
        async for line in phone.process.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "command":
                    phone.delivered += 1

    async def wait_event(self, kind: str, after: int = 0, within: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            for event in self.station_events[after:]:
                if event.get("event") == kind:
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConfigError(f"the station sent no {kind!r} event in {within:.0f} s")
            self.event_arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.event_arrived.wait()

    async def _request(self, path: str, message: dict[str, Any]) -> dict[str, Any]:
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            reply: dict[str, Any] = json.loads(await reader.readline())
            return reply
        finally:
            writer.close()

    # -- the run ---------------------------------------------------------------------

    async def run(self, workdir: Path) -> dict[str, Any]:
        cfg = self.config
        timelines = schedules(cfg)
        control = str(workdir / "station.sock")
        self.station = await self._spawn(
            str(BIN / "station"),
            "start",
            "--no-mdns",
            "--port",
            "0",
            "--json",
            "--control",
            control,
            "--inactivity",
            str(cfg.duration + 600),
        )
        reader = asyncio.create_task(self._read_station())
        ready = await self.wait_event("ready")
        port = int(ready["port"])
        conditions = _profile(cfg.profile if cfg.profile != "custom" else "flaky-wifi").conditions
        toxics = Toxics(
            latency=conditions.latency_a_to_b,
            jitter=conditions.jitter,
            # A phone hotspot over mobile data: slow as well as late.
            bandwidth=HOTSPOT_BANDWIDTH if cfg.profile == "hotspot" else None,
        )
        for index in range(cfg.phones):
            proxy = FaultProxy(
                ("127.0.0.1", 0), ("127.0.0.1", port), toxics=toxics, seed=cfg.seed * 1000 + index
            )
            await proxy.start()
            home = workdir / f"phone{index}"
            init = await self._spawn(
                str(BIN / "medic-phone"), "init", "--home", str(home), "--name", f"phone-{index}"
            )
            await init.wait()
            self.phones.append(PhoneRun(index, home, proxy, timelines[index]))
        for phone in self.phones:
            offers = [e for e in self.station_events if e["event"] in ("ready", "offer")]
            mark = len(self.station_events)
            phone.process = await self._spawn(
                str(BIN / "medic-phone"),
                "link",
                str(offers[-1]["pair_uri"]),
                "--home",
                str(phone.home),
                "--connect",
                f"127.0.0.1:{phone.proxy.port}",
                "--json",
            )
            self._readers.append(asyncio.create_task(self._read_phone(phone)))
            paired = await self.wait_event("paired", after=mark)
            phone.session = str(paired["session"])
            phone.linked = True
            await self.wait_event("offer", after=mark)
            route = await self._request(control, {"op": "route", "session": phone.session})
            phone.control = str(route["control"])

        start_wall = time.time()
        for phone in self.phones:
            phone.proxy.begin(phone.schedule)
        with Live(
            self._table(0), console=self.console, refresh_per_second=4, transient=True
        ) as live:
            workers = [asyncio.create_task(self._drive(p)) for p in self.phones]
            began = time.monotonic()
            while time.monotonic() - began < cfg.duration:
                await asyncio.sleep(0.25)
                live.update(self._table(time.monotonic() - began))
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for phone in self.phones:
                phone.proxy.end()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(
                p.delivered < len(p.order) for p in self.phones
            ):
                await asyncio.sleep(0.2)
                live.update(self._table(time.monotonic() - began))
        report = await self._report(start_wall)
        for phone in self.phones:
            await self._request(control, {"op": "logout", "session": phone.session})
        deadline = time.monotonic() + 15
        while len(self.undelivered) < len(self.phones) and time.monotonic() < deadline:
            self.event_arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await self.event_arrived.wait()
        report["undelivered"] = sum(self.undelivered.values())
        report["wiped"] = len(self.undelivered)
        report["wipe_check"] = self._wipe_check(ready)
        await self._shutdown(reader)
        return report

    def _wipe_check(self, ready: dict[str, Any]) -> dict[str, Any]:
        """After logout, no station process may still hold what the kiosk typed."""
        if os.geteuid() != 0 or self.station is None:
            return {"ran": False, "why": "needs root to read the station's memory"}
        from wipe.memscan import scan_tree

        found = 0
        for phone in self.phones:
            if phone.order:
                found += scan_tree(self.station.pid, phone.order[0]).total()
        return {"ran": True, "canaries": len(self.phones), "found": found}

    async def _drive(self, phone: PhoneRun) -> None:
        """The kiosk typing for one phone, and the phone adding messages of its own."""
        cfg = self.config
        count = 0
        next_push = time.monotonic() + cfg.push_every
        while True:
            text = f"phone{phone.index}-command-{count}"
            count += 1
            try:
                reply = await self._request(phone.control, {"op": "send", "text": text})
            except (OSError, ValueError):
                reply = {"ok": False}
            if reply.get("ok"):
                phone.sent[text] = time.time()
                phone.order.append(text)
            else:
                phone.refused += 1
            if time.monotonic() >= next_push:
                next_push += cfg.push_every
                with contextlib.suppress(Exception):
                    async with PhoneStore.open(phone.home) as store:
                        await store.ensure_chat("ward", "Ward round")
                        await store.add_message(
                            "ward", "medic (phone)", f"note {phone.pushed}", time.time()
                        )
                    phone.pushed += 1
            await asyncio.sleep(1.0 / cfg.rate)

    async def _report(self, start_wall: float) -> dict[str, Any]:
        sent = delivered = lost = duplicated = out_of_order = outages = 0
        recoveries: list[float] = []
        latencies: list[float] = []
        per_phone = []
        for phone in self.phones:
            async with PhoneStore.open(phone.home) as store:
                rows = await store.commands(phone.session)
            texts = [str(r["text"]) for r in rows]
            received = {str(r["text"]): float(r["received_at"]) for r in rows}
            got = [t for t in texts if t in phone.sent]
            p_dup = len(texts) - len(set(texts))
            p_lost = len(set(phone.order) - set(texts))
            expected = [t for t in phone.order if t in set(got)]
            p_ooo = sum(1 for a, b in zip(got, expected, strict=False) if a != b)
            sent += len(phone.order)
            delivered += len(set(got))
            lost += p_lost
            duplicated += p_dup
            out_of_order += p_ooo
            latencies += [received[t] - phone.sent[t] for t in got if t in phone.sent]
            ends = [start_wall + o.end for o in phone.proxy.stats.outages if o.end is not None]
            outages += len(phone.proxy.stats.outages)
            arrivals = sorted(received.values())
            for end in ends:
                after = [a for a in arrivals if a >= end]
                if after:
                    recoveries.append(after[0] - end)
            per_phone.append(
                {
                    "phone": phone.index,
                    "sent": len(phone.order),
                    "delivered": len(set(got)),
                    "lost": p_lost,
                    "duplicated": p_dup,
                    "out_of_order": p_ooo,
                    "outages": len(phone.proxy.stats.outages),
                    "max_queue": phone.max_depth,
                    "refused": phone.refused,
                    "pushed": phone.pushed,
                }
            )
        return {
            "profile": self.config.profile,
            "seed": self.config.seed,
            "phones": len(self.phones),
            "duration_s": self.config.duration,
            "sent": sent,
            "delivered": delivered,
            "lost": lost,
            "duplicated": duplicated,
            "out_of_order": out_of_order,
            "outages": outages,
            "recovery_s": _quantiles(recoveries),
            "latency_ms": _quantiles([x * 1000 for x in latencies], keys=("p50", "p99")),
            "max_queue_depth": max((p.max_depth for p in self.phones), default=0),
            "per_phone": per_phone,
        }

    async def _shutdown(self, reader: asyncio.Task[None]) -> None:
        for phone in self.phones:
            await phone.proxy.stop()
            if phone.process is not None and phone.process.returncode is None:
                phone.process.send_signal(signal.SIGTERM)
        if self.station is not None and self.station.returncode is None:
            self.station.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    await self.station.wait()
        for phone in self.phones:
            if phone.process is not None:
                with contextlib.suppress(TimeoutError, ProcessLookupError):
                    async with asyncio.timeout(10):
                        await phone.process.wait()
        reader.cancel()

    def _table(self, elapsed: float) -> Table:
        table = Table(
            title=f"station simulate: {self.config.profile}, seed {self.config.seed},"
            f" {elapsed:4.1f}/{self.config.duration:.0f} s"
        )
        for column in ("phone", "link", "queued", "sent", "delivered", "outage"):
            table.add_column(column, justify="right")
        now = time.monotonic()
        for phone in self.phones:
            state = phone.proxy.state
            outage = ""
            if state != "up" and phone.proxy.stats.outages:
                began = phone.proxy.started_at + phone.proxy.stats.outages[-1].start
                outage = f"{state} {now - began:4.1f} s"
            link = "linked" if phone.linked else "offline"
            table.add_row(
                str(phone.index),
                link,
                str(phone.depth),
                str(len(phone.order)),
                str(phone.delivered),
                outage,
            )
        return table


def _quantiles(
    values: list[float], keys: tuple[str, ...] = ("p50", "p99", "max")
) -> dict[str, float]:
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


def print_report(console: Console, report: dict[str, Any]) -> None:
    table = Table(title="Clinic simulation: checked against the phones' own stores")
    for column in (
        "phone",
        "sent",
        "delivered",
        "lost",
        "duplicated",
        "out of order",
        "outages",
        "max queue",
        "refused",
    ):
        table.add_column(column, justify="right")
    for p in report["per_phone"]:
        table.add_row(
            *(
                str(p[k])
                for k in (
                    "phone",
                    "sent",
                    "delivered",
                    "lost",
                    "duplicated",
                    "out_of_order",
                    "outages",
                    "max_queue",
                    "refused",
                )
            )
        )
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


async def simulate(config: SimConfig, console: Console) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fs-simulate-") as workdir:
        return await Simulation(config, console).run(Path(workdir))


def clean(report: dict[str, Any]) -> bool:
    wipe = report.get("wipe_check", {})
    return not (
        report["lost"] or report["duplicated"] or report["out_of_order"] or wipe.get("found")
    )
