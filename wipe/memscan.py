"""The memory scan: how many times a string sits in the readable memory of a process
tree, in the encodings a session's data could take (UTF-8, UTF-16-LE, hex, base64).

Reads ``/proc/PID/maps`` and ``/proc/PID/mem`` (root, or the same user with ptrace
allowed). A worker marks itself not dumpable, so scanning it needs root.
"""

from __future__ import annotations

import base64
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from wipe.errors import WipeError

CHUNK = 1 << 20


def encodings(text: str) -> dict[str, bytes]:
    raw = text.encode("utf-8")
    return {
        "utf-8": raw,
        "utf-16-le": text.encode("utf-16-le"),
        "hex": raw.hex().encode(),
        "base64": base64.b64encode(raw).rstrip(b"=")[: max(4, len(raw) * 4 // 3 - 2)],
    }


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


class ProcessGone(WipeError):
    """The process exited between the listing of the tree and the reading of it."""


@dataclass
class ScanResult:
    counts: dict[int, dict[str, int]] = field(default_factory=dict)  # pid -> encoding -> hits
    unreadable: list[int] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)  # exited between listing and reading

    def total(self, pid: int | None = None) -> int:
        if pid is not None:
            return sum(self.counts.get(pid, {}).values())
        return sum(sum(c.values()) for c in self.counts.values())


def scan_pid(pid: int, needles: dict[str, bytes]) -> dict[str, int]:
    counts = dict.fromkeys(needles, 0)
    longest = max(len(n) for n in needles.values())
    try:
        maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ESRCH):
            raise ProcessGone(f"process {pid} exited before it was read") from None
        raise WipeError(f"cannot read the memory of {pid}: {exc.strerror}") from None
    try:
        for line in maps:
            fields = line.split()
            if len(fields) < 2 or not fields[1].startswith("r"):
                continue
            if len(fields) >= 6 and fields[5] in ("[vvar]", "[vsyscall]"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            tail = b""
            offset = start
            while offset < end:
                size = min(CHUNK, end - offset)
                try:
                    chunk = os.pread(mem, size, offset)
                except OSError:
                    break
                if not chunk:
                    break
                window = tail + chunk
                for name, needle in needles.items():
                    # Count matches that end inside this chunk only (no double count).
                    pos = window.find(needle)
                    while pos != -1:
                        if pos + len(needle) > len(tail):
                            counts[name] += 1
                        pos = window.find(needle, pos + 1)
                tail = window[-(longest - 1) :] if longest > 1 else b""
                offset += len(chunk)
    finally:
        os.close(mem)
    return counts


def scan_tree(root: int, text: str) -> ScanResult:
    needles = encodings(text)
    result = ScanResult()
    for pid in process_tree(root):
        try:
            result.counts[pid] = scan_pid(pid, needles)
        except ProcessGone:
            # Gone, so it holds nothing; not "unreadable", which would mean unchecked.
            result.gone.append(pid)
        except WipeError:
            result.unreadable.append(pid)
    return result
