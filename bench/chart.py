"""The scale curve as a small SVG, written by hand (no plotting library needed): one
panel per figure, phones on the x axis, each point labelled with its value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

# (key in a scale point, panel title, unit)
PANELS = (
    ("delivery_p99_ms", "delivery latency p99", "ms"),
    ("recovery_p99_ms", "recovery after a reset, p99", "ms"),
    ("cpu_s_per_1k", "station CPU per 1,000 commands", "s"),
    ("station_pss_sum_mb", "station memory (PSS, all processes)", "MB"),
)
WIDTH, HEIGHT = 320, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 36, 34, 34


def _panel(points: Sequence[dict[str, Any]], key: str, title: str, unit: str) -> list[str]:
    xs = [int(p["phones"]) for p in points]
    ys = [float(p[key]) for p in points]
    top = max(ys) * 1.3 or 1.0  # room above the highest point for its label
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (len(xs) - 1) if len(xs) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    out = [
        f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-weight="bold">'
        f"{escape(title)} ({unit})</text>",
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}"'
        ' stroke="#444"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#444"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end">{_number(top)}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 4}" text-anchor="middle">phones</text>',
    ]
    path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(ys))
    out.append(f'<polyline points="{path}" fill="none" stroke="#1565c0" stroke-width="2"/>')
    for i, (n, v) in enumerate(zip(xs, ys, strict=True)):
        out += [
            f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.5" fill="#1565c0"/>',
            f'<text x="{x(i):.1f}" y="{y(v) - 8:.1f}" text-anchor="middle">{_number(v)}</text>',
            f'<text x="{x(i):.1f}" y="{TOP + plot_h + 14}" text-anchor="middle">{n}</text>',
        ]
    return out


def _number(value: float) -> str:
    """Three significant digits, without an exponent."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def scale_svg(points: Sequence[dict[str, Any]], caption: str) -> str:
    """Four panels in a 2 x 2 grid, and a caption line under them."""
    cols = 2
    rows = (len(PANELS) + cols - 1) // cols
    total_w, total_h = WIDTH * cols, HEIGHT * rows + 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}"'
        f' viewBox="0 0 {total_w} {total_h}" font-family="sans-serif" font-size="11">',
        f'<rect width="{total_w}" height="{total_h}" fill="#fff"/>',
    ]
    for index, (key, title, unit) in enumerate(PANELS):
        dx, dy = WIDTH * (index % cols), HEIGHT * (index // cols)
        parts.append(f'<g transform="translate({dx},{dy})">')
        parts += _panel(points, key, title, unit)
        parts.append("</g>")
    parts.append(
        f'<text x="8" y="{total_h - 8}" fill="#555">{escape(caption)}</text>',
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
