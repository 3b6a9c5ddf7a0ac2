"""The station's processes load only what they use: no OpenSSL, no ``cryptography``.

Each of them costs several MB resident in every process (locked, in a worker); see
``station.lean`` and the lazy imports of ``spake2``, ``segno`` and ``zeroconf``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.procs import command, init_phone, link_phone, run, start_station

# Libraries that a station process paired by QR has no use for.
UNUSED = ("libcrypto", "libssl", "cryptography", "segno")
# And zeroconf's compiled modules (~3 MB resident), in a station that does not announce
# itself (``--no-mdns``, one address).
UNUSED_WITHOUT_MDNS = (*UNUSED, "zeroconf")


def _loaded(pid: int, unused: tuple[str, ...] = UNUSED) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name in unused if name in maps]


@pytest.mark.integration
def test_supervisor_and_worker_load_no_openssl(tmp_path: Path) -> None:
    station = start_station(tmp_path)
    phone = None
    try:
        home = init_phone(tmp_path / "phone")
        phone = link_phone(station, home, str(station.wait_for("ready")["pair_uri"]))
        ctl = ["--control", str(tmp_path / "ctl.sock")]
        sent = run([command("station"), "send", *ctl, "hello"])
        assert sent.returncode == 0, sent.stderr
        assert phone.wait_for("command")["seq"] == 1
        status = json.loads(run([command("station"), "status", *ctl, "--json"]).stdout)
        [session] = status["sessions"]
        # The positive control: the phone's process (websockets' client) does load it.
        assert "libcrypto" in _loaded(phone.popen.pid)
        assert _loaded(int(status["pid"]), UNUSED_WITHOUT_MDNS) == []
        assert _loaded(int(session["pid"]), UNUSED_WITHOUT_MDNS) == []
    finally:
        if phone is not None:
            phone.stop()
        station.stop()


_PROBE = textwrap.dedent(
    """
    import sys
    from station.lean import forgo_openssl

    done = forgo_openssl()
    import asyncio, hashlib, hmac, secrets, random
    assert hashlib.sha1(b"x").hexdigest() == "11f6ad8ec52a2984abaafd7c3b516503785c2072"
    assert hmac.new(b"k", b"m", hashlib.blake2b).hexdigest()
    try:
        import ssl
    except ImportError:
        blocked = True
    else:
        blocked = False
    print(done, blocked, "libcrypto" in open("/proc/self/maps").read())
    """
)


def test_forgo_openssl_keeps_libcrypto_out_and_hashes_working() -> None:
    out = subprocess.run(
        [sys.executable, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "False"]


def test_forgo_openssl_changes_nothing_once_ssl_is_loaded() -> None:
    probe = "import ssl\nfrom station.lean import forgo_openssl\nprint(forgo_openssl())"
    out = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"]
