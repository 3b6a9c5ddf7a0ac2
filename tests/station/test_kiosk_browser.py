"""``station start --kiosk``: Debian's Chromium on a (virtual) display, a RAM profile
renewed at every logout and removed at shutdown."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.procs import STATION_START, Proc, command, init_phone, link_phone, run, start_station

pytestmark = pytest.mark.integration


def _start(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> Proc:
    return start_station(tmp_path, *extra, env=env)


def test_kiosk_refuses_clearly_what_cannot_work(tmp_path: Path) -> None:
    argv = [
        command("station"),
        "start",
        "--host",
        "127.0.0.1",
        "--no-mdns",
        "--port",
        "0",
        "--kiosk",
    ]
    result = run([*argv, "--browser", str(tmp_path / "no-such-chromium")])
    assert result.returncode == 2 and "no browser at" in result.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    browser = shutil.which("true") or "/bin/true"
    result = run([*argv, "--browser", browser], env=env)
    assert result.returncode == 2 and "no display" in result.stderr
    result = run([*argv, "--no-ui", "--browser", browser])
    assert result.returncode == 2 and "--no-ui" in result.stderr


def _status(tmp_path: Path) -> dict[str, object]:
    result = run([command("station"), "status", "--control", str(tmp_path / "ctl.sock"), "--json"])
    assert result.returncode == 0, result.stderr
    value: dict[str, object] = json.loads(result.stdout)
    return value


def _wait_screens(tmp_path: Path, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while _status(tmp_path)["screens"] != count:
        assert time.monotonic() < deadline, f"the kiosk browser never opened the page: {count}"
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_kiosk_browser_profile_lives_in_ram_and_goes_at_logout(
    tmp_path: Path, display: str
) -> None:
    station = _start(tmp_path, "--kiosk", env=dict(os.environ, DISPLAY=display))
    first = station.wait_for("kiosk", timeout=20)
    profile = Path(str(first["profile"]))
    assert profile.is_dir()
    assert str(profile).startswith(("/dev/shm/", os.environ.get("XDG_RUNTIME_DIR", "/dev/shm")))
    _wait_screens(tmp_path, 1)  # Chromium loaded the pairing screen and its live channel
    environ = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{first['pid']}/environ").read_text().split("\0")
        if "=" in item
    )
    assert environ["HOME"] == str(profile)  # whatever it writes by $HOME stays in RAM too
    assert environ["XDG_CONFIG_HOME"].startswith(str(profile))
    assert environ["TMPDIR"] == str(profile)  # its singleton socket too
    cmdline = Path(f"/proc/{first['pid']}/cmdline").read_bytes().split(b"\0")
    assert (profile / "launch.html").as_uri().encode() in cmdline  # a file: no key, no token
    assert not [arg for arg in cmdline if b"127.0.0.1" in arg or b"launch=" in arg]

    home = tmp_path / "phone"
    assert run([command("medic-phone"), "init", "--home", str(home)]).returncode == 0
    ready = station.wait_for("ready")
    phone = Proc([command("medic-phone"), "link", str(ready["pair_uri"]), "--home", str(home)])
    station.wait_for("paired")
    ctl = ["--control", str(tmp_path / "ctl.sock")]
    assert run([command("station"), "logout", *ctl]).returncode == 0
    station.wait_for("wiped")
    second = station.wait_for("kiosk", after=station.events.index(first) + 1, timeout=20)
    assert second["profile"] != first["profile"]
    assert not profile.exists(), "the logged-out session's browser profile is gone"
    assert not _alive(int(first["pid"]))
    _wait_screens(tmp_path, 1)  # the new browser shows the pairing screen again

    station.signal(signal.SIGTERM)
    assert station.popen.wait(20) == 0
    assert not Path(str(second["profile"])).exists()
    deadline = time.monotonic() + 5
    while _alive(int(second["pid"])):
        assert time.monotonic() < deadline, "the kiosk browser outlived the station"
        time.sleep(0.1)
    phone.stop()


@pytest.mark.root
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_the_write_audit_lists_the_browser_ram_profile(tmp_path: Path, display: str) -> None:
    """Under ``strace -f``, a ``--kiosk`` station and its browser write no file to disk;
    the audit lists what the browser wrote in RAM (its profile in /dev/shm), and after
    logout and shutdown none of it is left."""
    from wipe.audit import parse_strace_log, strace_command

    log = tmp_path / "strace.log"
    runtime = tmp_path / "run"
    ctl = ["--control", str(runtime / "ctl.sock")]
    argv = [
        *STATION_START,
        "--kiosk",
        *ctl,
    ]
    station = Proc(strace_command(log, argv), env=dict(os.environ, DISPLAY=display))
    ready = station.wait_for("ready", timeout=60)
    first = station.wait_for("kiosk", timeout=30)
    _wait_screens(tmp_path / "run", 1)  # its page is open
    home = init_phone(tmp_path / "phone")
    phone = link_phone(station, home, str(ready["pair_uri"]))
    assert run([command("station"), "logout", *ctl]).returncode == 0
    station.wait_for("wiped", timeout=30)
    station.wait_for("kiosk", after=station.events.index(first) + 1, timeout=30)
    station.signal(signal.SIGTERM)
    assert station.popen.wait(60) is not None
    phone.stop()
    report = parse_strace_log(log, runtime_dirs=(str(runtime),))
    ram = sorted({w.path for w in report.ram})
    profile = str(first["profile"])
    kiosks = [e for e in station.events if e["event"] == "kiosk"]
    second = str(kiosks[1]["profile"])
    assert sum(1 for p in ram if p.startswith(profile)) > 10, ram[:20]
    assert any(p.startswith(second) for p in ram) and second != profile
    print(f"the browsers wrote {len(ram)} paths in RAM, {len(report.left)} left")
    assert report.left == [], report.left
    assert report.clean, report.summary() + "\n" + "\n".join(w.path for w in report.writes[:40])
    shown = run([command("station"), "audit", "--strace-log", str(log)], timeout=120)
    assert "written in RAM (tmpfs)" in shown.stdout, shown.stdout


@pytest.mark.slow
def test_a_kiosk_whose_page_is_gone_gets_a_new_browser(tmp_path: Path, display: str) -> None:
    """The page's key lives in its memory only: a reload, a crashed renderer or a closed
    window loses it. The station then renews the browser with a fresh launch link."""
    station = _start(tmp_path, "--kiosk", env=dict(os.environ, DISPLAY=display))
    first = station.wait_for("kiosk", timeout=20)
    _wait_screens(tmp_path, 1)
    os.kill(int(first["pid"]), signal.SIGKILL)  # the window is gone, its helpers follow
    _wait_screens(tmp_path, 0)
    second = station.wait_for("kiosk", after=station.events.index(first) + 1, timeout=60)
    assert second["reason"] == "page lost" and second["profile"] != first["profile"]
    assert not Path(str(first["profile"])).exists()
    _wait_screens(tmp_path, 1)
    station.stop()
