"""A lost phone gives up nothing: copies of its files (phone.db with its -wal and -shm,
and the keystore) hold no command or message text and no usable session secret; they
resume nothing without the passphrase; with it, the phone resumes and its log is whole.

Also the passphrase's ways in: never argv; a file, the environment, or a terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import sqlite3
import termios
import time
from pathlib import Path

import pytest

from tests.phone.test_sealed_store import hits
from tests.procs import Proc, command, run, start_station

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple"


def _env(passphrase: str | None = PASSPHRASE) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FIELDSTATION_PASSPHRASE"}
    if passphrase is not None:
        env["FIELDSTATION_PASSPHRASE"] = passphrase
    return env


def _phone(*argv: str, passphrase: str | None = PASSPHRASE) -> tuple[int, str, str]:
    result = run([command("medic-phone"), *argv], env=_env(passphrase))
    return result.returncode, result.stdout, result.stderr


def _snapshot_files(home: Path, into: Path) -> bytes:
    """What a thief copies off the phone: the store, its WAL and index, the keystore."""
    into.mkdir()
    for name in ("phone.db", "phone.db-wal", "phone.db-shm", "identity.key"):
        if (home / name).exists():
            shutil.copy2(home / name, into / name)
    assert (into / "phone.db").exists() and (into / "identity.key").exists()
    return b"".join((into / n).read_bytes() for n in sorted(os.listdir(into)))


def _tunnel_states(copy: Path) -> list[bytes]:
    with sqlite3.connect(f"file:{copy / 'phone.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT tunnel_state FROM links").fetchall()
    return [bytes(r[0]) for r in rows if r[0] is not None]


@pytest.mark.parametrize("protected", [True, False], ids=["passphrase", "no-passphrase"])
def test_copies_of_a_lost_phone(tmp_path: Path, protected: bool) -> None:
    secret = PASSPHRASE if protected else None
    station = start_station(tmp_path)
    ctl = ["--control", str(tmp_path / "ctl.sock")]
    uri = str(station.wait_for("ready")["pair_uri"])
    home = tmp_path / "phone"
    code, out, err = _phone("init", "--home", str(home), passphrase=secret)
    assert code == 0, err
    assert ("NOT PROTECTED" in out) is not protected
    chat_canary, phone_canary = "bed-9-chat-canary", "PHONE-CANARY-bp-90-60"
    code, _, err = _phone(
        "say", "--home", str(home), "--chat", chat_canary, phone_canary, passphrase=secret
    )
    assert code == 0, err
    phone = Proc(
        [command("medic-phone"), "link", uri, "--home", str(home), "--json"], env=_env(secret)
    )
    phone.wait_for("paired", timeout=20)
    session = str(station.wait_for("paired")["session"])
    kiosk_canaries = ["KIOSK-CANARY-give-5mg", "KIOSK-CANARY-recheck-at-10"]
    assert run([command("station"), "send", *ctl, kiosk_canaries[0]]).returncode == 0
    phone.wait_for("command", where=lambda e: e["text"] == kiosk_canaries[0])
    # The phone is lost mid-session: its process dies, its link stays.
    phone.signal(signal.SIGKILL)
    phone.popen.wait(5)
    down = station.events.index(station.wait_for("link_down"))
    sent = run([command("station"), "send", *ctl, kiosk_canaries[1]])
    assert sent.returncode == 0, sent.stderr
    copy = tmp_path / "thief"
    data = _snapshot_files(home, copy)

    found = {c: hits(data, c) for c in (chat_canary, phone_canary, kiosk_canaries[0])}
    session_id = bytes.fromhex(session)
    state_hits = [hits(blob, session_id) for blob in _tunnel_states(copy)]
    if not protected:
        # The positive control: the same search finds everything in a phone kept in clear.
        assert all(found.values()), found
        assert state_hits and all(state_hits)
        station.stop()
        return
    assert found == {c: {} for c in found}, found
    assert state_hits and not any(state_hits), "the tunnel state is sealed"

    # Without the passphrase the copies resume nothing, and say how to give it.
    refused = run(
        [command("medic-phone"), "link", uri, "--home", str(copy), "--json"],
        env=_env(None),
        timeout=30,
    )
    assert refused.returncode == 1
    assert "FIELDSTATION_PASSPHRASE" in refused.stderr and "--passphrase-file" in refused.stderr
    wrong = run(
        [command("medic-phone"), "link", uri, "--home", str(copy)], env=_env("guess"), timeout=30
    )
    assert wrong.returncode == 1 and "does not open" in wrong.stderr
    code, _, err = _phone("log", "--home", str(copy), passphrase=None)
    assert code == 1 and "passphrase" in err
    assert not [e for e in station.events[down:] if e["event"] == "link_up"]

    # With it, the copy resumes the session, gets what was queued, and its log is whole.
    resumed = Proc([command("medic-phone"), "link", uri, "--home", str(copy), "--json"], env=_env())
    resumed.wait_for("link_up", timeout=20)
    resumed.wait_for("command", where=lambda e: e["text"] == kiosk_canaries[1])
    station.wait_for("link_up")
    resumed.stop()
    code, out, err = _phone("log", "--home", str(copy), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["seq"], r["text"]) for r in rows] == [(1, kiosk_canaries[0]), (2, kiosk_canaries[1])]
    station.stop()


def test_the_passphrase_never_comes_from_argv(tmp_path: Path) -> None:
    home = tmp_path / "phone"
    code, _, err = _phone("init", "--home", str(home), "--passphrase", "hunter2", passphrase=None)
    assert code == 2 and "hunter2" in err  # click: an unexpected extra argument
    assert not home.exists()
    code, _, err = _phone("link", "fieldstation://x", "--passphrase", "hunter2", passphrase=None)
    assert code == 2 and "No such option" in err
    code, _, err = _phone("init", "--home", str(home), "--passphrase", passphrase=None)
    assert code == 1 and "no terminal" in err and "--passphrase-file" in err
    secret_file = tmp_path / "pass.txt"
    secret_file.write_text(PASSPHRASE + "\r\nsecond line ignored\n")
    secret_file.chmod(0o600)
    code, out, err = _phone(
        "init", "--home", str(home), "--passphrase-file", str(secret_file), passphrase=None
    )
    assert code == 0 and "Protected" in out, err
    code, _, err = _phone("log", "--home", str(home), "--passphrase-file", str(secret_file))
    assert code == 0, err  # the file wins over the environment
    code, _, err = _phone("say", "--home", str(home), "hello", passphrase="wrong")
    assert code == 1 and "does not open" in err
    (tmp_path / "empty").write_text("\n")
    code, _, err = _phone("log", "--home", str(home), "--passphrase-file", str(tmp_path / "empty"))
    assert code == 1 and "empty first line" in err
    code, _, err = _phone("log", "--home", str(home), "--passphrase-file", str(tmp_path / "nope"))
    assert code == 1 and "cannot read the passphrase file" in err


def _on_a_terminal(argv: list[str], answers: list[str], timeout: float = 60.0) -> tuple[int, str]:
    """Run ``argv`` with a terminal of its own, answering each prompt in turn."""
    env = _env(None)
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes the command, its terminal the pty
        os.execve(argv[0], argv, env)
    output = b""
    deadline = time.monotonic() + timeout
    pending = list(answers)
    answered = 0
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            # A new prompt, once the terminal stopped echoing (getpass turns echo off
            # and flushes what was typed before).
            if (
                pending
                and len(output) > answered
                and output.rstrip().endswith(b":")
                and not termios.tcgetattr(fd)[3] & termios.ECHO
            ):
                os.write(fd, pending.pop(0).encode() + b"\n")
                answered = len(output)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_the_passphrase_is_asked_on_a_terminal(tmp_path: Path) -> None:
    home = str(tmp_path / "phone")
    code, out = _on_a_terminal(
        [command("medic-phone"), "init", "--home", home, "--passphrase"], [PASSPHRASE, PASSPHRASE]
    )
    assert code == 0 and "Protected" in out, out
    assert PASSPHRASE not in out  # not echoed
    code, out = _on_a_terminal([command("medic-phone"), "log", "--home", home], [PASSPHRASE])
    assert code == 0 and "No commands applied yet" in out, out
    code, out = _on_a_terminal([command("medic-phone"), "log", "--home", home], ["wrong"])
    assert code == 1 and "does not open" in out, out
