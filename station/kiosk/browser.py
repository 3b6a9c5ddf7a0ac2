"""``station start --kiosk``: Chromium full screen on the pairing screen.

Each browser runs with a fresh ``--user-data-dir`` on a RAM file system (tmpfs), so
whatever Chromium keeps of a page (its history, its caches, its crash state) is in RAM
only; at every logout the browser is ended and its profile removed, and a new one is
started for the next medic.

Nothing that opens the screen is on the browser's command line or in its environment,
which other local users can read (``/proc/PID/cmdline``): the browser opens a small file
in its own 0700 profile directory that forwards it to a one-use launch link. A watchdog
renews the browser when its page has been gone for a while (a reload loses the page's
key, a renderer crashed, the window was closed), so the kiosk never stays dark.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from station.errors import ConfigError

DEFAULT_BROWSER = "/usr/bin/chromium"

# Flags for a browser that only shows our page: no sync, no first-run dialogs, no
# background requests to the internet, nothing saved, full screen.
_FLAGS = (
    "--kiosk",
    "--incognito",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-translate",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--password-store=basic",
    "--disable-session-crashed-bubble",
    "--noerrdialogs",
    # A crash dump would hold the page's memory: no crash reporter, no dumps.
    "--disable-crash-reporter",
    "--disable-breakpad",
)


def check_browser(path: str) -> None:
    """Fail before anything starts when the kiosk browser cannot run here."""
    if shutil.which(path) is None:
        raise ConfigError(
            f"--kiosk: no browser at {path} (install Debian's chromium package, "
            "or name another Chromium with --browser)"
        )
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ConfigError(
            "--kiosk: no display (DISPLAY and WAYLAND_DISPLAY are unset); run it in the "
            "kiosk's graphical session, or open the printed UI address yourself"
        )
    ram_dir()


def ram_dir() -> Path:
    """A tmpfs directory for browser profiles: the runtime dir, else /dev/shm."""
    candidates = [os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"]  # noqa: S108
    for candidate in candidates:
        if candidate and Path(candidate).is_dir() and _is_tmpfs(Path(candidate)):
            return Path(candidate)
    raise ConfigError(
        "--kiosk: no RAM file system for the browser profile (neither XDG_RUNTIME_DIR "
        "nor /dev/shm is a tmpfs)"
    )


def _is_tmpfs(path: Path) -> bool:
    target = str(path.resolve())
    best, fstype = "", ""
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) >= 3 and target.startswith(fields[1]) and len(fields[1]) > len(best):
                best, fstype = fields[1], fields[2]
    return fstype == "tmpfs"


def _browser_env(profile: Path) -> dict[str, str]:
    """The browser's home, config and cache directories are its RAM profile too.

    Chromium writes some files by the user's home, XDG and temporary directories rather
    than by ``--user-data-dir`` (crash-report settings, font caches, its singleton
    socket); they go with the profile."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    xauthority = os.environ.get("XAUTHORITY") or str(Path.home() / ".Xauthority")
    if Path(xauthority).exists():
        env["XAUTHORITY"] = xauthority
    env["HOME"] = str(profile)
    for name, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache")):
        env[name] = str(profile / sub)
    env["XDG_DATA_HOME"] = str(profile / "data")
    # Its singleton socket directory (org.chromium.Chromium.XXXXXX) went to /tmp.
    env["TMPDIR"] = str(profile)
    return env


# The watchdog: how long a browser may take to show its page, and how long its page may
# be gone before the browser is renewed.
WATCH_EVERY = 2.0
START_GRACE = 60.0
LOST_GRACE = 15.0
STOP_GRACE = 5.0  # seconds the browser's group has after SIGTERM, then after SIGKILL


class Screen(Protocol):
    """What the browser needs of the pairing screen."""

    def launch_link(self, kind: str = ...) -> tuple[str, str, float]: ...
    def viewers_of(self, label: str) -> int: ...
    def opened(self, label: str) -> bool: ...
    def revoke(self, label: str) -> None: ...


def _write_launcher(profile: Path, link: str) -> Path:
    """A page in the 0700 profile that forwards the browser to the launch link."""
    path = profile / "launch.html"
    page = (
        '<!doctype html><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
        f'<meta http-equiv="refresh" content="0;url={html.escape(link, quote=True)}">'
        "<title>Field Station</title>\n"
    ).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, page)
    finally:
        os.close(fd)
    return path


class KioskBrowser:
    def __init__(
        self, executable: str, screen: Screen, emit: Callable[[dict[str, Any]], None]
    ) -> None:
        self.executable = executable
        self.profile: str | None = None
        self.label: str | None = None  # the label of the page key this browser's page gets
        self._screen = screen
        self._emit = emit
        self._process: asyncio.subprocess.Process | None = None
        self._launcher: Path | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._watchdog: asyncio.Task[None] | None = None
        self._renewal: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        async with self._lock:
            await self._start("start")

    async def stop(self) -> None:
        """End the browser for good (the station is stopping): nothing renews it."""
        async with self._lock:
            self._closed = True
            await self._stop()
        if self._renewal is not None and self._renewal is not asyncio.current_task():
            self._renewal.cancel()

    async def restart(self, reason: str = "logout") -> None:
        """End the browser and its profile, and start a fresh one (unless stopped)."""
        async with self._lock:
            if self._closed:
                return
            await self._stop()
            await self._start(reason)

    async def _start(self, reason: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="fieldstation-kiosk-", dir=ram_dir())
        link, self.label, _ = self._screen.launch_link("kiosk")
        self._launcher = _write_launcher(Path(self.profile), link)
        argv = [self.executable, *_FLAGS, f"--user-data-dir={self.profile}"]
        if os.geteuid() == 0:
            # Chromium refuses to run as root with its sandbox; a kiosk should not be root.
            argv.append("--no-sandbox")
        argv.append(self._launcher.as_uri())
        self._process = await asyncio.create_subprocess_exec(
            *argv,
            env=_browser_env(Path(self.profile)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its helpers form a group we can end together
        )
        self._watchdog = asyncio.create_task(self._watch(self.label))
        self._emit({"event": "kiosk", "pid": self.pid, "profile": self.profile, "reason": reason})

    async def _watch(self, label: str) -> None:
        started = time.monotonic()
        lost_at: float | None = None
        while True:
            await asyncio.sleep(WATCH_EVERY)
            now = time.monotonic()
            if self._screen.opened(label) and self._launcher is not None:
                with contextlib.suppress(OSError):
                    self._launcher.unlink()  # its token is spent: the file is no use
                self._launcher = None
            if self._screen.viewers_of(label):
                lost_at = None
                continue
            if not self._screen.opened(label):
                if now - started < START_GRACE:
                    continue
            elif lost_at is None or now - lost_at < LOST_GRACE:
                lost_at = lost_at or now
                continue
            self._renewal = asyncio.create_task(self.restart("page lost"))
            return

    async def _stop(self) -> None:
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        self._watchdog = None
        if self.label is not None:
            self._screen.revoke(self.label)
        process, self._process = self._process, None
        if process is not None:
            await _end_group(process)
        if self.profile is not None:
            for _ in range(3):  # a helper that wrote as it died: once more
                if _remove(self.profile):
                    break
                await asyncio.sleep(0.1)
            self.profile = None


def _remove(path: str) -> bool:
    """Remove a profile; True once it is gone."""
    shutil.rmtree(path, ignore_errors=True)
    return not os.path.lexists(path)


async def _end_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the browser's process group, SIGKILL after ``STOP_GRACE``; back once
    no process of the group is left: its helpers write into the profile until then."""
    group = process.pid
    _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    killed = False
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.05):
                await process.wait()
        if process.returncode is not None and not _group_alive(group):
            return
        if time.monotonic() > deadline:
            if killed:
                return  # nothing more a signal can do
            _signal_group(group, signal.SIGKILL)
            killed, deadline = True, time.monotonic() + STOP_GRACE


def _signal_group(group: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def _group_alive(group: int) -> bool:
    """Whether a process of this group still runs (zombies, which hold nothing, do not
    count: a container's init may never reap them)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] not in ("Z", "X"):
            return True
    return False
