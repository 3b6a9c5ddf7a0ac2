"""The station's private directories (``wipe.safedir``), refused as the operator's fault."""

from __future__ import annotations

from pathlib import Path

from station.errors import ConfigError
from wipe.safedir import UnsafeDirectory
from wipe.safedir import private_dir as _private_dir


def private_dir(path: Path, *, make_private: bool = True) -> Path:
    """``wipe.safedir.private_dir``; a refusal is a ``ConfigError`` (exit 2)."""
    try:
        return _private_dir(path, make_private=make_private)
    except UnsafeDirectory as exc:
        raise ConfigError(str(exc)) from None
