"""The proof tools can fail: the write audit catches a leaky SQLite sort and a plain
file write; the memory scan finds a string in every encoding and counts it right."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wipe.audit import parse_strace_log, strace_command
from wipe.memscan import encodings, scan_pid

needs_strace = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")

_SORT = """
import sqlite3, sys
sys.path.insert(0, {repo!r})
if {leaky}:
    db = sqlite3.connect(":memory:")
    db.execute("PRAGMA temp_store=FILE")
else:
    from wipe.memdb import open_memory_db_sync
    db = open_memory_db_sync()
db.execute("PRAGMA cache_size=10")
db.execute("CREATE TABLE t (x BLOB)")
db.executemany("INSERT INTO t VALUES (randomblob(600))", [()] * 20000)
assert len(db.execute("SELECT x FROM t ORDER BY x").fetchall()) == 20000
"""


def _audited(tmp_path: Path, code: str) -> list[str]:
    log = tmp_path / "strace.log"
    env = dict(os.environ, SQLITE_TMPDIR=str(tmp_path / "spill"), PYTHONDONTWRITEBYTECODE="1")
    (tmp_path / "spill").mkdir()
    subprocess.run(
        strace_command(log, [sys.executable, "-c", code]), check=True, env=env, timeout=120
    )
    return [w.path for w in parse_strace_log(log).writes]


@needs_strace
def test_audit_catches_a_sqlite_sort_spilling_to_disk(tmp_path: Path) -> None:
    repo = str(Path(__file__).resolve().parents[2])
    leaky = _audited(tmp_path, textwrap.dedent(_SORT.format(repo=repo, leaky=True)))
    assert any(p.startswith(str(tmp_path / "spill")) for p in leaky), leaky


@needs_strace
def test_ram_only_sqlite_passes_the_same_audit(tmp_path: Path) -> None:
    repo = str(Path(__file__).resolve().parents[2])
    assert _audited(tmp_path, textwrap.dedent(_SORT.format(repo=repo, leaky=False))) == []


@needs_strace
def test_audit_catches_a_plain_file_write(tmp_path: Path) -> None:
    target = tmp_path / "leak.txt"
    writes = _audited(tmp_path, f"open({str(target)!r}, 'w').write('patient')")
    assert str(target) in writes


def test_audit_parser_reads_strace_lines(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text(
        '101 openat(AT_FDCWD, "/etc/hosts", O_RDONLY|O_CLOEXEC) = 3\n'
        '101 openat(AT_FDCWD, "/var/tmp/x", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 4\n'
        '[pid 102] rename("/a/b", "/a/c") = 0\n'
        '102 openat(AT_FDCWD, "/dev/null", O_WRONLY) = 5\n'
        '103 openat(AT_FDCWD, "/nope", O_WRONLY|O_CREAT, 0600) = -1 EACCES (Permission denied)\n'
        '104 bind(3, {sa_family=AF_UNIX, sun_path="/run/fs.sock"}, 110) = 0\n'
        f'105 openat(AT_FDCWD, "{tmp_path}/shm/profile/Cookies", O_RDWR|O_CREAT, 0600) = 6\n'
        '105 mkdir("/dev/shm/fieldstation-kiosk-x", 0700) = 0\n'
        '105 openat(AT_FDCWD, "/dev/pts/3", O_RDWR) = 7\n'
        '105 openat(AT_FDCWD, "/run/user/0/x", O_WRONLY|O_CREAT, 0600) = 8\n'
        # strace -y: a name relative to a directory descriptor, the path opened, and a
        # call another thread interrupted.
        '106 mkdirat(3</var/lib>, "fs", 0700) = 0\n'
        '106 openat(AT_FDCWD</srv>, "notes.txt", O_WRONLY|O_CREAT, 0600) = 4</srv/notes.txt>\n'
        '107 openat(AT_FDCWD</>, "/var/log/x.log", O_WRONLY|O_APPEND <unfinished ...>\n'
        '106 symlinkat("/etc/passwd", 3</var/lib>, "fs/l") = 0\n'
        "107 <... openat resumed>) = 5</var/log/x.log>\n"
        '108 mkdir("relative", 0777) = 0\n'
    )
    (tmp_path / "shm" / "profile").mkdir(parents=True)
    (tmp_path / "shm" / "profile" / "Cookies").write_text("left behind")
    mounts = (
        "/dev/sda1 / ext4 rw 0 0\nudev /dev devtmpfs rw 0 0\ndevpts /dev/pts devpts rw 0 0\n"
        "tmpfs /dev/shm tmpfs rw 0 0\ntmpfs /run tmpfs rw 0 0\n"
        f"tmpfs {tmp_path}/shm tmpfs rw 0 0\n"
    )
    report = parse_strace_log(log, mounts=mounts)
    assert [w.path for w in report.writes] == [
        "/var/tmp/x",
        "/a/b",
        "/a/c",
        "/var/lib/fs",
        "/srv/notes.txt",
        "/var/lib/fs/l",
        "/var/log/x.log",
        "relative",
    ]
    assert [w.path for w in report.sockets] == ["/run/fs.sock"]
    assert [w.path for w in report.ram] == [
        f"{tmp_path}/shm/profile/Cookies",
        "/dev/shm/fieldstation-kiosk-x",
        "/run/user/0/x",
    ]  # /dev/null and /dev/pts are devices, not files
    assert report.left == [f"{tmp_path}/shm/profile/Cookies"]
    assert not report.clean and "8 file(s)" in report.summary()
    assert "3 path(s) written in RAM (tmpfs), 1 still there" in report.summary()


def test_memory_scan_finds_every_encoding(tmp_path: Path) -> None:
    secret = "SCAN-ME-" + os.urandom(6).hex()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,base64; s=sys.argv[1]; kept=[s.encode(), s.encode('utf-16-le'),"
            " s.encode().hex().encode(), base64.b64encode(s.encode())];"
            " print('ready', flush=True); sys.stdin.read()",
            secret,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"ready\n"
        counts = scan_pid(holder.pid, encodings(secret))
        assert all(counts[name] >= 1 for name in ("utf-8", "utf-16-le", "hex", "base64")), counts
        absent = scan_pid(holder.pid, encodings("NEVER-" + os.urandom(8).hex()))
        assert sum(absent.values()) == 0
    finally:
        holder.kill()
        holder.wait()
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()
