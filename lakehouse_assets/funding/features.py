"""Funding features for bars, by an as-of join that cannot look ahead.

A settlement's rate becomes visible at ``visible_at = max(funding_time, calc_time)``: Binance
computes it at the slot and records it a few ms later, so before that instant nobody could know
it. A bar's features describe the moment the bar closes, so a bar sees every settlement with
``visible_at <= close_time`` and none after. (A 1m bar that opens at 08:00 closes at
08:00:59.999 and sees the 08:00 settlement; the 07:59 bar does not.)

Columns added to each bar:

* ``funding_rate``: the last visible rate (per funding interval, a fraction: 0.0001 = 0.01 %);
* ``funding_interval_hours``, ``last_funding_time``: the interval and slot of that settlement;
* ``funding_rate_annualized = funding_rate * (24 / funding_interval_hours) * 365``, i.e. the rate
  compounded by nothing, simply scaled by the number of settlements per year *at the interval that
  settlement actually had* (x1095 at 8 h, x2190 at 4 h, x8760 at 1 h);
* ``funding_rate_mean_7d``: mean of the per-settlement rates over the 7 days up to the last
  visible settlement (slots in ``(last_funding_time - 7 d, last_funding_time]``), with
  ``funding_events_7d`` the number of settlements averaged; and ``funding_rate_annualized_7d``
  ``= sum of those rates * 365 / 7``: the realised carry of the week, annualized, which stays
  correct when the interval changed inside the week (a plain mean of 4 h and 8 h rates does not);
* ``next_funding_time``: the next slot after the bar's close on the last settlement's interval grid
  (UTC-aligned), i.e. what a trader at the bar's close expects from the known schedule.

Bars before an instrument's first visible settlement get nulls, never a back-filled rate.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from lakehouse_assets.funding.schema import DAY_MS, HOUR_MS, UTC_MS

FUNDING_FEATURE_COLUMNS: dict[str, pl.DataType] = {
    "funding_rate": pl.Float64(),
    "funding_interval_hours": pl.Int64(),
    "last_funding_time": UTC_MS,
    "funding_rate_annualized": pl.Float64(),
    "funding_rate_mean_7d": pl.Float64(),
    "funding_rate_annualized_7d": pl.Float64(),
    "funding_events_7d": pl.Int64(),
    "next_funding_time": UTC_MS,
}
WINDOW_MS = 7 * DAY_MS
# Days of silver funding a day of features needs: the 7-day window, plus the day before in case
# the day's first bars still see the previous day's last settlement.
LOOKBACK_DAYS = 8
BAR_KEY: tuple[str, ...] = ("market", "symbol", "interval", "open_time")
# What the features read of each bar (gold/features' key and close): never a price.
BAR_COLUMNS: list[str] = [*BAR_KEY, "close_time"]


def _window_sums(times_ms: np.ndarray, rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per settlement: the exactly rounded sum and the count of rates in (t - 7 d, t].

    ``math.fsum`` rather than a running rolling sum: a running sum's last bits depend on where the
    data starts, so the same bar would get a different mean in a one-day run than in a backfill.
    """
    lo = np.searchsorted(times_ms, times_ms - WINDOW_MS, side="right")
    sums = np.fromiter((math.fsum(rates[a : i + 1]) for i, a in enumerate(lo)), dtype=np.float64, count=len(rates))
    return sums, (np.arange(len(rates)) + 1 - lo).astype(np.int64)


def _settlement_stats(funding: pl.DataFrame) -> pl.DataFrame:
    """Per settlement: when it became visible, and the trailing-7-day stats as of that settlement."""
    ordered = funding.select(
        "market", "symbol", "funding_time", "calc_time", "funding_interval_hours", "funding_rate"
    ).sort("market", "symbol", "funding_time")
    parts = []
    for _, part in ordered.group_by("market", "symbol", maintain_order=True):
        sums, counts = _window_sums(part["funding_time"].dt.epoch("ms").to_numpy(), part["funding_rate"].to_numpy())
        parts.append(
            part.with_columns(
                __sum_7d=pl.Series(sums),
                funding_events_7d=pl.Series(counts),
            ).with_columns(funding_rate_mean_7d=pl.col("__sum_7d") / pl.col("funding_events_7d"))
        )
    stats = pl.concat(parts) if parts else ordered.with_columns(
        __sum_7d=pl.lit(None, pl.Float64), funding_events_7d=pl.lit(None, pl.Int64), funding_rate_mean_7d=pl.lit(None, pl.Float64)
    )
    return stats.with_columns(visible_at=pl.max_horizontal("funding_time", "calc_time")).sort("visible_at")


def add_funding_features(bars: pl.DataFrame, funding: pl.DataFrame) -> pl.DataFrame:
    """``bars`` (market, symbol, ..., close_time) with the funding columns appended, same row order.

    ``funding`` is silver funding (any superset of the bars' instruments and time span; rows of
    other instruments are ignored). The join is by (market, symbol) and backward in time on
    ``close_time >= visible_at``, so the result at a bar is identical whatever later settlements
    ``funding`` holds.
    """
    if "close_time" not in bars.columns:
        raise ValueError("bars need a close_time column: features are as of the bar's close")
    stats = _settlement_stats(funding)
    indexed = bars.with_row_index("__bar")
    left = indexed.select("__bar", "market", "symbol", pl.col("close_time").cast(UTC_MS).alias("__close")).sort("__close")
    right = stats.select(
        "market",
        "symbol",
        pl.col("visible_at").alias("__close"),
        pl.col("funding_time").alias("last_funding_time"),
        "funding_interval_hours",
        "funding_rate",
        "funding_rate_mean_7d",
        "__sum_7d",
        "funding_events_7d",
    )
    joined = left.join_asof(right, on="__close", by=["market", "symbol"], strategy="backward", check_sortedness=False)
    step = pl.col("funding_interval_hours") * HOUR_MS
    close_ms = pl.col("__close").dt.epoch("ms")
    features = joined.select(
        "__bar",
        pl.col("funding_rate"),
        pl.col("funding_interval_hours"),
        pl.col("last_funding_time"),
        (pl.col("funding_rate") * (24.0 / pl.col("funding_interval_hours")) * 365.0).alias("funding_rate_annualized"),
        pl.col("funding_rate_mean_7d"),
        (pl.col("__sum_7d") * (365.0 / 7.0)).alias("funding_rate_annualized_7d"),
        pl.col("funding_events_7d"),
        ((close_ms // step + 1) * step).cast(UTC_MS).alias("next_funding_time"),
    )
    out = indexed.join(features, on="__bar", how="left").sort("__bar").drop("__bar")
    return out.with_columns(pl.col(c).cast(t) for c, t in FUNDING_FEATURE_COLUMNS.items())


def features_at_bars(bars: pl.DataFrame, funding: pl.DataFrame) -> pl.DataFrame:
    """``add_funding_features``, sorted by the bar key; without any funding every funding column is null."""
    if funding.is_empty():
        out = bars.with_columns(pl.lit(None, t).alias(c) for c, t in FUNDING_FEATURE_COLUMNS.items())
    else:
        out = add_funding_features(bars, funding)
    return out.sort(*BAR_KEY)
