"""Another local user gets no key, token or text from a ``--kiosk`` station.

A throwaway unprivileged user reads what such a user can: every process's argv and
every environment it may read (Chromium's, the station's, the workers', the phones'),
the station's stdout and its ``-v`` stderr, and ``station status``'s output. It tries
each key and token it finds, with a forged Origin, on the pairing screen, its live
channel and QR code, and every session page and live channel of a station with two
paired phones. 0 successes, while the kiosk keeps working. The positive control: the
same attack, handed one fresh ``station open`` link, gets in.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.localuser import LocalUser, local_user
from tests.procs import STATION_START, Proc, command, init_phone, link_phone, run
from wipe.memscan import process_tree

pytestmark = [
    pytest.mark.root,
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (creates the attacker's user)"),
]

ATTACKER = Path(__file__).resolve().parents[1] / "attacker.py"


def _status(ctl: list[str], *extra: str) -> dict[str, object]:
    result = run([command("station"), "status", *ctl, "--json", *extra])
    assert result.returncode == 0, result.stderr
    value: dict[str, object] = json.loads(result.stdout)
    return value


def _wait(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _listening_ports(pids: list[int]) -> set[int]:
    """TCP ports on 127.0.0.1 that these processes listen on (read as root)."""
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                inodes[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    ports = set()
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        for link in links:
            if link.startswith("socket:[") and link[8:-1] in inodes:
                ports.add(inodes[link[8:-1]])
    return ports


def _attack(attacker: LocalUser, ports: set[int], evidence: Path) -> dict[str, object]:
    files = sorted(str(p) for p in evidence.iterdir())
    result = attacker.run(
        ["/usr/bin/python3", str(ATTACKER), "--ports", ",".join(map(str, sorted(ports))), *files]
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    assert report["uid"] == attacker.uid
    return report


@pytest.fixture
def evidence() -> Iterator[Path]:
    """A directory the attacker can read (the tests' own are root's and 0700)."""
    path = Path(tempfile.mkdtemp(prefix="fieldstation-evidence-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_another_local_user_gets_nothing_from_a_kiosk_station(
    tmp_path: Path, display: str, evidence: Path
) -> None:
    ctl = ["--control", str(tmp_path / "ctl.sock")]
    station = Proc(
        [
            *STATION_START,
            "-v",
            "--kiosk",
            *ctl,
        ],
        env=dict(os.environ, DISPLAY=display),
    )
    ready = station.wait_for("ready", timeout=30)
    ui = urlsplit(str(ready["ui"]))
    assert ui.path == "/" and not ui.query and not ui.fragment, "the address opens nothing"
    _wait(lambda: _status(ctl)["screens"] == 1, "the kiosk browser never opened its page")
    kiosk = station.wait_for("kiosk")

    # Two medics pair; each has text on both sides.
    phones: list[Proc] = []
    for name in ("phone-a", "phone-b"):
        home = init_phone(tmp_path / name)
        said = run([command("medic-phone"), "say", "--home", str(home), f"NOTE-{name}"])
        assert said.returncode == 0, said.stderr
        phones.append(link_phone(station, home, _latest_offer(station)))
    sessions = [str(p.wait_for("paired")["session"]) for p in phones]
    for session, phone in zip(sessions, phones, strict=True):
        text = "TYPED-" + secrets.token_hex(6)
        sent = run([command("station"), "send", *ctl, "--session", session[:16], text])
        assert sent.returncode == 0, sent.stderr
        phone.wait_for("command", where=lambda e, t=text: e["text"] == t)

    # What the attacker may read, as a journal or a shared log would hold it.
    status_text = run([command("station"), "status", *ctl])
    assert status_text.returncode == 0
    outputs = {
        "stdout.txt": "\n".join(station.lines),
        "stderr.txt": "\n".join(station.stderr),
        "status.txt": status_text.stdout,
        "status.json": json.dumps(_status(ctl)),
    }
    assert any("DEBUG" in line for line in station.stderr), "-v logs at DEBUG"
    for name, text in outputs.items():
        (evidence / name).write_text(text)
        (evidence / name).chmod(0o644)

    workers = [int(s["pid"]) for s in _status(ctl)["sessions"]]  # type: ignore[union-attr,index]
    ports = {ui.port or 0} | _listening_ports(workers)
    assert len(ports) == 3, ports  # the pairing screen and two session pages
    browser_pids = process_tree(int(kiosk["pid"]))
    assert len(browser_pids) > 2, "Chromium and its helpers are running"

    with local_user() as attacker:
        report = _attack(attacker, ports, evidence)
        read = report["read"]
        assert isinstance(read, dict) and read["cmdline"] > 10 and read["files"] == 4
        assert report["candidates"] and report["attempts"]
        assert report["successes"] == [], report["successes"]
        print(
            f"attacker read {read['cmdline']} argv, {read['environ']} environments and"
            f" {read['files']} files: {report['candidates']} candidates,"
            f" {report['attempts']} attempts on {len(ports)} ports, 0 successes"
        )

        # The kiosk keeps working: its page is still open, both sessions still linked,
        # and each still delivers.
        after = _status(ctl)
        assert after["screens"] == 1
        assert [s["linked"] for s in after["sessions"]] == [True, True]  # type: ignore[union-attr,index]
        for session, phone in zip(sessions, phones, strict=True):
            text = "AFTER-" + secrets.token_hex(6)
            sent = run([command("station"), "send", *ctl, "--session", session[:16], text])
            assert sent.returncode == 0, sent.stderr
            phone.wait_for("command", where=lambda e, t=text: e["text"] == t)
        assert station.count("kiosk") == 1, "the kiosk browser was never disturbed"

        # The positive control: the same attack with one fresh link gets in.
        link = run([command("station"), "open", *ctl])
        assert link.returncode == 0, link.stderr
        (evidence / "link.txt").write_text(link.stdout)
        (evidence / "link.txt").chmod(0o644)
        control = _attack(attacker, ports, evidence)
        wins = control["successes"]
        assert isinstance(wins, list) and len(wins) == 1, wins
        assert "/live?launch=" in str(wins[0]["target"])
    for phone in phones:
        phone.stop()
    station.stop()


def _latest_offer(station: Proc) -> str:
    """The pairing URI of the offer open now: the newest after the last pairing."""
    paired = [i for i, e in enumerate(station.events) if e.get("event") == "paired"]
    after = paired[-1] + 1 if paired else 0
    station.wait_for("offer" if paired else "ready", after=after)
    offers = [e for e in station.events[after:] if e.get("event") in ("ready", "offer")]
    return str(offers[-1]["pair_uri"])


def test_the_attacker_reads_what_it_is_given(evidence: Path) -> None:
    # The attack must be able to read its evidence (else 0 successes means nothing).
    (evidence / "x.txt").write_text("http://127.0.0.1:1/#launch=" + "A" * 32)
    (evidence / "x.txt").chmod(0o644)
    with local_user() as attacker:
        report = _attack(attacker, set(), evidence)
    read = report["read"]
    assert isinstance(read, dict) and read["files"] == 1
    assert read["environ"] >= 1  # its own, at least: environments are read where allowed
    assert isinstance(report["candidates"], int) and report["candidates"] >= 1
