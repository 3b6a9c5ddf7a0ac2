"""``station start --kiosk``: Chromium full screen on the pairing screen.

Each browser runs with a fresh ``--user-data-dir`` on a RAM file system (tmpfs), so
whatever Chromium keeps of a page (its history, its caches, its crash state) is in RAM
only; at every logout the browser is ended and its profile removed, and a new one is
started for the next medic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path

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

    Chromium writes some files by the user's home and XDG directories rather than by
    ``--user-data-dir`` (crash-report settings, font caches); they go with the profile."""
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
    return env


class KioskBrowser:
    def __init__(self, executable: str, url: str) -> None:
        self.executable = executable
        self.url = url
        self.profile: str | None = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="fieldstation-kiosk-", dir=ram_dir())
        argv = [self.executable, *_FLAGS, f"--user-data-dir={self.profile}"]
        if os.geteuid() == 0:
            # Chromium refuses to run as root with its sandbox; a kiosk should not be root.
            argv.append("--no-sandbox")
        argv.append(self.url)
        self._process = await asyncio.create_subprocess_exec(
            *argv,
            env=_browser_env(Path(self.profile)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its helpers form a group we can end together
        )

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()
