"""The preflight, on fake /proc and /etc trees for each verdict, and on this machine."""

from __future__ import annotations

from pathlib import Path

from wipe.preflight import OK, WARN, format_preflight, run_preflight


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        target = tmp_path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return tmp_path


def _status(root: Path) -> dict[str, str]:
    return {c.name: c.status for c in run_preflight(root)}


def test_a_hardened_kiosk_passes(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "/proc/swaps": "Filename Type Size Used Priority\n",
            "/proc/self/mounts": "tmpfs /tmp tmpfs rw 0 0\ntmpfs /var/tmp tmpfs rw 0 0\n",
            "/proc/sys/kernel/core_pattern": "core\n",
            "/etc/systemd/journald.conf": "[Journal]\nStorage=volatile\n",
            "/proc/cmdline": "root=/dev/vda ro init_on_free=1 quiet\n",
        },
    )
    assert set(_status(root).values()) == {OK}


def test_each_risk_is_a_warning(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "/proc/swaps": "Filename Type Size Used Priority\n/dev/sda2 partition 1024 0 -2\n",
            "/proc/self/mounts": "/dev/sda1 / ext4 rw 0 0\n",
            "/proc/sys/kernel/core_pattern": "|/usr/lib/systemd/systemd-coredump %P\n",
            "/etc/systemd/journald.conf": "[Journal]\nStorage=persistent\n",
            "/proc/cmdline": "root=/dev/vda ro quiet\n",
        },
    )
    assert set(_status(root).values()) == {WARN}
    text = format_preflight(run_preflight(root))
    assert "/dev/sda2" in text and "/tmp" in text and "systemd-coredump" in text


def test_encrypted_swap_and_auto_journald_without_a_journal_dir(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "/proc/swaps": "Filename Type Size Used Priority\n/dev/dm-1 partition 1024 0 -2\n",
            "/etc/systemd/journald.conf": "[Journal]\n",
        },
    )
    status = _status(root)
    assert status["swap"] == OK and status["journald"] == OK


def test_runs_on_this_machine() -> None:
    checks = run_preflight()
    assert [c.name for c in checks] == ["swap", "tmpfs", "core_pattern", "journald", "init_on_free"]
    assert all(c.detail for c in checks)
