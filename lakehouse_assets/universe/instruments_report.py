"""Summaries of ``silver/instruments`` for the Dagster UI: counts, delistings, instruments trading per day.

Small on purpose: the event log stores every materialization's metadata, so each summary is a few
dozen rows at most, and the per-day count becomes a chart (``instruments_chart.py``), not a table.
Pure Polars, no Dagster.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

__all__ = ["by_market_status", "delisted", "latest_rows", "monthly_counts", "traded_per_day"]

_COUNT_SCHEMA = {"date": pl.Date(), "market": pl.String(), "instruments": pl.Int64()}


def by_market_status(table: pl.DataFrame) -> pl.DataFrame:
    """Instruments and rows per market and status (of each instrument's newest row)."""
    newest = latest_rows(table)
    rows = table.group_by("market").agg(rows=pl.len().cast(pl.Int64))
    return (
        newest.group_by("market", "status")
        .agg(instruments=pl.len().cast(pl.Int64), open=pl.col("valid_to").is_null().sum().cast(pl.Int64))
        .join(rows, on="market", how="left")
        .sort("market", "status")
    )


def latest_rows(table: pl.DataFrame) -> pl.DataFrame:
    """Each instrument's newest row (its latest valid_from)."""
    return table.sort("market", "symbol", "valid_from").group_by("market", "symbol", maintain_order=True).last()


def delisted(table: pl.DataFrame) -> pl.DataFrame:
    """Instruments whose newest period has ended, most recent delisting first."""
    ended = latest_rows(table).filter(pl.col("valid_to").is_not_null() & (pl.col("valid_to") > pl.col("valid_from")))
    return ended.select(
        "market", "symbol", "status", "first_archive_day", "last_archive_day", "delist_date", "source"
    ).sort("delist_date", "market", "symbol", descending=[True, False, False], nulls_last=True)


def traded_per_day(table: pl.DataFrame, *, start: date | None = None, end: date) -> pl.DataFrame:
    """How many instruments were expected (trading) on each day of [start, end], per market.

    ``start`` defaults to the first ``valid_from``. An instrument counts on day D iff one of its rows
    has ``valid_from <= D < valid_to`` (null ``valid_to``: open), the rule every reader applies.
    """
    if table.is_empty():
        return pl.DataFrame(schema=_COUNT_SCHEMA)
    first = start or table["valid_from"].min()
    assert isinstance(first, date)
    if first > end:
        return pl.DataFrame(schema=_COUNT_SCHEMA)
    after = end + timedelta(days=1)
    rows = table.filter(pl.col("valid_to").is_null() | (pl.col("valid_to") > pl.col("valid_from")))
    starts = rows.select("market", date=pl.max_horizontal(pl.col("valid_from"), pl.lit(first)), delta=pl.lit(1))
    stops = rows.filter(pl.col("valid_to").is_not_null()).select(
        "market", date=pl.max_horizontal(pl.col("valid_to"), pl.lit(first)), delta=pl.lit(-1)
    )
    events = (
        pl.concat([starts, stops]).filter(pl.col("date") < after).group_by("market", "date").agg(pl.col("delta").sum())
    )
    days = pl.DataFrame({"date": pl.date_range(first, end, "1d", eager=True)})
    markets = table.select("market").unique().sort("market")
    grid = markets.join(days, how="cross")
    return (
        grid.join(events, on=["market", "date"], how="left")
        .with_columns(pl.col("delta").fill_null(0))
        .sort("market", "date")
        .with_columns(instruments=pl.col("delta").cum_sum().over("market").cast(pl.Int64))
        .select("date", "market", "instruments")
        .sort("date", "market")
    )


def monthly_counts(per_day: pl.DataFrame, *, months: int = 36) -> pl.DataFrame:
    """The per-day counts on the first day of each month (and the last day), one column per market: the
    newest ``months`` months, newest first."""
    if per_day.is_empty():
        return pl.DataFrame(schema={"date": pl.Date()})
    last = per_day["date"].max()
    picked = per_day.filter((pl.col("date").dt.day() == 1) | (pl.col("date") == last))
    wide = picked.pivot(on="market", index="date", values="instruments").sort("date", descending=True)
    return wide.head(months)
