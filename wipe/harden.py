"""Hardening of a session worker process, applied first thing at its start, and of the
supervisor (``harden_supervisor``) at ``station start``.

Each measure is reported (applied or not, and why), never fatal on its own: an
operator must see, in ``station start``'s output and in ``station audit``, what this
kernel and these limits allowed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import resource
import signal
import sys
from dataclasses import asdict, dataclass, field

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
MCL_CURRENT = 1
MCL_FUTURE = 2
MCL_ONFAULT = 4  # Linux 4.4+


@dataclass(frozen=True)
class Measure:
    applied: bool
    detail: str


@dataclass
class HardeningReport:
    measures: dict[str, Measure] = field(default_factory=dict)

    def add(self, name: str, applied: bool, detail: str) -> None:
        self.measures[name] = Measure(applied, detail)

    def as_dict(self) -> dict[str, dict[str, object]]:
        return {name: asdict(m) for name, m in self.measures.items()}

    def line(self) -> str:
        return ", ".join(
            f"{name}={'yes' if m.applied else 'NO (' + m.detail + ')'}"
            for name, m in self.measures.items()
        )


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(name, use_errno=True)


def harden_process(*, expected_ppid: int | None = None) -> HardeningReport:
    report = HardeningReport()
    libc = _libc()
    if libc is not None:
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            report.add("pdeathsig", True, "SIGKILL when the supervisor dies")
            # The parent may have died before the call: then nobody would signal us.
            if expected_ppid is not None and os.getppid() != expected_ppid:
                os._exit(70)
        else:
            report.add("pdeathsig", False, os.strerror(ctypes.get_errno()))
    else:
        report.add("pdeathsig", False, "not Linux")
    _no_dumps(report, libc)
    if libc is not None:
        # ONFAULT: each page is locked when first touched rather than all at once, so a
        # page that ever holds a secret is never swapped out, while the unused parts of
        # every library and thread stack are not made resident (~17 MB a worker).
        if libc.mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == 0:
            report.add("mlockall", True, "memory locked as it is touched: never swapped out")
        elif ctypes.get_errno() == errno.EINVAL and libc.mlockall(MCL_CURRENT | MCL_FUTURE) == 0:
            report.add("mlockall", True, "memory locked: never swapped out")
        else:
            soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
            limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft} bytes"
            report.add(
                "mlockall", False, f"{os.strerror(ctypes.get_errno())} (RLIMIT_MEMLOCK {limit})"
            )
    else:
        report.add("mlockall", False, "not Linux")
    os.umask(0o077)
    report.add("umask", True, "077")
    sys.dont_write_bytecode = True
    report.add("no_bytecode", True, "sys.dont_write_bytecode")
    return report


def harden_supervisor() -> HardeningReport:
    """What fits the long-lived supervisor: it holds the kiosk's page keys, the launch
    links and the pairing offers, so it is not dumpable and writes no core file; its
    children (workers, the kiosk browser) start with umask 077 and RLIMIT_CORE 0.

    It does not ``mlockall``: it runs for days, with threads (mDNS, the loop's
    executor) whose stacks would all be locked, and a locked process that outgrows
    RLIMIT_MEMLOCK fails its next allocation. No session text ever reaches it."""
    report = HardeningReport()
    _no_dumps(report, _libc())
    os.umask(0o077)
    report.add("umask", True, "077")
    return report


def _no_dumps(report: HardeningReport, libc: ctypes.CDLL | None) -> None:
    if libc is None:
        report.add("not_dumpable", False, "not Linux")
    elif libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0:
        report.add("not_dumpable", True, "no ptrace by the same user, no core")
    else:
        report.add("not_dumpable", False, os.strerror(ctypes.get_errno()))
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        report.add("no_core", True, "RLIMIT_CORE 0")
    except (ValueError, OSError) as exc:
        report.add("no_core", False, str(exc))


def read_back() -> dict[str, object]:
    """What the kernel says about this process now (for tests and audits)."""
    libc = _libc()
    dumpable = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) if libc is not None else None
    umask = os.umask(0)
    os.umask(umask)
    return {
        "dumpable": dumpable,
        "core_limit": resource.getrlimit(resource.RLIMIT_CORE),
        "umask": umask,
    }
