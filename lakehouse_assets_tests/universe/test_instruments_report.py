"""What the UI shows for silver/instruments: counts per market/status, delistings, instruments trading per day.

The tables here are SYNTHETIC rows (``periods.py``'s schema, written by the test): real symbol names with
periods chosen so every count below can be checked by hand.
"""

from __future__ import annotations

import base64
from datetime import date, timedelta

import polars as pl

from lakehouse_assets.klines.chart import chart_markdown
from lakehouse_assets.universe import instruments_report as report
from lakehouse_assets.universe.instruments_chart import MAX_POINTS, traded_chart_svg
from lakehouse_assets.universe.instruments_table import SCHEMA


def _table(*rows: tuple[str, str, str, date, date | None]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"market": m, "symbol": s, "status": st, "valid_from": a, "valid_to": b, "source": "archive_listing",
          "delist_date": b if st == "DELISTED" else None} for m, s, st, a, b in rows],
        schema=SCHEMA,
    )  # fmt: skip


TABLE = _table(
    ("um", "BTCUSDT", "TRADING", date(2021, 1, 1), None),
    ("um", "SRMUSDT", "DELISTED", date(2021, 1, 3), date(2021, 1, 5)),  # trades 01-03 and 01-04
    ("um", "SRMUSDT", "TRADING", date(2021, 1, 7), None),  # relisted
    ("um", "LENDUSDT", "DELISTED", date(2020, 12, 1), date(2021, 1, 2)),  # last day 01-01
    ("spot", "HSRBTC", "BREAK", date(2021, 1, 4), date(2021, 1, 4)),  # never expected
    ("spot", "ETHBTC", "TRADING", date(2021, 1, 2), None),
)


def test_instruments_trading_per_day_follow_the_validity_rule() -> None:
    per_day = report.traded_per_day(TABLE, start=date(2021, 1, 1), end=date(2021, 1, 8))
    wide = per_day.pivot(on="market", index="date", values="instruments").sort("date")
    assert wide.columns == ["date", "spot", "um"]
    assert wide.rows() == [
        (date(2021, 1, 1), 0, 2),  # BTCUSDT, LENDUSDT
        (date(2021, 1, 2), 1, 1),  # ETHBTC lists; LENDUSDT's valid_to (exclusive)
        (date(2021, 1, 3), 1, 2),  # SRMUSDT's first period
        (date(2021, 1, 4), 1, 2),  # HSRBTC's empty row counts nowhere
        (date(2021, 1, 5), 1, 1),
        (date(2021, 1, 6), 1, 1),
        (date(2021, 1, 7), 1, 2),  # relisted
        (date(2021, 1, 8), 1, 2),
    ]
    # from the first valid_from by default
    assert report.traded_per_day(TABLE, end=date(2020, 12, 2))["instruments"].to_list() == [0, 1, 0, 1]


def test_counts_delistings_and_monthly_counts() -> None:
    assert report.by_market_status(TABLE).rows() == [
        ("spot", "BREAK", 1, 0, 2),  # market, status, instruments, open, rows
        ("spot", "TRADING", 1, 1, 2),
        ("um", "DELISTED", 1, 0, 4),  # LENDUSDT (SRMUSDT's newest row trades again)
        ("um", "TRADING", 2, 2, 4),
    ]
    assert report.delisted(TABLE).select("symbol", "delist_date").rows() == [("LENDUSDT", date(2021, 1, 2))]
    per_day = report.traded_per_day(TABLE, end=date(2021, 3, 15))
    assert report.monthly_counts(per_day).rows() == [
        (date(2021, 3, 15), 1, 2), (date(2021, 3, 1), 1, 2), (date(2021, 2, 1), 1, 2),
        (date(2021, 1, 1), 0, 2), (date(2020, 12, 1), 0, 1),
    ]  # fmt: skip


def test_the_chart_has_a_step_line_per_market_and_stays_small_over_years() -> None:
    years = [date(2019, 1, 1) + timedelta(days=7 * n) for n in range(300)]
    long_table = pl.concat(
        [TABLE, _table(*((("um", f"S{n}USDT", "DELISTED", d, d + timedelta(days=90))) for n, d in enumerate(years)))]
    )
    per_day = report.traded_per_day(long_table, end=date(2025, 1, 1))  # every synthetic 90-day period over
    svg = traded_chart_svg(per_day, title="instruments trading per day")
    assert svg.count("<path ") == 2 and 'class="spot"' in svg and 'class="um"' in svg
    assert "■ um (2)" in svg and "■ spot (1)" in svg  # the counts on the last day
    assert per_day["date"].n_unique() > 2000 and len(svg) < 12_000  # at most MAX_POINTS steps per market
    assert svg.count("H") <= 2 * MAX_POINTS
    markdown = chart_markdown(svg, "instruments per day")
    assert base64.b64decode(markdown.split("base64,", 1)[1].rstrip(")")).decode() == svg
    assert "no instruments" in traded_chart_svg(report.traded_per_day(TABLE.clear(), end=date(2021, 1, 1)), title="x")
