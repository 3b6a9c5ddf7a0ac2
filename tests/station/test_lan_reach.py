"""A clinic's real network, in namespaces this test creates (issue 13): the station is
reachable by default, the phone is never silent and names the cause, tries every
address at once, survives a roam, and is back at once when the link returns."""

from __future__ import annotations

import faulthandler
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.lanrig import link, p95, phone_home, send, stamp, station, wait_rows
from tests.netns import lan, requires_root
from tests.procs import Proc, command, run

pytestmark = [pytest.mark.root, pytest.mark.integration, requires_root]


def test_plain_station_start_is_reachable_and_a_code_pairs(tmp_path: Path) -> None:
    with lan("station", "phone") as net:
        st = station(net["station"], tmp_path)
        ready = st.wait_for("ready")
        where = f"{net['station'].address}:8765"
        assert ready["addresses"] == [where] and ready["mdns"] is True
        assert f"a={where}&" in str(ready["pair_uri"]) and "127.0.0.1" not in ready["pair_uri"]
        home = phone_home(tmp_path)
        began = time.time()
        phone = link(net["phone"], home, str(ready["pair_code"]))
        paired = phone.wait_for("paired", timeout=20)
        assert phone.wait_for("connecting")["addresses"] == [where]
        print(
            f"plain start, pairing by code: paired {stamp(paired) - began:.2f} s after the command"
        )
        send(tmp_path, [f"command {i}" for i in range(200)])
        rows = wait_rows(home, 200, 30)
        assert [r["seq"] for r in rows] == list(range(1, 201))
        assert [r["text"] for r in rows] == [f"command {i}" for i in range(200)]
        phone.stop()
        st.stop()


def test_loopback_host_turns_mdns_off_and_says_so(tmp_path: Path) -> None:
    human = Proc(
        [
            command("station"),
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-ui",
            "--control",
            str(tmp_path / "ctl.sock"),
        ]
    )
    line = human.wait_line(lambda s: s.startswith("Phones connect to:"), timeout=30)
    assert line.startswith("Phones connect to: 127.0.0.1:")
    note = human.wait_line(lambda s: s.startswith("mDNS off"), timeout=5)
    assert "127.0.0.1" in note and "cannot reach" in note
    human.wait_line(lambda s: s.startswith("Pairing code:"), timeout=10)
    assert not any("\x1b[" in s for s in human.lines)  # no QR code: stdout is no terminal
    human.stop()


def test_the_offer_and_the_records_follow_the_addresses(tmp_path: Path) -> None:
    with lan("station", "phone") as net:
        st = station(net["station"], tmp_path)
        first = f"{net['station'].address}:8765"
        mark = len(st.events)
        second = f"{net.add_address('station')}:8765"
        moved = st.wait_for("addresses", after=mark, timeout=10)
        assert sorted(moved["addresses"]) == sorted([first, second])
        offer = st.wait_for("offer", after=mark, timeout=20)  # a fresh offer names both
        assert f"a={first}" in offer["pair_uri"] and f"a={second}" in offer["pair_uri"]
        found = run(
            [command("medic-phone"), "discover", "--json", "--timeout", "3"],
            prefix=net["phone"].prefix(),
        )
        listed = json.loads(found.stdout)
        assert [s["name"] for s in listed] == ["clinic-a"]
        assert sorted(f"{a}:8765" for a in listed[0]["addresses"]) == sorted([first, second])
        st.stop()


def test_multicast_blocked_uri_pairs_and_code_names_multicast(tmp_path: Path) -> None:
    with lan("station", "phone") as net:
        net.block_multicast()
        st = station(net["station"], tmp_path)
        ready = st.wait_for("ready")
        home = phone_home(tmp_path, "by-code")
        began = time.monotonic()
        by_code = link(net["phone"], home, str(ready["pair_code"]))
        assert by_code.popen.wait(15) != 0
        failed_after = time.monotonic() - began
        diagnosis = by_code.wait_for("diagnosis")
        assert diagnosis["cause"] == "multicast"
        message = "multicast may be blocked: scan the QR code or pass the URI"
        assert message in diagnosis["message"] and message in "\n".join(by_code.stderr)
        print(f"multicast blocked: code pairing failed with the multicast message in"
              f" {failed_after:.2f} s")  # fmt: skip
        assert failed_after <= 5.0

        home = phone_home(tmp_path, "by-uri")
        began_wall = time.time()
        by_uri = link(net["phone"], home, str(st.wait_for("ready")["pair_uri"]))
        paired = by_uri.wait_for("paired", timeout=10)
        took = stamp(paired) - began_wall
        print(f"multicast blocked: URI pairing took {took:.2f} s from the command")
        assert took <= 2.0
        by_uri.stop()
        st.stop()


def test_client_isolation_is_named_while_mdns_still_works(tmp_path: Path) -> None:
    with lan("station", "phone") as net:
        st = station(net["station"], tmp_path)
        ready = st.wait_for("ready")
        net.isolate("phone", net["station"].address)
        home = phone_home(tmp_path)
        began = time.time()
        phone = link(net["phone"], home, str(ready["pair_code"]))
        diagnosis = phone.wait_for("diagnosis", timeout=15)
        took = stamp(diagnosis) - began
        print(f"client isolation named {took:.2f} s after the command: {diagnosis['message']}")
        assert diagnosis["cause"] == "isolation"
        assert (
            "the WiFi may isolate devices from each other, or a firewall blocks the port"
            in diagnosis["message"]
        )
        assert took <= 5.0
        failed = phone.wait_for("connect_failed")
        assert failed["address"] == f"{net['station'].address}:8765" and failed["error"]
        phone.stop()
        st.stop()


def test_a_station_with_two_interfaces_is_reached_through_the_reachable_one(
    tmp_path: Path,
) -> None:
    with lan("station", "phone") as net:
        unreachable = net.second_interface("station")
        # The phone's packets for any other network go to a gateway that does not exist:
        # a SYN to the station's second address waits and is never answered.
        phone_ns = net["phone"].ns
        run(["ip", "-n", phone_ns, "route", "add", "default", "via", net.unused_address()])
        st = station(net["station"], tmp_path)
        ready = st.wait_for("ready")
        reachable = f"{net['station'].address}:8765"
        assert set(ready["addresses"]) == {reachable, f"{unreachable}:8765"}
        uri = str(ready["pair_uri"])
        # The unreachable address first, as a kiosk with its interfaces the other way
        # round would print it.
        first, rest = uri.split("&a=", 1)[0], uri.split("&a=", 1)[1]
        addresses, tail = rest.split("&id=", 1)
        swapped = "&a=".join(
            sorted(addresses.split("&a="), key=lambda a: a != f"{unreachable}:8765")
        )
        uri = f"{first}&a={swapped}&id={tail}"
        assert uri.index(unreachable) < uri.index(net["station"].address)
        home = phone_home(tmp_path)
        phone = link(net["phone"], home, uri)
        paired = phone.wait_for("paired", timeout=10)
        connecting = phone.wait_for("connecting")
        took = stamp(paired) - stamp(connecting)
        print(f"two interfaces: linked {took:.3f} s after the first attempt")
        assert took <= 1.0
        phone.stop()
        st.stop()


def test_roaming_phone_resumes_once_and_loses_nothing(tmp_path: Path) -> None:
    with lan("station", "phone") as net:
        st = station(net["station"], tmp_path)
        home = phone_home(tmp_path)
        phone = link(net["phone"], home, str(st.wait_for("ready")["pair_uri"]))
        phone.wait_for("paired", timeout=20)
        send(tmp_path, [f"before {i}" for i in range(100)])
        assert len(wait_rows(home, 100, 20)) == 100
        ups = phone.count("link_up")
        seen = len(phone.events)
        net.drop_address("phone")  # the phone leaves one access point...
        send(tmp_path, [f"between {i}" for i in range(100)])
        time.sleep(1.0)
        net.add_address("phone")  # ...and gets a new address from the next one
        new_up = time.time()
        send(tmp_path, [f"after {i}" for i in range(100)])
        resumed = phone.wait_for("link_up", timeout=15, after=seen)
        took = stamp(resumed) - new_up
        rows = wait_rows(home, 300, 30)
        print(f"roaming: resumed {took:.2f} s after the new address was up")
        assert took <= 5.0
        expected = (
            [f"before {i}" for i in range(100)]
            + [f"between {i}" for i in range(100)]
            + [f"after {i}" for i in range(100)]
        )
        assert [r["seq"] for r in rows] == list(range(1, 301))
        assert [r["text"] for r in rows] == expected
        time.sleep(1.0)
        assert phone.count("link_up") == ups + 1  # resumed exactly once
        phone.stop()
        st.stop()


@pytest.mark.slow
def test_back_at_once_when_the_link_returns(tmp_path: Path) -> None:
    """20 outages of 5-10 s (the phone's link, then the station's, in turn)."""
    faulthandler.cancel_dump_traceback_later()  # long by design; every wait is bounded
    rng = random.Random(13)
    with lan("station", "phone") as net:
        st = station(net["station"], tmp_path, "--inactivity", "3600")
        home = phone_home(tmp_path)
        phone = link(net["phone"], home, str(st.wait_for("ready")["pair_uri"]))
        phone.wait_for("paired", timeout=20)
        st.wait_for("paired", timeout=20)  # the station has the phone's confirmation
        recoveries: dict[str, list[float]] = {"phone": [], "station": []}
        for outage in range(20):
            side = "phone" if outage % 2 == 0 else "station"
            downs_at = ups_at = len(phone.events)
            net.down(side)
            phone.wait_for("link_down", after=downs_at, timeout=15)
            time.sleep(max(0.0, rng.uniform(5.0, 10.0) - 3.0))
            back = time.time()
            net.up(side)
            up = phone.wait_for("link_up", after=ups_at, timeout=15)
            recoveries[side].append(stamp(up) - back)
        everything = recoveries["phone"] + recoveries["station"]
        print(
            "recovery after the link returned, 20 outages:"
            f" p95 {p95(everything):.3f} s, max {max(everything):.3f} s;"
            f" phone's link p95 {p95(recoveries['phone']):.3f} s,"
            f" station's link p95 {p95(recoveries['station']):.3f} s"
        )
        assert p95(everything) <= 0.3
        phone.stop()
        st.stop()


def _session(session: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event["session"] == session


def _not_code(code: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event["pair_code"] != code


@pytest.mark.slow
def test_pairing_by_code_p95_within_a_second(tmp_path: Path) -> None:
    with lan("station", "phone") as net:
        st = station(net["station"], tmp_path)
        took: list[float] = []
        for i in range(20):
            offers = [e for e in st.events if e["event"] in ("ready", "offer")]
            code = str(offers[-1]["pair_code"])
            home = phone_home(tmp_path, f"phone-{i}")
            mark = len(st.events)
            began = time.time()
            phone = link(net["phone"], home, code)
            paired = phone.wait_for("paired", timeout=20)
            took.append(stamp(paired) - began)
            session = str(paired["session"])
            st.wait_for("paired", where=_session(session), timeout=20)
            phone.stop()
            result = run(
                [
                    command("station"),
                    "logout",
                    "--control",
                    str(tmp_path / "ctl.sock"),
                    "--session",
                    session,
                ]
            )
            assert result.returncode == 0, result.stderr
            st.wait_for("offer", after=mark, where=_not_code(code), timeout=20)
        print(
            f"pairing by code, 20 runs: p50 {sorted(took)[10]:.2f} s,"
            f" p95 {p95(took):.2f} s, max {max(took):.2f} s (from the command to paired)"
        )
        assert p95(took) <= 1.0
        st.stop()
