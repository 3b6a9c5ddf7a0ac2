"""``station start --kiosk``: Debian's Chromium on a (virtual) display, a RAM profile
renewed at every logout and removed at shutdown."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import need_chromium
from tests.procs import Proc, command, run, start_station

pytestmark = pytest.mark.integration


def _start(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> Proc:
    return start_station(tmp_path, *extra, env=env)


def test_kiosk_refuses_clearly_what_cannot_work(tmp_path: Path) -> None:
    argv = [command("station"), "start", "--no-mdns", "--port", "0", "--kiosk"]
    result = run([*argv, "--browser", str(tmp_path / "no-such-chromium")])
    assert result.returncode == 2 and "no browser at" in result.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    browser = shutil.which("true") or "/bin/true"
    result = run([*argv, "--browser", browser], env=env)
    assert result.returncode == 2 and "no display" in result.stderr
    result = run([*argv, "--no-ui", "--browser", browser])
    assert result.returncode == 2 and "--no-ui" in result.stderr


@pytest.fixture
def display() -> Iterator[str]:
    need_chromium()
    if shutil.which("Xvfb") is None:
        if os.environ.get("CI") or os.geteuid() == 0:
            pytest.fail("Xvfb is missing: `make test` installs Debian's xvfb as root")
        pytest.skip("Xvfb is absent (not root, so the set-up could not install it)")
    number = next(n for n in range(90, 200) if not Path(f"/tmp/.X{n}-lock").exists())
    xvfb = Proc(["Xvfb", f":{number}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        assert time.monotonic() < deadline, f"Xvfb did not start: {xvfb.stderr}"
        time.sleep(0.05)
    yield f":{number}"
    xvfb.stop()


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
