"""What every ``station`` command shares: the control socket option, durations, the
typed control requests, and failing (a ``ClickException`` with its exit status)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from station.config import StationConfig, default_control_path
from wire import WireError, jsonlines
from wire.control import STATION_REQUESTS, Failure

DEFAULTS = StationConfig()  # the one place for every default of `station start`
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


class Fail(click.ClickException):
    """The command cannot do what was asked: one line on stderr, and its exit status
    (1: it failed; 2: the operator asked for something impossible)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance

    def show(self, file: Any = None) -> None:
        click.echo(f"station: {self.format_message()}", err=True)


def control_option(command: F) -> F:
    """``--control PATH``, resolved to the default socket when not given."""

    @click.option(
        "--control",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Control socket (default: $XDG_RUNTIME_DIR/fieldstation.sock).",
    )
    @functools.wraps(command)
    def wrapper(*args: Any, control: Path | None, **kwargs: Any) -> Any:
        return command(*args, control=control or default_control_path(), **kwargs)

    return wrapper  # type: ignore[return-value]


class Duration(click.ParamType):  # type: ignore[type-arg]
    """Seconds, written 90, 90s, 500ms, 5m or 1h."""

    name = "duration"
    _UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip().lower()
        unit = next((u for u in ("ms", "s", "m", "h") if text.endswith(u)), "")
        number = text[: len(text) - len(unit)] if unit else text
        try:
            seconds = float(number) * self._UNITS.get(unit, 1.0)
        except ValueError:
            self.fail(f"{value!r} is not a duration (like 30s, 5m, 1h)", param, ctx)
        if not seconds > 0 or seconds != seconds or seconds == float("inf"):
            self.fail(f"{value!r} is not a positive duration", param, ctx)
        return seconds


DURATION = Duration()


def ask(path: Path, request: object, expected: type[R]) -> R:
    """The supervisor's typed answer; ``Fail`` saying why there is none."""
    try:
        reply = jsonlines.ask(path, request, STATION_REQUESTS, expected)
    except jsonlines.Unreachable as exc:
        if not path.exists():
            raise Fail(f"no station is running (no control socket at {path})") from None
        raise Fail(f"the station does not answer: {exc}") from None
    except WireError as exc:
        raise Fail(f"the station sent a malformed reply: {exc}") from None
    if isinstance(reply, Failure):
        raise Fail(reply.error)
    return reply


def undelivered_note(seqs: list[int]) -> str:
    if not seqs:
        return "; every command reached the phone"
    shown = ", ".join(str(q) for q in seqs[:20]) + (", ..." if len(seqs) > 20 else "")
    return f"; {len(seqs)} command(s) were never delivered (seq {shown})"


__all__ = ["DEFAULTS", "DURATION", "Fail", "ask", "control_option", "undelivered_note"]
