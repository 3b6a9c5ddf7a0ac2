"""Runtime and control directories no other local user can steer.

Without ``XDG_RUNTIME_DIR`` the station keeps its control socket in
``$TMPDIR/fieldstation-UID`` (``/tmp`` by default). Another user who gets there first
(a directory of theirs, a symlink, a symlink inside a directory of theirs) makes the
station refuse to start, and nothing the link points to changes. The tests use a
sticky, world-writable stand-in for ``/tmp`` so that they never touch the real one.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.localuser import LocalUser, local_user
from tests.procs import Proc, command, run
from wipe.safedir import UnsafeDirectory, private_dir

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (creates a local user)")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A stand-in for /tmp: world-writable and sticky, reachable by every user."""
    path = Path(tempfile.mkdtemp(prefix="fieldstation-sharedtmp-"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """What the attacker points the station at (standing in for /etc): root's, 0755."""
    path = tmp_path / "etc"
    path.mkdir()
    path.chmod(0o755)
    (path / "passwd").write_text("root:x:0:0\n")
    return path


def _start(shared_tmp: Path, *extra: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = str(shared_tmp)
    result = run(
        [
            command("station"),
            "start",
            "--host",
            "127.0.0.1",
            "--no-mdns",
            "--no-ui",
            "--port",
            "0",
            "--json",
            *extra,
        ],
        env=env,
        timeout=60,
    )
    return result.returncode, result.stderr


def _as(attacker: LocalUser, *argv: str) -> None:
    result = attacker.run(list(argv))
    assert result.returncode == 0, result.stderr


@root_only
@pytest.mark.root
@pytest.mark.integration
@pytest.mark.parametrize("plant", ["link-in-their-dir", "base-is-a-link", "base-is-theirs"])
def test_a_planted_runtime_dir_is_refused_and_its_target_untouched(
    plant: str, shared_tmp: Path, victim: Path
) -> None:
    base = shared_tmp / f"fieldstation-{os.getuid()}"
    before = {p.name: p.lstat() for p in [victim, *victim.iterdir()]}
    with local_user() as attacker:
        if plant == "link-in-their-dir":  # the case: the station chmod-ed /etc
            _as(attacker, "mkdir", str(base))
            _as(attacker, "ln", "-s", str(victim), str(base / "fieldstation.sock.d"))
        elif plant == "base-is-a-link":
            _as(attacker, "ln", "-s", str(victim), str(base))
        else:
            _as(attacker, "mkdir", "-m", "0777", str(base))
        code, stderr = _start(shared_tmp)
        assert code == 2, stderr
        assert "refusing" in stderr and str(base) in stderr, stderr
        if plant != "base-is-a-link":
            assert f"uid {attacker.uid}" in stderr, stderr
    after = {p.name: p.lstat() for p in [victim, *victim.iterdir()]}
    assert sorted(after) == sorted(before), "nothing was created in the target"
    for name, info in before.items():
        assert stat.S_IMODE(after[name].st_mode) == stat.S_IMODE(info.st_mode), name
        assert after[name].st_uid == info.st_uid


@pytest.mark.integration
def test_the_runtime_dirs_are_created_private(shared_tmp: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = str(shared_tmp)
    old = os.umask(0o022)
    try:
        station = Proc(
            [
                command("station"),
                "start",
                "--host",
                "127.0.0.1",
                "--no-mdns",
                "--no-ui",
                "--port",
                "0",
                "--json",
            ],
            env=env,
        )
    finally:
        os.umask(old)
    ready = station.wait_for("ready", timeout=30)
    base = shared_tmp / f"fieldstation-{os.getuid()}"
    assert ready["control"] == str(base / "fieldstation.sock")
    for path in (base, base / "fieldstation.sock.d"):
        info = path.lstat()
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700, path
        assert info.st_uid == os.getuid()
    assert stat.S_IMODE((base / "fieldstation.sock").lstat().st_mode) == 0o600
    station.stop()
    assert not (base / "fieldstation.sock.d").exists()


def test_private_dir_checks_before_it_changes_anything(tmp_path: Path) -> None:
    made = private_dir(tmp_path / "a" / "b")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700  # created: private too
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    private_dir(loose, make_private=False)  # ours, not writable by others: used as it is
    assert stat.S_IMODE(loose.stat().st_mode) == 0o755
    private_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    target = tmp_path / "target"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(UnsafeDirectory, match="is a symlink"):
        private_dir(tmp_path / "link")
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # writable by all and not sticky: anything inside can be swapped
    with pytest.raises(UnsafeDirectory, match="not sticky"):
        private_dir(shared / "mine")
    assert not (shared / "mine").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(UnsafeDirectory, match="not a directory"):
        private_dir(tmp_path / "file" / "x")
    writable = tmp_path / "writable"
    writable.mkdir()
    writable.chmod(0o777)
    with pytest.raises(UnsafeDirectory, match="writable by other users"):
        private_dir(writable, make_private=False)


@root_only
@pytest.mark.root
def test_a_phone_home_planted_by_another_user_is_refused(shared_tmp: Path, victim: Path) -> None:
    home = shared_tmp / "phone"
    with local_user() as attacker:
        _as(attacker, "ln", "-s", str(victim), str(home))
        result = run([command("medic-phone"), "init", "--home", str(home)])
        assert result.returncode == 1 and "symlink" in result.stderr, result.stderr
        _as(attacker, "rm", str(home))
        _as(attacker, "mkdir", str(home))
        result = run([command("medic-phone"), "init", "--home", str(home)])
        assert result.returncode == 1 and f"uid {attacker.uid}" in result.stderr, result.stderr
    assert stat.S_IMODE(victim.stat().st_mode) == 0o755
    assert sorted(p.name for p in victim.iterdir()) == ["passwd"]
