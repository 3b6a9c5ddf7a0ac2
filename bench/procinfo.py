"""What a process costs, read from /proc: memory (RSS, PSS, USS), CPU time, descriptors
and children. RSS counts every shared page in full (libraries mapped by every worker);
PSS splits each shared page between the processes that map it, so PSS adds up to the
memory a set of processes really takes; USS is what ending the process gives back."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


class ProcessGone(RuntimeError):
    """The process ended while it was being measured."""


@dataclass(frozen=True)
class Memory:
    rss_mb: float
    pss_mb: float
    uss_mb: float

    def __add__(self, other: Memory) -> Memory:
        return Memory(
            self.rss_mb + other.rss_mb, self.pss_mb + other.pss_mb, self.uss_mb + other.uss_mb
        )


NO_MEMORY = Memory(0.0, 0.0, 0.0)


def memory(pid: int) -> Memory:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(f"pid {pid} is gone") from None
    kb: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            kb[name] = int(fields[0])
    uss = kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)
    return Memory(kb["Rss"] / 1024, kb["Pss"] / 1024, uss / 1024)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(f"pid {pid} is gone") from None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def descriptors(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(f"pid {pid} is gone") from None


def children(pid: int) -> list[int]:
    """The live direct children of ``pid`` (from every thread's list)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        raise ProcessGone(f"pid {pid} is gone") from None
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except FileNotFoundError:
            continue
        found.extend(int(c) for c in text.split())
    return sorted(set(found))
