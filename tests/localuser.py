"""A throwaway unprivileged user for local attacks: created for one test, removed after.

Tests that use it run as root (``pytest.mark.root``) and skip, saying why, otherwise.
The attacker's commands run with ``runuser -u USER --`` from ``/`` (the tests' own
directories are root's and 0700).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


@dataclass(frozen=True)
class LocalUser:
    name: str
    uid: int
    gid: int

    def run(
        self, argv: Sequence[str], *, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as this user; every process it starts ends before this returns."""
        return subprocess.run(
            [RUNUSER, "-u", self.name, "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )


@contextmanager
def local_user() -> Iterator[LocalUser]:
    if os.geteuid() != 0:
        pytest.skip("creating a user for the attacker needs root")
    name = "fsatk" + secrets.token_hex(4)
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name],
        check=True,
        capture_output=True,
    )
    try:
        entry = pwd.getpwnam(name)
        yield LocalUser(name, entry.pw_uid, entry.pw_gid)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
