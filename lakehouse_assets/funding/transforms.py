"""Pure Polars steps from raw funding events to silver rows, and the expected-slot accounting.

* ``snap_events``: ``calc_time`` runs a few ms after the settlement (49 of 90 rows in BTCUSDT
  2026-04 are +1..+8 ms late), so the slot is ``calc_time`` rounded to the whole hour; the raw time
  is kept. Rounding (not flooring) also places a settlement recorded a few ms *early* correctly, and
  a row far from any slot is left for the grid check to reject (it is not forced onto the grid).
* ``fill_intervals``: REST rows do not state their interval, so it is read from their spacing: the
  smaller of the gaps to the previous and the next settlement among Binance's intervals (1, 2, 4,
  8 h). Taking the smaller one means a single missing settlement is still seen as a missing slot
  instead of silently doubling the interval; the price is that the one row at which a symbol moves
  to a shorter interval is labelled with the new interval. A row with no usable neighbour takes
  the interval Binance's fundingInfo states.
* ``slot_report``: which slots each instrument-day should have had, given the interval each row
  declares (so a mid-history interval change is followed, not flagged), and which are missing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl

from lakehouse_assets.funding.schema import (
    DAY_MS,
    HOUR_MS,
    SILVER_FUNDING_SCHEMA,
    UTC_MS,
    empty_funding,
)
from lakehouse_assets.instruments import Instrument

# The funding intervals Binance uses; only these are inferred from spacing.
INFERABLE_INTERVAL_HOURS: tuple[int, ...] = (1, 2, 4, 8)


def day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


def snap_events(raw: pl.DataFrame, *, instrument: Instrument, source: str) -> pl.DataFrame:
    """Raw events (RAW_FUNDING_SCHEMA) -> silver rows, funding_time = calc_time rounded to the hour."""
    slot = (pl.col("calc_time_ms") + HOUR_MS // 2) // HOUR_MS * HOUR_MS
    return raw.select(
        pl.lit(instrument.market, pl.String).alias("market"),
        pl.lit(instrument.symbol, pl.String).alias("symbol"),
        slot.cast(UTC_MS).alias("funding_time"),
        pl.col("funding_interval_hours").cast(pl.Int64),
        pl.col("funding_rate").cast(pl.Float64),
        pl.col("mark_price").cast(pl.Float64),
        pl.lit(source, pl.String).alias("source"),
        pl.col("calc_time_ms").cast(UTC_MS).alias("calc_time"),
    ).sort("funding_time", "calc_time")


def fill_intervals(frame: pl.DataFrame, fallback_hours: int | None) -> pl.DataFrame:
    """Set a missing ``funding_interval_hours`` from the spacing of neighbouring settlements.

    ``frame`` holds one instrument's rows sorted by funding_time, including context rows before
    the days of interest (the REST fetch starts 8 h early for exactly this).
    """
    if frame.is_empty() or frame["funding_interval_hours"].null_count() == 0:
        return frame
    ms = pl.col("funding_time").dt.epoch("ms")
    gap_prev = (ms - ms.shift(1)).over("market", "symbol")
    gap_next = (ms.shift(-1) - ms).over("market", "symbol")

    def usable(gap_ms: pl.Expr) -> pl.Expr:
        # Slots are whole hours, so the gap is too; only Binance's own intervals are accepted.
        return pl.when((gap_ms // HOUR_MS).is_in(list(INFERABLE_INTERVAL_HOURS))).then(gap_ms // HOUR_MS)

    inferred = pl.min_horizontal(usable(gap_prev), usable(gap_next))
    return frame.with_columns(
        pl.col("funding_interval_hours").fill_null(pl.coalesce(inferred, pl.lit(fallback_hours, pl.Int64)))
    )


def within_days(frame: pl.DataFrame, days: list[date]) -> pl.DataFrame:
    """Rows whose funding slot falls on one of ``days`` (UTC)."""
    return frame.filter(pl.col("funding_time").dt.date().is_in(days))


def combine(frames: list[pl.DataFrame]) -> pl.DataFrame:
    if not frames:
        return empty_funding()
    return pl.concat([f.select(list(SILVER_FUNDING_SCHEMA)) for f in frames], how="vertical").sort(
        "market", "symbol", "funding_time", "calc_time"
    )


def _grid_points(after_ms: int, before_ms: int, step_ms: int) -> list[int]:
    """Multiples of ``step_ms`` strictly between the two times."""
    if step_ms <= 0:
        return []
    first = (after_ms // step_ms + 1) * step_ms
    return list(range(first, before_ms, step_ms)) if first < before_ms else []


def _missing_ms(times: list[int], intervals: list[int | None], window_start: int, window_end: int) -> list[int]:
    missing: list[int] = []
    if not times:
        return missing
    previous = [window_start - 1, *times[:-1]]
    for lo, t, hours in zip(previous, times, intervals, strict=True):
        if hours:
            # Slots of this row's interval since the previous settlement (or the window start).
            missing += _grid_points(lo, t, hours * HOUR_MS)
    if intervals[-1]:
        missing += _grid_points(times[-1], window_end, intervals[-1] * HOUR_MS)
    return missing


def missing_slot_times(frame: pl.DataFrame, days: list[date], instrument: Instrument) -> list[int]:
    """Epoch-ms slots ``slot_report`` counts as missing for one instrument (e.g. to mark them on a chart)."""
    if not days:
        return []
    days = sorted(days)
    rows = frame.filter((pl.col("market") == instrument.market) & (pl.col("symbol") == instrument.symbol)).sort("funding_time")
    return _missing_ms(
        rows["funding_time"].dt.epoch("ms").to_list(),
        rows["funding_interval_hours"].to_list(),
        day_start_ms(days[0]),
        day_start_ms(days[-1]) + DAY_MS,
    )


SLOT_REPORT_SCHEMA: dict[str, pl.DataType] = {
    "market": pl.String(),
    "symbol": pl.String(),
    "date": pl.Date(),
    "rows": pl.Int64(),
    "expected": pl.Int64(),
    "missing": pl.Int64(),
    "interval_hours": pl.String(),
    "missing_slots": pl.String(),
}


def slot_report(frame: pl.DataFrame, days: list[date], instruments: list[Instrument]) -> pl.DataFrame:
    """One row per (instrument, day): settlements present, expected, and the missing slots (HH:MM).

    The slots before a settlement are those of *its* interval since the previous settlement; the
    run window's start and end are closed with the first and last row's interval. An instrument
    with no settlement in the whole window cannot be placed on any grid: its days report
    ``expected = null`` and "no funding events".
    """
    days = sorted(days)
    if not days:
        return pl.DataFrame(schema=SLOT_REPORT_SCHEMA)
    window_start, window_end = day_start_ms(days[0]), day_start_ms(days[-1]) + DAY_MS
    out: list[dict[str, object]] = []
    for inst in instruments:
        rows = frame.filter((pl.col("market") == inst.market) & (pl.col("symbol") == inst.symbol)).sort("funding_time")
        times = rows["funding_time"].dt.epoch("ms").to_list()
        missing = _missing_ms(times, rows["funding_interval_hours"].to_list(), window_start, window_end)
        missing_by_day: dict[date, list[int]] = {}
        for ms in missing:
            missing_by_day.setdefault(datetime.fromtimestamp(ms / 1000, tz=UTC).date(), []).append(ms)
        rows_by_day = {
            d: n for d, n in rows.group_by(pl.col("funding_time").dt.date().alias("d")).len().iter_rows()
        }
        interval_by_day = {
            d: ",".join(str(h) for h in sorted(set(hs)) if h is not None)
            for d, hs in rows.group_by(pl.col("funding_time").dt.date().alias("d"))
            .agg(pl.col("funding_interval_hours"))
            .iter_rows()
        }
        for day in days:
            present = rows_by_day.get(day, 0)
            gaps = sorted(missing_by_day.get(day, []))
            if not times:
                out.append(
                    dict(market=inst.market, symbol=inst.symbol, date=day, rows=0, expected=None, missing=None,
                         interval_hours="", missing_slots="no funding events in the run window")
                )
                continue
            out.append(
                dict(
                    market=inst.market,
                    symbol=inst.symbol,
                    date=day,
                    rows=present,
                    expected=present + len(gaps),
                    missing=len(gaps),
                    interval_hours=interval_by_day.get(day, ""),
                    missing_slots=", ".join(
                        datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M") for ms in gaps
                    ),
                )
            )
    return pl.DataFrame(out, schema=SLOT_REPORT_SCHEMA)
