"""A small SVG bar chart of one instrument's funding settlements, for the Dagster UI.

One bar per settlement (up = longs paid, down = shorts paid), on a time axis covering the run's
days, so a missing settlement is a visible hole and an interval change a visible change of bar
density; missing slots (from ``funding_transforms.slot_report``) are marked with red ticks under
the axis. Embedded as a ``data:`` image, like the gold feature charts.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from xml.sax.saxutils import escape

import polars as pl

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 70, 12, 30, 186
_UP, _DOWN, _MISSING, _AXIS = "#059669", "#dc2626", "#dc2626", "#6b7280"


def _ms(moment: datetime) -> int:
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def funding_svg(rows: pl.DataFrame, *, title: str, start: datetime, end: datetime, missing_ms: list[int] | None = None) -> str:
    """``rows``: silver funding rows of one instrument (funding_time, funding_rate, funding_interval_hours)."""
    lo_ms, hi_ms = _ms(start), _ms(end)
    span = max(1, hi_ms - lo_ms)
    times = rows["funding_time"].dt.epoch("ms").to_list()
    rates = rows["funding_rate"].to_list()
    peak = max((abs(r) for r in rates), default=0.0) or 1e-6
    zero_y = (TOP + BOTTOM) / 2
    scale = (BOTTOM - TOP) / 2 / peak
    plot_w = WIDTH - LEFT - RIGHT
    bar_w = max(1.0, min(8.0, plot_w / max(1, len(times)) * 0.7))

    def x(ms: int) -> float:
        return LEFT + (ms - lo_ms) / span * plot_w

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{zero_y:.1f}" x2="{WIDTH - RIGHT}" y2="{zero_y:.1f}" stroke="{_AXIS}" stroke-width="0.6"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{peak * 100:+.4f}%</text>',
        f'<text x="{LEFT - 6}" y="{zero_y + 4:.1f}" text-anchor="end">0</text>',
        f'<text x="{LEFT - 6}" y="{BOTTOM + 4}" text-anchor="end">{-peak * 100:+.4f}%</text>',
    ]
    for ms, rate in zip(times, rates, strict=True):
        height = abs(rate) * scale
        y = zero_y - height if rate >= 0 else zero_y
        parts.append(
            f'<rect x="{x(ms) - bar_w / 2:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(height, 0.5):.1f}" '
            f'fill="{_UP if rate >= 0 else _DOWN}"/>'
        )
    for ms in missing_ms or []:
        parts.append(f'<line x1="{x(ms):.1f}" y1="{BOTTOM + 4}" x2="{x(ms):.1f}" y2="{BOTTOM + 12}" stroke="{_MISSING}" stroke-width="1.5"/>')
    intervals = sorted(set(rows["funding_interval_hours"].drop_nulls().to_list()))
    legend = (
        f"{len(times)} settlements, interval {'/'.join(f'{h}h' for h in intervals) or '?'}"
        + (f", {len(missing_ms)} missing slot(s) (red ticks)" if missing_ms else "")
    )
    parts += [
        f'<text x="{LEFT}" y="{HEIGHT - 8}" fill="{_AXIS}">{escape(start.strftime("%Y-%m-%d"))}</text>',
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end" fill="{_AXIS}">{escape(end.strftime("%Y-%m-%d"))} (excl.)</text>',
        f'<text x="{WIDTH / 2:.0f}" y="{HEIGHT - 8}" text-anchor="middle" fill="{_AXIS}">{escape(legend)}</text>',
        "</svg>",
    ]
    return "".join(parts)


def svg_markdown(svg: str, alt: str) -> str:
    """Markdown the Dagster UI renders as an image (its sanitizer allows ``data:`` image sources)."""
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode('ascii')})"
