"""A small SVG chart of how many instruments traded on each day, one line per market, for the Dagster UI.

Hand-written SVG for the reasons of ``klines/chart.py`` (a few KB inside the metadata, no plotting
dependency); it travels as a Markdown ``data:`` image (``klines.chart.chart_markdown``). The series is
thinned to at most :data:`MAX_POINTS` points per market (the count at the end of each bucket, drawn
as steps), so years of days cost the event log the same few kilobytes as a month.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

import polars as pl

__all__ = ["MAX_POINTS", "traded_chart_svg"]

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 34, 226
MAX_POINTS = 240
COLOURS = {"spot": "#1f2937", "um": "#2563eb", "cm": "#d97706"}


def traded_chart_svg(per_day: pl.DataFrame, *, title: str) -> str:
    """SVG of ``per_day`` (date, market, instruments; ``instruments_report.traded_per_day``)."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'font-family="Helvetica,Arial,sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{BOTTOM - TOP}" fill="none" stroke="#d1d5db"/>',
    ]
    if per_day.is_empty():
        parts.append(f'<text x="{LEFT + 8}" y="{TOP + 20}">no instruments</text></svg>')
        return "".join(parts)
    days = per_day["date"].unique().sort()
    first, last = days[0], days[-1]
    span = max(1, (last - first).days)
    bucket = max(1, math.ceil((span + 1) / MAX_POINTS))
    top = max(1, int(per_day["instruments"].max() or 0))

    def x(day_index: int) -> float:
        return LEFT + day_index / span * (WIDTH - LEFT - RIGHT)

    def y(count: int) -> float:
        return BOTTOM - count / top * (BOTTOM - TOP)

    legend = []
    for market in per_day["market"].unique().sort().to_list():
        series = (
            per_day.filter(pl.col("market") == market)
            .with_columns(__i=(pl.col("date") - pl.lit(first)).dt.total_days())
            .with_columns(__b=pl.col("__i") // bucket)
            .group_by("__b", maintain_order=True)
            .agg(pl.col("__i").last(), pl.col("instruments").last())
            .sort("__b")
        )
        points = list(zip(series["__i"].to_list(), series["instruments"].to_list()))
        path = f"M{x(points[0][0]):.1f} {y(points[0][1]):.1f}"
        for (_, previous), (index, count) in zip(points, points[1:]):
            path += f"H{x(index):.1f}" + (f"V{y(count):.1f}" if count != previous else "")
        colour = COLOURS.get(market, "#6b7280")
        parts.append(f'<path class="{escape(market)}" d="{path}" fill="none" stroke="{colour}" stroke-width="1.4"/>')
        legend.append(f'<tspan fill="{colour}">■ {escape(market)} ({points[-1][1]})</tspan>')
    for value in (top, top // 2, 0):
        parts.append(f'<text x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end">{value}</text>')
    for k in range(5):
        day = first + (last - first) * k / 4
        anchor = "start" if k == 0 else "end" if k == 4 else "middle"
        parts.append(
            f'<text x="{LEFT + k / 4 * (WIDTH - LEFT - RIGHT):.1f}" y="{BOTTOM + 16}" text-anchor="{anchor}">{day:%Y-%m-%d}</text>'
        )
    parts.append(f'<text x="{WIDTH - RIGHT}" y="28" text-anchor="end">{"  ".join(legend)}</text>')
    parts.append("</svg>")
    return "".join(parts)
