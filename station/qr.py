"""The pairing QR code in a terminal, in colours of its own.

A QR code drawn in the terminal's default colours is inverted on a dark background,
and most phone scanners then read nothing. So every line sets its own: black modules
on a white ground with a white quiet zone, from the 256-colour palette's fixed cube
(16 is #000000, 231 is #ffffff in every theme, unlike the 16 theme colours). Two rows
of modules share a line (half blocks), so the code stays small.
"""

from __future__ import annotations

import segno

_DARK_ON_LIGHT = "\x1b[38;5;16;48;5;231m"
_RESET = "\x1b[0m"
_CELLS = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}


def terminal_qr(text: str, *, border: int = 4) -> str:
    """``text`` as a QR code: lines of half blocks with forced colours."""
    rows = [
        [bool(m) for m in row] for row in segno.make(text, error="m").matrix_iter(border=border)
    ]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    lines = []
    for top, bottom in zip(rows[::2], rows[1::2], strict=True):
        cells = "".join(_CELLS[(t, b)] for t, b in zip(top, bottom, strict=True))
        lines.append(f"{_DARK_ON_LIGHT}{cells}{_RESET}")
    return "\n".join(lines)
