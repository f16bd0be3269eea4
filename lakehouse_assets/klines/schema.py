"""The silver kline table: one row per (market, symbol, interval, open_time) bar.

Timestamps are normalised to UTC milliseconds because Binance switched spot files to
microseconds in 2025 while futures stayed in ms; a single unit keeps joins and partitions
consistent across markets and years.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

SILVER_KLINES_SCHEMA: dict[str, pl.DataType] = {
    "market": pl.String(),
    "symbol": pl.String(),
    "interval": pl.String(),
    "open_time": pl.Datetime("ms", "UTC"),
    "close_time": pl.Datetime("ms", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "quote_volume": pl.Float64(),
    "trade_count": pl.Int64(),
    "taker_buy_volume": pl.Float64(),
    "taker_buy_quote_volume": pl.Float64(),
    "source": pl.String(),
    # COIN-M only (volume in contracts); null for spot and USD-M.
    "contract_volume": pl.Float64(),
    "taker_buy_contract_volume": pl.Float64(),
}

NULLABLE_COLUMNS: frozenset[str] = frozenset({"contract_volume", "taker_buy_contract_volume"})

# Intervals for which Binance publishes *daily* kline files (3d/1w/1mo are monthly only).
_INTERVALS: dict[str, timedelta] = {
    "1s": timedelta(seconds=1),
    "1m": timedelta(minutes=1),
    "3m": timedelta(minutes=3),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "2h": timedelta(hours=2),
    "4h": timedelta(hours=4),
    "6h": timedelta(hours=6),
    "8h": timedelta(hours=8),
    "12h": timedelta(hours=12),
    "1d": timedelta(days=1),
}

INTERVAL_MS: dict[str, int] = {k: v // timedelta(milliseconds=1) for k, v in _INTERVALS.items()}


def interval_to_timedelta(interval: str) -> timedelta:
    """Bar length of a Binance kline interval (only those with daily archive files)."""
    try:
        return _INTERVALS[interval]
    except KeyError:
        raise ValueError(
            f"unsupported kline interval {interval!r}; expected one of {', '.join(_INTERVALS)}"
        ) from None


def empty_klines() -> pl.DataFrame:
    """A zero-row frame with the silver schema, so empty partitions still carry dtypes."""
    return pl.DataFrame(schema=SILVER_KLINES_SCHEMA)
