"""Line charts drawn as SVG on the server, for the operator console.

No script and no chart library: the page's Content-Security-Policy (script-src 'self',
style-src 'self') holds, and the markup uses presentation classes styled by
static/css/ops.css, never a style attribute. Every text in the SVG is escaped.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 10, 22


@dataclass(frozen=True)
class Series:
    """One line: its legend, its CSS class (its colour) and a value per minute (None: a gap)."""

    label: str
    css: str
    values: Sequence[float | None]


def _nice_top(value: float) -> float:
    """A round upper bound at or above value (1, 2, 5 × 10^n)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def line_chart(
    title: str,
    minutes: Sequence[int],
    series: Sequence[Series],
    *,
    zone: datetime.tzinfo,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    top: float | None = None,
    limit: float | None = None,
) -> str:
    """An SVG line chart of per-minute values; `limit` draws a dashed line (a budget)."""
    count = max(1, len(minutes) - 1)
    highest = max(
        [v for s in series for v in s.values if v is not None] + [limit or 0, 0], default=0
    )
    y_top = top if top is not None else _nice_top(highest)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + plot_w * i / count

    def y(v: float) -> float:
        return TOP + plot_h * (1 - min(v, y_top) / y_top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title, {chr(34): "&quot;"})}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in (0, 0.5, 1):
        ty = y(y_top * tick)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
        )
        parts.append(
            f'<text class="axis" x="{LEFT - 4}" y="{ty + 4:.1f}" text-anchor="end">'
            f"{escape(fmt(y_top * tick))}</text>"
        )
    if minutes:
        for i in (0, len(minutes) // 2, len(minutes) - 1):
            moment = datetime.datetime.fromtimestamp(minutes[i] * 60, zone)
            anchor = "start" if i == 0 else "end" if i == len(minutes) - 1 else "middle"
            parts.append(
                f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
                f"{moment:%H:%M}</text>"
            )
    if limit is not None:
        ly = y(limit)
        parts.append(
            f'<line class="limit" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ly:.1f}" y2="{ly:.1f}"/>'
        )
    for line in series:
        for run in _runs(line.values):
            points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in run)
            parts.append(f'<polyline class="line {escape(line.css)}" points="{points}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """The stretches of values without a gap (a gap: no data that minute)."""
    runs: list[list[tuple[int, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((i, value))
    return [run for run in runs if run]
