"""Charts drawn on the server as inline SVG: no script, no library, readable without colour.

The Overview page shows jobs finished per minute over the last hour; live.js swaps the
whole ``<main>`` on refresh, so the chart is redrawn with the page rather than updated in
place. Every label is escaped: a series name is text, never markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: a value per bucket, oldest first."""

    name: str
    values: Sequence[int]
    colour: str
    dash: str = "none"
    """An SVG ``stroke-dasharray``: lines told apart without colour too."""


def nice_ceiling(value: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50... at or above ``value`` (at least 1): the top
    of the y axis, so its halves are round numbers too."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return int(step * power)
    return int(10 * power)  # pragma: no cover - the loop always returns


def line_chart(
    series: Sequence[Series],
    x_labels: Sequence[tuple[int, str]],
    *,
    title: str,
    x_title: str,
    y_title: str,
    width: int = 720,
    height: int = 220,
) -> Markup:
    """A line per series over the same buckets, with labelled axes and a legend.

    ``x_labels`` are ``(bucket index, text)`` ticks; the y axis runs from 0 to a round
    number at or above the largest value, ticked at 0, half and top."""
    buckets = max((len(s.values) for s in series), default=0)
    left, right, top, bottom = 48, 12, 12, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = nice_ceiling(max((v for s in series for v in s.values), default=0))

    def x(index: int) -> float:
        return left + (plot_w * index / (buckets - 1) if buckets > 1 else plot_w / 2)

    def y(value: float) -> float:
        return top + plot_h - plot_h * value / peak

    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for value in (0, peak / 2, peak):
        shown = f"{value:g}"
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}" stroke="#e5e7eb"/>'
            f'<text class="y-tick" x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="#6b7280">{shown}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#9ca3af"/>'
        f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" '
        f'y2="{top + plot_h}" stroke="#9ca3af"/>'
    )
    for index, text in x_labels:
        parts.append(
            f'<line x1="{x(index):.1f}" x2="{x(index):.1f}" y1="{top + plot_h}" '
            f'y2="{top + plot_h + 4}" stroke="#9ca3af"/>'
            f'<text class="x-tick" x="{x(index):.1f}" y="{top + plot_h + 16}" '
            f'text-anchor="middle" font-size="11" fill="#6b7280">{escape(text)}</text>'
        )
    parts.append(
        f'<text class="x-title" x="{left + plot_w / 2:.1f}" y="{height - 6}" '
        f'text-anchor="middle" font-size="12" fill="#374151">{escape(x_title)}</text>'
        f'<text class="y-title" x="12" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
        f'font-size="12" fill="#374151" transform="rotate(-90 12 {top + plot_h / 2:.1f})">'
        f"{escape(y_title)}</text>"
    )
    for line in series:
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(line.values))
        parts.append(
            f'<polyline class="series" data-series="{escape(line.name)}" fill="none" '
            f'stroke="{escape(line.colour)}" stroke-dasharray="{escape(line.dash)}" '
            'stroke-width="2" stroke-linejoin="round" '
            f'points="{points}"><title>{escape(line.name)}: {sum(line.values)} in all</title>'
            "</polyline>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
