"""``station simulate``: a whole clinic on this machine, through faulty links.

One station and N phones, each phone its own ``medic-phone link`` process behind its own
fault proxy following a seeded timeline of the fault model (so a seed replays the same
drill). The kiosk types commands to every phone at a rate while each phone's medic adds
notes (``medic-phone say``) that mirror back. At the end every phone is asked what it
applied (``medic-phone log --json``), which gives what was delivered, lost, duplicated or
out of order; then every session is logged out, which is the wipe, and what never
reached a phone is reported.

Only the commands' public faces are used: the station's JSON events and control
sockets, the phones' CLI. Everything runs on 127.0.0.1 with mDNS off.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from drill.errors import ScenarioError, SimulationError
from drill.proxy import FaultProxy
from drill.report import build_report, progress_table
from drill.scenario import PhoneLink, generated_links, scenario_links

BIN = Path(sys.executable).parent
STATION = str(BIN / "station")
PHONE = str(BIN / "medic-phone")
NOTES_CHAT = "ward"


@dataclass(frozen=True)
class SimConfig:
    phones: int = 3
    profile: str = "flaky-wifi"  # a name in drill.faults.PROFILES, or "custom"
    scenario: Path | None = None
    seed: int = 1
    duration: float = 30.0
    rate: float = 5.0  # commands per second, per phone
    push_every: float = 2.0  # seconds between notes added on each phone


def phone_links(config: SimConfig) -> list[PhoneLink]:
    """Each phone's link: from the scenario file, or generated from the profile and seed."""
    if config.profile == "custom":
        if config.scenario is None:
            raise ScenarioError("--profile custom needs --scenario FILE")
        return scenario_links(config.scenario, config.phones)
    return generated_links(
        config.profile, seed=config.seed, phones=config.phones, duration=config.duration
    )


@dataclass
class PhoneRun:
    index: int
    home: Path
    proxy: FaultProxy
    link: PhoneLink
    process: asyncio.subprocess.Process | None = None
    session: str = ""
    control: str = ""
    sent: dict[str, float] = field(default_factory=dict)  # text -> sent at (wall clock)
    order: list[str] = field(default_factory=list)
    refused: int = 0
    delivered: int = 0  # the phone's own `command` events
    linked: bool = False
    depth: int = 0
    max_depth: int = 0
    pushed: int = 0


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONDONTWRITEBYTECODE="1")


async def run_command(*argv: str, within: float = 60.0) -> tuple[int, str, str]:
    """Run a command to its end: exit status, stdout, stderr. Killed if cancelled."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    try:
        async with asyncio.timeout(within):
            out, err = await proc.communicate()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return int(proc.returncode or 0), out.decode(errors="replace"), err.decode(errors="replace")


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
            env=_env(),
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

    async def wait_event(self, kind: str, after: int = 0, within: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            for event in self.station_events[after:]:
                if event.get("event") == kind:
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                raise SimulationError(f"the station sent no {kind!r} event in {within:.0f} s")
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
        links = phone_links(cfg)
        control = str(workdir / "station.sock")
        self.station = await self._spawn(
            STATION, "start", "--host", "127.0.0.1", "--no-mdns", "--port", "0", "--json",
            "--control", control, "--inactivity", str(cfg.duration + 600),
        )  # fmt: skip
        reader = asyncio.create_task(self._read_station())
        try:
            ready = await self.wait_event("ready")
            await self._pair_all(links, workdir, int(ready["port"]), control)
            report = await self._drill()
            await self._logout_all(control)
            report["undelivered"] = sum(self.undelivered.values())
            report["wiped"] = len(self.undelivered)
            report["wipe_check"] = self._wipe_check()
        finally:
            await self._shutdown(reader)
        return report

    async def _pair_all(
        self, links: list[PhoneLink], workdir: Path, port: int, control: str
    ) -> None:
        for index, link in enumerate(links):
            proxy = FaultProxy(
                ("127.0.0.1", 0),
                ("127.0.0.1", port),
                conditions=link.conditions,
                seed=self.config.seed * 1000 + index,
            )
            await proxy.start()
            home = workdir / f"phone{index}"
            code, _, err = await run_command(
                PHONE, "init", "--home", str(home), "--name", f"phone-{index}"
            )
            if code != 0:
                raise SimulationError(f"medic-phone init failed: {err.strip()[-300:]}")
            self.phones.append(PhoneRun(index, home, proxy, link))
        for phone in self.phones:
            offers = [e for e in self.station_events if e["event"] in ("ready", "offer")]
            mark = len(self.station_events)
            phone.process = await self._spawn(
                PHONE, "link", str(offers[-1]["pair_uri"]), "--home", str(phone.home),
                "--connect", f"127.0.0.1:{phone.proxy.port}", "--json",
            )  # fmt: skip
            self._readers.append(asyncio.create_task(self._read_phone(phone)))
            paired = await self.wait_event("paired", after=mark)
            phone.session = str(paired["session"])
            phone.linked = True
            await self.wait_event("offer", after=mark)
            route = await self._request(control, {"op": "route", "session": phone.session})
            phone.control = str(route["control"])

    async def _drill(self) -> dict[str, Any]:
        """Traffic through the timelines, then the links heal and the queues drain."""
        cfg = self.config
        start_wall = time.time()
        for phone in self.phones:
            phone.proxy.begin(phone.link.schedule)
        title = f"station simulate: {cfg.profile}, seed {cfg.seed}"
        with Live(console=self.console, refresh_per_second=4, transient=True) as live:
            tasks = [asyncio.create_task(self._type(p)) for p in self.phones]
            tasks += [asyncio.create_task(self._notes(p)) for p in self.phones]
            began = time.monotonic()

            def show() -> None:
                elapsed = time.monotonic() - began
                live.update(
                    progress_table(f"{title}, {elapsed:4.1f}/{cfg.duration:.0f} s", self.phones)
                )

            while time.monotonic() - began < cfg.duration:
                show()
                await asyncio.sleep(0.25)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for phone in self.phones:
                phone.proxy.end()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(
                p.delivered < len(p.order) for p in self.phones
            ):
                show()
                await asyncio.sleep(0.2)
        applied = [await self._applied(phone) for phone in self.phones]
        return build_report(
            profile=cfg.profile,
            seed=cfg.seed,
            duration=cfg.duration,
            phones=self.phones,
            applied=applied,
            start_wall=start_wall,
        )

    async def _applied(self, phone: PhoneRun) -> list[dict[str, Any]]:
        """What the phone says it applied in this session, in order of application."""
        code, out, err = await run_command(PHONE, "log", "--home", str(phone.home), "--json")
        if code != 0:
            raise SimulationError(f"medic-phone log of phone {phone.index}: {err.strip()[-300:]}")
        rows: list[dict[str, Any]] = json.loads(out)
        return [r for r in rows if r.get("link_id") == phone.session]

    async def _logout_all(self, control: str) -> None:
        for phone in self.phones:
            await self._request(control, {"op": "logout", "session": phone.session})
        deadline = time.monotonic() + 15
        while len(self.undelivered) < len(self.phones) and time.monotonic() < deadline:
            self.event_arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await self.event_arrived.wait()

    def _wipe_check(self) -> dict[str, Any]:
        """After logout, no station process may still hold what the kiosk typed."""
        if os.geteuid() != 0 or self.station is None:
            return {"ran": False, "why": "needs root to read the station's memory"}
        from wipe.memscan import scan_tree

        found = 0
        for phone in self.phones:
            if phone.order:
                found += scan_tree(self.station.pid, phone.order[0]).total()
        return {"ran": True, "canaries": len(self.phones), "found": found}

    async def _type(self, phone: PhoneRun) -> None:
        """The kiosk typing for one phone, at the configured rate."""
        count = 0
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
            await asyncio.sleep(1.0 / self.config.rate)

    async def _notes(self, phone: PhoneRun) -> None:
        """The medic adding a note on the phone now and then (it mirrors to the kiosk)."""
        while True:
            await asyncio.sleep(self.config.push_every)
            code, _, _ = await run_command(
                PHONE, "say", "--home", str(phone.home), "--chat", NOTES_CHAT,
                f"note {phone.pushed}",
            )  # fmt: skip
            if code == 0:
                phone.pushed += 1

    async def _shutdown(self, reader: asyncio.Task[None]) -> None:
        for phone in self.phones:
            await phone.proxy.stop()
            if phone.process is not None and phone.process.returncode is None:
                phone.process.send_signal(signal.SIGTERM)
        if self.station is not None and self.station.returncode is None:
            self.station.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await self.station.wait()
            except TimeoutError:
                self.station.kill()
                await self.station.wait()
        for phone in self.phones:
            if phone.process is not None:
                with contextlib.suppress(TimeoutError, ProcessLookupError):
                    async with asyncio.timeout(10):
                        await phone.process.wait()
        reader.cancel()
        for task in self._readers:
            task.cancel()
        await asyncio.gather(reader, *self._readers, return_exceptions=True)


async def simulate(config: SimConfig, console: Console) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fs-simulate-") as workdir:
        return await Simulation(config, console).run(Path(workdir))
