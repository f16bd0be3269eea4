"""The silver funding table: one row per (market, symbol, funding_time) funding event.

Binance settles perpetual-futures funding at fixed UTC slots whose spacing (the funding
interval) is per symbol and can change mid-history: 8h was the norm, many symbols now fund
every 4h, and a symbol whose rate hits its cap can be moved to 1h (or 2h). So the interval is a
column read from the data, never a constant, and every downstream formula uses it.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from lakehouse_assets.instruments import FUTURES_MARKETS

UTC_MS = pl.Datetime("ms", "UTC")

SILVER_FUNDING_SCHEMA: dict[str, pl.DataType] = {
    "market": pl.String(),
    "symbol": pl.String(),
    # The funding slot (calc_time snapped to the whole hour), the key of the table.
    "funding_time": UTC_MS,
    "funding_interval_hours": pl.Int64(),
    # Per funding interval, as a fraction (0.0001 = 0.01 %); positive = longs pay shorts.
    "funding_rate": pl.Float64(),
    # The mark price at settlement when the source has one (REST does, the monthly archive does not).
    "mark_price": pl.Float64(),
    # 'archive' (monthly data.binance.vision file) or 'rest' (exchange API, until the month is published).
    "source": pl.String(),
    # The raw time Binance recorded (runs a few ms after the slot); kept for audit and as the
    # moment the rate became visible, which is what the no-look-ahead join uses.
    "calc_time": UTC_MS,
}

NULLABLE_FUNDING_COLUMNS: frozenset[str] = frozenset({"mark_price"})
FUNDING_KEY: tuple[str, ...] = ("market", "symbol", "funding_time")
FUNDING_SOURCES: tuple[str, ...] = ("archive", "rest")
# Only futures markets fund; spot instruments in the universe are skipped.
FUNDING_MARKETS: tuple[str, ...] = FUTURES_MARKETS

# Raw events as parsed from one source file, before snapping (times in epoch ms).
RAW_FUNDING_SCHEMA: dict[str, pl.DataType] = {
    "calc_time_ms": pl.Int64(),
    "funding_interval_hours": pl.Int64(),  # null when the source does not say (REST)
    "funding_rate": pl.Float64(),
    "mark_price": pl.Float64(),
}

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
# How far calc_time may sit from its slot and still be that slot's settlement. Binance's archive
# shows +1..+26 ms; a minute is generous for that and still catches a row from another slot.
SNAP_TOLERANCE_MS = 60_000


def empty_funding() -> pl.DataFrame:
    return pl.DataFrame(schema=SILVER_FUNDING_SCHEMA)


def month_of(day: date) -> str:
    """``YYYY-MM``: the unit Binance publishes funding archives in."""
    return f"{day.year:04d}-{day.month:02d}"


def month_bounds(month: str) -> tuple[date, date]:
    """First day of the month and first day of the next one."""
    year, mon = (int(part) for part in month.split("-"))
    start = date(year, mon, 1)
    end = date(year + (mon == 12), mon % 12 + 1, 1)
    return start, end
