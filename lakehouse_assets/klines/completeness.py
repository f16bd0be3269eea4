"""How much of each requested day is actually in the lake, and where the holes are.

Binance archives legitimately miss bars (exchange maintenance) and occasionally ship
truncated files, so gaps are measured and reported, never forward-filled. Naive datetimes
are interpreted as UTC, like everything in the archive.

With the point-in-time universe (``universe/lifecycle.py``), a day an instrument did not trade is
not incomplete: its row says ``pre_listing`` or ``delisted`` and expects no bar. On the first and
last day of a trading period, the bars before the first (after the last) bar present are not
missing either: they are listed in ``not_trading`` with their reason (``lifecycle.edge_reason``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import polars as pl

from lakehouse_assets.instruments import Instrument, instrument_frame
from lakehouse_assets.klines.schema import interval_to_timedelta
from lakehouse_assets.universe.lifecycle import EXPECTED, DailyUniverse, edge_reason

MAX_LISTED_RANGES = 20

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

COMPLETENESS_SCHEMA: dict[str, pl.DataType] = {
    "market": pl.String(),
    "symbol": pl.String(),
    "date": pl.Date(),
    "rows": pl.Int64(),
    "expected": pl.Int64(),
    "completeness": pl.Float64(),
    "missing_minutes": pl.Int64(),
    "missing_ranges": pl.String(),
    "status": pl.String(),  # expected | pre_listing | delisted (universe/lifecycle.py)
    "not_trading": pl.String(),  # bars of a listing/delisting day outside trading, with the reason
}


def missing_ranges(
    open_times: pl.Series, start: datetime, end: datetime, step: timedelta
) -> list[tuple[datetime, datetime]]:
    """Holes in the bar grid ``start, start+step, ... < end`` as inclusive (first, last) bar opens.

    Off-grid and out-of-window timestamps do not fill any slot. Results carry ``start``'s
    awareness: UTC-aware if ``start`` is aware, naive (UTC) otherwise.
    """
    step_ms = step // _MS
    if step_ms <= 0 or step % _MS:
        raise ValueError(f"step must be a positive whole number of milliseconds, got {step}")
    if not isinstance(open_times.dtype, pl.Datetime):
        raise TypeError(f"open_times must be a Datetime series, got {open_times.dtype}")
    start_ms, end_ms = _epoch_ms(start), _epoch_ms(end)
    if end_ms <= start_ms:
        return []
    slots = -(-(end_ms - start_ms) // step_ms)

    offsets = open_times.drop_nulls().dt.epoch("ms") - start_ms
    present = (
        (
            offsets.filter(
                (offsets >= 0) & (offsets < end_ms - start_ms) & (offsets % step_ms == 0)
            )
            // step_ms
        )
        .unique()
        .sort()
    )

    # Slots -1 and `slots` act as sentinels so holes at both edges fall out of the same diff.
    bounds = pl.concat(
        [pl.Series([-1], dtype=pl.Int64), present.cast(pl.Int64), pl.Series([slots])]
    )
    gaps = pl.DataFrame({"prev": bounds[:-1], "next": bounds[1:]}).filter(
        pl.col("next") - pl.col("prev") > 1
    )
    base = start.astimezone(UTC) if start.tzinfo is not None else start
    return [(base + (prev + 1) * step, base + (nxt - 1) * step) for prev, nxt in gaps.iter_rows()]


def completeness_report(
    frame: pl.DataFrame,
    *,
    days: list[date],
    instruments: list[Instrument],
    interval: str = "1m",
    lifecycle: DailyUniverse | None = None,
) -> pl.DataFrame:
    """One row per requested (instrument, day), including days with no rows at all.

    ``rows`` counts rows as stored; ``completeness`` and ``missing_minutes`` count distinct
    on-grid bars, so duplicates or off-grid rows cannot mask a hole. ``missing_minutes`` is the
    number of missing bars (minutes for the default 1m interval). ``lifecycle``: which days each
    instrument traded (None: every day, as before the instruments table).
    """
    step = interval_to_timedelta(interval)
    step_ms = step // _MS
    expected = 86_400_000 // step_ms
    clock = "%H:%M:%S" if step < timedelta(minutes=1) else "%H:%M"
    wanted_days = list(dict.fromkeys(days))
    wanted_instruments = list(dict.fromkeys(instruments))

    scoped = _scoped(frame, interval, wanted_days, wanted_instruments)
    counts = _day_counts(scoped, step_ms)
    # Only a day with fewer distinct on-grid bars than the grid has holes to locate; the others (nearly
    # every day of a backfill) are one dict lookup each, so a universe-year costs no Polars call per day.
    holed = {key for key, (_, bars) in counts.items() if bars < expected}
    by_key = _series_by_key(scoped, holed)
    empty = pl.Series("open_time", [], dtype=pl.Datetime("ms", "UTC"))
    records: list[tuple[object, ...]] = []
    for instrument in wanted_instruments:
        market, symbol = instrument.market, instrument.symbol
        for day in wanted_days:
            key = (market, symbol, day)
            rows, bars = counts.get(key, (0, 0))
            status = EXPECTED if lifecycle is None else lifecycle.status_of(instrument, day)
            if status != EXPECTED:
                records.append((market, symbol, day, rows, 0, 1.0, 0, "", status, ""))
                continue
            if bars >= expected:
                records.append((market, symbol, day, rows, expected, 1.0, 0, "", status, ""))
                continue
            open_times = by_key.get(key, empty)
            day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            day_end = day_start + timedelta(days=1)
            holes = missing_ranges(open_times, day_start, day_end, step)
            edges = (False, False) if lifecycle is None else lifecycle.period_edges(instrument, day)
            off_market: list[str] = []
            off_bars = 0
            kept: list[tuple[datetime, datetime]] = []
            for first, last in holes:
                reason = edge_reason(*edges, first, last + step, day_start, day_end)
                if reason is None:
                    kept.append((first, last))
                    continue
                size = (last - first) // step + 1
                off_bars += size
                off_market.append(f"{_describe([(first, last)], [size], clock)} {reason}")
            holes = kept
            sizes = [(last - first) // step + 1 for first, last in holes]
            missing = sum(sizes)
            day_expected = expected - off_bars
            records.append(
                (
                    market,
                    symbol,
                    day,
                    rows,
                    day_expected,
                    (day_expected - missing) / day_expected if day_expected else 1.0,
                    missing,
                    _describe(holes, sizes, clock),
                    status,
                    ", ".join(off_market),
                )
            )
    return pl.DataFrame(records, schema=COMPLETENESS_SCHEMA, orient="row")


def _scoped(
    frame: pl.DataFrame,
    interval: str,
    days: Iterable[date],
    instruments: Iterable[Instrument],
) -> pl.DataFrame:
    """(market, symbol, open_time in UTC, date) of the requested instruments and days."""
    schema = {"market": pl.String(), "symbol": pl.String(), "open_time": pl.Datetime("ms", "UTC"), "date": pl.Date()}
    if frame.is_empty():
        return pl.DataFrame(schema=schema)
    open_time = pl.col("open_time")
    if getattr(frame.schema["open_time"], "time_zone", None) is not None:
        open_time = open_time.dt.convert_time_zone("UTC")
    keys = instrument_frame(instruments)
    scoped = frame.lazy()
    if "interval" in frame.columns:
        scoped = scoped.filter(pl.col("interval") == interval)
    return (
        scoped.select("market", "symbol", open_time.alias("open_time"))
        .with_columns(date=pl.col("open_time").dt.date())
        .filter(pl.col("date").is_in(list(days)))
        .join(keys.lazy(), on=["market", "symbol"], how="semi")
        .collect()
    )


def _day_counts(scoped: pl.DataFrame, step_ms: int) -> dict[tuple[str, str, date], tuple[int, int]]:
    """Per (market, symbol, day): rows as stored, and distinct on-grid bars (what completeness counts)."""
    if scoped.is_empty():
        return {}
    epoch = pl.col("open_time").dt.epoch("ms")
    counted = scoped.group_by("market", "symbol", "date").agg(
        rows=pl.len(),
        bars=epoch.filter(epoch % step_ms == 0).n_unique(),
    )
    return {(m, s, d): (rows, bars) for m, s, d, rows, bars in counted.iter_rows()}


def _series_by_key(scoped: pl.DataFrame, keys: set[tuple[str, str, date]]) -> dict[tuple[str, str, date], pl.Series]:
    """The open times of the instrument-days in ``keys`` (those with holes), one Series each."""
    if not keys or scoped.is_empty():
        return {}
    wanted = pl.DataFrame(list(keys), schema={"market": pl.String(), "symbol": pl.String(), "date": pl.Date()},
                          orient="row")
    picked = scoped.join(wanted, on=["market", "symbol", "date"], how="semi")
    return {
        (key[0], key[1], key[2]): part["open_time"]
        for key, part in picked.partition_by(["market", "symbol", "date"], as_dict=True).items()
    }


def _describe(holes: list[tuple[datetime, datetime]], sizes: list[int], clock: str) -> str:
    parts = [
        f"{first.strftime(clock)} ({size})"
        if size == 1
        else f"{first.strftime(clock)}–{last.strftime(clock)} ({size})"
        for (first, last), size in zip(holes[:MAX_LISTED_RANGES], sizes, strict=False)
    ]
    if len(holes) > MAX_LISTED_RANGES:
        parts.append(f"… and {len(holes) - MAX_LISTED_RANGES} more")
    return ", ".join(parts)


def _epoch_ms(moment: datetime) -> int:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MS
