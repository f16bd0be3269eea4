"""The per-symbol SVG chart attached to gold/features materializations."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import polars as pl

from lakehouse_assets.klines.chart import MAX_POINTS, chart_markdown, chart_svg
from lakehouse_assets.klines.indicators import compute_features
from lakehouse_assets_tests.samples import hourly, minutes_spot

SVG = "{http://www.w3.org/2000/svg}"


def elements(svg: str, cls: str) -> list[ET.Element]:
    return [e for e in ET.fromstring(svg).iter() if e.get("class") == cls]


def test_chart_of_a_real_month_with_two_maintenance_gaps() -> None:
    features = compute_features(hourly("2020-02"))
    svg = chart_svg(
        features,
        title="spot:BTCUSDT 1h 2020-02",
        start=datetime(2020, 2, 1, tzinfo=UTC),
        end=datetime(2020, 3, 1, tzinfo=UTC),
        interval_ms=3_600_000,
    )
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag == f"{SVG}svg" and root.get("width") == "760"
    texts = "".join(root.itertext())
    assert "spot:BTCUSDT 1h 2020-02" in texts and "RSI 14" in texts and "gap (2)" in texts
    # each hole is shaded in both panels, and lines break there: 3 segments of close and RSI
    assert len(elements(svg, "gap")) == 4
    assert len(elements(svg, "close")) == 3 and len(elements(svg, "rsi")) == 3
    assert len(elements(svg, "band")) == 3  # band fill restarts with the indicators after each hole
    # price axis spans the real range of the month
    assert "10,508" in texts or "10,50" in texts


def test_one_day_of_minutes_is_bucketed_with_a_spike_envelope() -> None:
    features = compute_features(minutes_spot()).filter(pl.col("open_time") >= datetime(2020, 1, 3, tzinfo=UTC))
    svg = chart_svg(
        features,
        title="spot:BTCUSDT 1m 2020-01-03",
        start=datetime(2020, 1, 3, tzinfo=UTC),
        end=datetime(2020, 1, 4, tzinfo=UTC),
        interval_ms=60_000,
    )
    ET.fromstring(svg)
    assert "1440 bars, 3 min buckets" in svg
    assert len(elements(svg, "gap")) == 0 and len(elements(svg, "close")) == 1
    assert len(elements(svg, "envelope")) == 1
    points = re.findall(r"[Ml]", elements(svg, "close")[0].get("d"))
    assert len(points) == 1440 // 3 <= MAX_POINTS
    assert len(svg) < 40_000  # small enough for every materialization event


def test_markdown_embeds_the_svg_as_a_data_uri() -> None:
    svg = chart_svg(
        compute_features(hourly("2020-02")).head(50),
        title="t",
        start=datetime(2020, 2, 1, tzinfo=UTC),
        end=datetime(2020, 2, 3, tzinfo=UTC),
        interval_ms=3_600_000,
    )
    md = chart_markdown(svg, "spot:BTCUSDT")
    match = re.fullmatch(r"!\[spot:BTCUSDT\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", md)
    assert match and base64.b64decode(match.group(1)).decode() == svg
