"""The station and the phone as a user runs them: real processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.procs import Proc, command, run, start_station
from wire.control import STATION_REQUESTS, Status, StatusReply
from wire.jsonlines import ask

pytestmark = pytest.mark.integration


def _start(tmp_path: Path, *extra: str) -> Proc:
    return start_station(tmp_path, *extra)


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Proc]:
    proc = _start(tmp_path)
    yield proc
    proc.stop()


def _ctl(tmp_path: Path) -> list[str]:
    return ["--control", str(tmp_path / "ctl.sock")]


def _phone_home(tmp_path: Path, name: str = "phone") -> Path:
    home = tmp_path / name
    result = run([command("medic-phone"), "init", "--home", str(home)])
    assert result.returncode == 0, result.stderr
    return home


def _link(home: Path, target: str, *extra: str) -> Proc:
    return Proc([command("medic-phone"), "link", target, "--home", str(home), "--json", *extra])


def _log(home: Path) -> list[dict[str, object]]:
    result = run([command("medic-phone"), "log", "--home", str(home), "--json"])
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def _wait(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _wait_log(home: Path, count: int, timeout: float = 30.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = _log(home)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_pair_by_uri_send_log_and_logout(station: Proc, tmp_path: Path) -> None:
    home = _phone_home(tmp_path)
    uri = str(station.wait_for("ready")["pair_uri"])
    phone = _link(home, uri)
    phone.wait_for("paired")
    paired = station.wait_for("paired")
    assert paired["fingerprint"] and paired["session"]
    texts = [f"command {i}" for i in range(40)]
    result = run([command("station"), "send", *_ctl(tmp_path), "-"], stdin="\n".join(texts))
    assert result.returncode == 0, result.stderr
    rows = _wait_log(home, 40)
    assert [r["seq"] for r in rows] == list(range(1, 41))
    assert [r["text"] for r in rows] == texts
    assert all(r["station"] == "field-station" and r["received_at"] for r in rows)
    status = json.loads(run([command("station"), "status", *_ctl(tmp_path), "--json"]).stdout)
    assert status["sessions"][0]["linked"] is True
    assert run([command("station"), "logout", *_ctl(tmp_path)]).returncode == 0
    assert station.wait_for("logout")["reason"] == "explicit"
    assert station.wait_for("wiped")["undelivered"] == 0
    assert phone.wait_for("logout")["reason"] == "explicit"
    assert phone.popen.wait(30) == 0


def test_phone_state_is_mirrored_and_unlink_logs_out(station: Proc, tmp_path: Path) -> None:
    home = _phone_home(tmp_path)
    phone = _link(home, str(station.wait_for("ready")["pair_uri"]))
    phone.wait_for("paired")
    station.wait_for("paired")

    control = tmp_path / "ctl.sock"

    def mirrored() -> int:  # asked on the control socket: no process per look
        reply = ask(control, Status(), STATION_REQUESTS, StatusReply)
        assert isinstance(reply, StatusReply), reply
        return reply.sessions[0].mirrored

    said = time.monotonic()
    assert (
        run([command("medic-phone"), "say", "--home", str(home), "from the phone"]).returncode == 0
    )
    _wait(lambda: mirrored() >= 1)
    # "The kiosk mirrors the phone within a second": a figure for the record (bench/
    # measures it); the test waits on the mirror with a generous ceiling.
    print(f"a phone change was mirrored {time.monotonic() - said:.2f} s after `say` began")
    assert mirrored() == 1
    assert run([command("station"), "send", *_ctl(tmp_path), "typed at the kiosk"]).returncode == 0
    _wait(lambda: mirrored() >= 2)  # applied on the phone, then mirrored back
    assert mirrored() == 2
    result = run([command("medic-phone"), "unlink", "--home", str(home)])
    assert result.returncode == 0, result.stderr
    assert station.wait_for("logout")["reason"] == "remote"
    assert station.wait_for("wiped")["undelivered"] == 0
    assert phone.wait_for("logout")["reason"] == "remote"
    assert phone.popen.wait(30) == 0
    result = run([command("medic-phone"), "unlink", "--home", str(home)])
    assert result.returncode == 1 and "no running" in result.stderr


def test_send_into_a_phone_chat(station: Proc, tmp_path: Path) -> None:
    import asyncio

    from medic_phone.store import PhoneStore

    home = _phone_home(tmp_path)
    said = run([command("medic-phone"), "say", "--home", str(home), "--chat", "ward-3", "hi"])
    assert said.returncode == 0, said.stderr
    phone = _link(home, str(station.wait_for("ready")["pair_uri"]))
    phone.wait_for("paired")
    station.wait_for("paired")
    ctl = _ctl(tmp_path)
    for chat, text in (("ward-3", "in the ward"), ("nowhere", "no such chat")):
        sent = run([command("station"), "send", *ctl, "--chat", chat, text])
        assert sent.returncode == 0, sent.stderr
    assert len(_wait_log(home, 2)) == 2

    async def chats() -> dict[str, list[str]]:
        async with PhoneStore.open(home) as store:
            _, _, messages = await store.snapshot()
        found: dict[str, list[str]] = {}
        for m in messages:
            found.setdefault(str(m["chat"]), []).append(str(m["body"]))
        return found

    found = asyncio.run(chats())
    assert found["ward-3"] == ["hi", "in the ward"]
    assert found["kiosk"] == ["no such chat"]  # an unknown chat falls back to the kiosk chat
    phone.stop()


def test_phone_killed_and_restarted_mid_stream(station: Proc, tmp_path: Path) -> None:
    home = _phone_home(tmp_path)
    uri = str(station.wait_for("ready")["pair_uri"])
    phone = _link(home, uri)
    phone.wait_for("paired")
    for batch in range(6):
        lines = "\n".join(f"c{batch}-{i}" for i in range(40))
        assert run([command("station"), "send", *_ctl(tmp_path), "-"], stdin=lines).returncode == 0
        if batch == 2:
            phone.signal(signal.SIGKILL)  # mid-stream: some applied, some in flight
            phone.popen.wait(5)
            phone = _link(home, uri)  # the same URI resumes the saved link
    rows = _wait_log(home, 240)
    assert [r["seq"] for r in rows] == list(range(1, 241))
    assert [r["text"] for r in rows] == [f"c{b}-{i}" for b in range(6) for i in range(40)]
    phone.stop()


def test_several_phones_each_with_its_own_worker(station: Proc, tmp_path: Path) -> None:
    phones = []
    for n in range(8):
        home = _phone_home(tmp_path, f"phone{n}")
        offers = [e for e in station.events if e["event"] in ("ready", "offer")]
        phone = _link(home, str(offers[-1]["pair_uri"]))
        phone.wait_for("paired")
        station.wait_for("paired", where=lambda e, k=n: station.count("paired") > k)
        station.wait_for("offer", where=lambda e, k=n: station.count("offer") > k)
        phones.append((home, phone))
    sessions = json.loads(run([command("station"), "status", *_ctl(tmp_path), "--json"]).stdout)
    ids = [s["session"] for s in sessions["sessions"]]
    assert len(ids) == 8 and len({s["control"] for s in sessions["sessions"]}) == 8
    for session in ids:
        args = [command("station"), "send", *_ctl(tmp_path), "--session", session[:12]]
        assert run([*args, f"for {session[:6]}"]).returncode == 0
    for home, _ in phones:
        rows = _wait_log(home, 1)
        assert len(rows) == 1
    texts = sorted(str(_log(h)[0]["text"]) for h, _ in phones)
    assert texts == sorted(f"for {s[:6]}" for s in ids)
    result = run([command("station"), "send", *_ctl(tmp_path), "ambiguous"])
    assert result.returncode != 0 and "several sessions" in result.stderr
    for _, phone in phones:
        phone.stop()


def test_a_crashed_worker_disturbs_no_other_session(station: Proc, tmp_path: Path) -> None:
    homes = []
    for n in range(2):
        home = _phone_home(tmp_path, f"p{n}")
        offers = [e for e in station.events if e["event"] in ("ready", "offer")]
        phone = _link(home, str(offers[-1]["pair_uri"]))
        phone.wait_for("paired")
        station.wait_for("offer", where=lambda e, k=n: station.count("offer") > k)
        homes.append(home)
    status = json.loads(run([command("station"), "status", *_ctl(tmp_path), "--json"]).stdout)
    victim, survivor = status["sessions"]
    os.kill(victim["pid"], signal.SIGSEGV)
    wiped = station.wait_for("wiped", where=lambda e: e["session"] == victim["session"])
    assert wiped["exit"] != 0
    logout = station.wait_for("logout", where=lambda e: e["session"] == victim["session"])
    assert logout["reason"] == "crashed"
    args = [command("station"), "send", *_ctl(tmp_path), "--session", survivor["session"]]
    assert run([*args, "after the crash"]).returncode == 0
    # The survivor's phone applies it (waited for); the victim's never got anything.
    _wait(lambda: sum(len(_log(h)) for h in homes) >= 1)
    assert sorted(len(_log(h)) for h in homes) == [0, 1]
    status = json.loads(run([command("station"), "status", *_ctl(tmp_path), "--json"]).stdout)
    assert [s["session"] for s in status["sessions"]] == [survivor["session"]]
    assert status["offer_open"]


def test_full_queue_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    station = _start(tmp_path, "--queue-limit", "50")
    home = _phone_home(tmp_path)
    phone = _link(home, str(station.wait_for("ready")["pair_uri"]))
    phone.wait_for("paired")
    station.wait_for("paired")
    phone.signal(signal.SIGKILL)  # the phone goes away: commands queue at the station
    lines = "\n".join(f"q{i}" for i in range(60))
    result = run([command("station"), "send", *_ctl(tmp_path), "-"], stdin=lines)
    assert result.returncode == 3
    assert "queue full" in result.stderr and "50 command(s) queued" in result.stderr


def test_logout_reports_what_never_reached_the_phone(station: Proc, tmp_path: Path) -> None:
    home = _phone_home(tmp_path)
    phone = _link(home, str(station.wait_for("ready")["pair_uri"]))
    phone.wait_for("paired")
    session = station.wait_for("paired")["session"]
    phone.signal(signal.SIGKILL)
    assert run([command("station"), "send", *_ctl(tmp_path), "-"], stdin="a\nb\nc").returncode == 0
    status = json.loads(run([command("station"), "status", *_ctl(tmp_path), "--json"]).stdout)
    assert status["sessions"][0]["queued"] == 3
    result = run([command("station"), "logout", *_ctl(tmp_path)])
    assert result.returncode == 0 and "3 command(s) were never delivered" in result.stdout
    assert station.wait_for("wiped", where=lambda e: e["session"] == session)["undelivered"] == 3


def test_a_wrong_code_burns_the_code_pauses_codes_and_the_qr_still_pairs(
    station: Proc, tmp_path: Path
) -> None:
    home = _phone_home(tmp_path)
    ready = station.wait_for("ready")
    code = str(ready["pair_code"])
    wrong = "0000-0000" if code != "0000-0000" else "1111-1111"
    phone = _link(home, wrong, "--connect", f"127.0.0.1:{ready['port']}")
    assert phone.popen.wait(30) != 0
    stderr = "\n".join(phone.stderr)
    assert "wrong or expired code" in stderr and "pairing failed: pairing failed" not in stderr
    assert phone.wait_for("pairing_failed")["reason"] == "wrong or expired code"
    assert station.wait_for("pairing_failed")["reason"] == "wrong or expired code"
    paused = station.wait_for("code_paused")
    assert paused["pair_code"] != code and paused["paused_s"] == 4.0
    assert station.count("offer") == 0  # a burnt code is not a new offer line
    status = json.loads(run([command("station"), "status", *_ctl(tmp_path), "--json"]).stdout)
    assert status["pair_code"] == paused["pair_code"] and status["pair_uri"] == ready["pair_uri"]
    assert status["code_pairing"].startswith("code pairing paused for ")
    assert status["code_pairing"].endswith(" s after wrong codes; scan the QR code")
    human = run([command("station"), "status", *_ctl(tmp_path)]).stdout
    assert "after wrong codes; scan the QR code" in human
    # The QR code's URI was never touched: it pairs during the pause.
    by_uri = _link(_phone_home(tmp_path, "qr"), str(ready["pair_uri"]))
    by_uri.wait_for("paired")
    by_uri.stop()


def test_pair_by_code_with_connect(station: Proc, tmp_path: Path) -> None:
    home = _phone_home(tmp_path)
    ready = station.wait_for("ready")
    phone = _link(home, str(ready["pair_code"]), "--connect", f"127.0.0.1:{ready['port']}")
    phone.wait_for("paired")
    assert station.wait_for("paired")["fingerprint"]
    phone.stop()


def test_reused_expired_and_malformed_uris(station: Proc, tmp_path: Path) -> None:
    uri = str(station.wait_for("ready")["pair_uri"])
    first = _link(_phone_home(tmp_path, "a"), uri)
    first.wait_for("paired")
    second = _link(_phone_home(tmp_path, "b"), uri)
    assert second.popen.wait(30) != 0
    assert any("offer" in line for line in second.stderr)
    expired = uri.rsplit("&x=", 1)[0] + "&x=1000"
    result = run([command("medic-phone"), "link", expired, "--home", str(tmp_path / "b")])
    assert result.returncode != 0 and "expired" in result.stderr
    result = run(
        [command("medic-phone"), "link", "fieldstation://pair?v=1", "--home", str(tmp_path / "b")]
    )
    assert result.returncode == 2 and "not a valid pairing URI" in result.stderr
    first.stop()


def test_store_and_station_failures_are_clear(tmp_path: Path) -> None:
    result = run([command("medic-phone"), "log", "--home", str(tmp_path / "nowhere")])
    assert result.returncode == 1 and "medic-phone init" in result.stderr
    home = _phone_home(tmp_path)
    (home / "phone.db").write_bytes(b"this is not sqlite" * 100)
    result = run([command("medic-phone"), "log", "--home", str(home)])
    assert result.returncode == 1 and "not a healthy phone store" in result.stderr
    assert (home / "phone.db").read_bytes().startswith(b"this is not sqlite")  # untouched
    result = run([command("station"), "status", "--control", str(tmp_path / "none.sock")])
    assert result.returncode == 1 and "no station is running" in result.stderr


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(
            [
                command("station"),
                "start",
                "--host",
                "127.0.0.1",
                "--no-mdns",
                "--port",
                str(port),
                "--control",
                str(tmp_path / "c.sock"),
            ],
            timeout=20,
        )
    assert result.returncode == 2 and "already in use" in result.stderr
