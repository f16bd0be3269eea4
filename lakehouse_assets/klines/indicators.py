"""Feature columns for gold/features: TA-Lib indicators plus 24h rolling statistics.

Why TA-Lib itself and not a re-implementation: users compare these columns with TA-Lib (and
with tools that delegate to it), and its seeding rules are easy to get subtly wrong (MACD's
fast-EMA seed, RSI's zero case, population std in Bollinger bands; see
shared/notes/indicator_conventions.md). Calling the pinned C library makes the values
TA-Lib's by construction; it is also the fastest option (tens of millions of bars per second).

Gaps: TA-Lib has no notion of time, and a NaN poisons everything after it (RSI silently turns
0.0 forever). So the indicators run **per contiguous segment**: a run of bars exactly one
interval apart. After a hole the indicators restart exactly as TA-Lib does on a fresh series
(null during the warm-up again). Nothing is forward-filled; no price is invented.

Partition boundaries: RSI, ATR and MACD are recursive, so a value depends on every earlier bar
of its segment. A daily partition therefore computes over ``WARMUP_BARS`` earlier bars (see
``lookback_days``) and emits only its own day. The slowest memory is Wilder's smoothing
(alpha = 1/14): a different seed ``WARMUP_BARS`` bars back is scaled by (13/14)^600 ≈ 6e-20,
i.e. far below float64 resolution, so day D equals the full-history run (measured: bit-identical
for RSI/ATR/MACD on real data, ≤ 1e-13 relative for Bollinger bands, whose running sums round
differently depending on where they start).

One case no finite window can reproduce: when the close does not change at all for the whole
window (a halted or dead market), TA-Lib's full-history RSI keeps the gain/loss *ratio* from
before the flat stretch forever, while any run starting inside the flat stretch gives TA-Lib's
flat-series value 0.0. That needs ≥ 24h (1m), 25 days (1h) or 600 days (1d) of identical
closes; it is documented in the README.

24h statistics are time-based windows over the bars present: the bars with
``open_time`` in (t − 24h, t], i.e. the last 24h of bars ending with bar t. ``bars_24h`` says how
many bars that was, so thin windows after a gap are visible.

Missing lookback: a day inside the lookback that was never materialized upstream is *absent*,
which is not the same as a hole (a hole is a day that was materialized and has no bar there, so
the full history has the hole too and the restart is exact). Absent days are simply not read; the
bars are computed from the history present (the same per-segment code, so after an absent day
the indicators warm up again as after a hole), and ``lookback_complete`` is false for every bar
whose history window, the ``history_bars(interval)`` bars before it (TA-Lib's 600-bar warm-up,
or 24h for its 24h window and the return of that window's first bar, whichever is longer),
overlaps an absent day. A bar with ``lookback_complete`` true has the values of a run with every
day present (its window of present bars is at least as long as the lookback's, so the argument
above applies unchanged); one with false gets them when it is recomputed after the absent days
were materialized.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime

import numpy as np
import polars as pl
import talib

from lakehouse_assets.klines.resample import split_by
from lakehouse_assets.klines.schema import INTERVAL_MS

DAY_MS = 86_400_000
_EPOCH_DAY = date(1970, 1, 1)
WARMUP_BARS = 600
ROLLING_WINDOW = "24h"
ROLLING_WINDOW_MS = DAY_MS
# Crypto trades every day of the year: annualize with 365 days of bars.
BARS_PER_YEAR_DAYS = 365

RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_PERIOD, BB_NBDEV = 20, 2.0
ATR_PERIOD = 14

KEY_COLUMNS: tuple[str, ...] = ("market", "symbol", "interval", "open_time")
TALIB_COLUMNS: tuple[str, ...] = (
    "rsi_14",
    "macd_12_26_9",
    "macd_signal_12_26_9",
    "macd_hist_12_26_9",
    "bb_upper_20_2",
    "bb_middle_20_2",
    "bb_lower_20_2",
    "atr_14",
)
FEATURES_SCHEMA: dict[str, pl.DataType] = {
    "market": pl.String(),
    "symbol": pl.String(),
    "interval": pl.String(),
    "open_time": pl.Datetime("ms", "UTC"),
    "close_time": pl.Datetime("ms", "UTC"),
    "is_complete": pl.Boolean(),
    "lookback_complete": pl.Boolean(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "ret_1": pl.Float64(),
    "log_ret_1": pl.Float64(),
    **{name: pl.Float64() for name in TALIB_COLUMNS},
    "vwap_24h": pl.Float64(),
    "realized_vol_24h": pl.Float64(),
    "volume_zscore_24h": pl.Float64(),
    "bars_24h": pl.Int64(),
}
_INPUT_COLUMNS = ("market", "symbol", "interval", "open_time", "high", "low", "close", "volume", "quote_volume")


def lookback_days(interval: str, warmup_bars: int = WARMUP_BARS) -> int:
    """Whole days before a partition needed so its first bar has ``warmup_bars`` bars and a full 24h behind it.

    1m: 1 day · 5m: 3 · 15m: 7 · 1h: 25 · 4h: 100 · 1d: 600 (with the default 600 bars).
    """
    step = INTERVAL_MS[interval]
    return max(1, math.ceil(max(warmup_bars * step, ROLLING_WINDOW_MS) / DAY_MS))


def history_bars(interval: str, warmup_bars: int = WARMUP_BARS) -> int:
    """Bars before bar t that its values depend on when its segment reaches back that far: TA-Lib's warm-up
    (``warmup_bars``), or its 24h window, whichever is longer. The window's first bar opens at t − 24h + 1
    interval and its ``log_ret_1`` (in ``realized_vol_24h``) needs the bar before: 24h of bars before t.

    1m: 1440 · 5m / 15m / 1h / 4h / 1d: 600. ``lookback_days`` always covers this many bars.
    """
    return max(warmup_bars, ROLLING_WINDOW_MS // INTERVAL_MS[interval])


def missing_history_bars(open_time: pl.Series, interval: str, absent_days: Iterable[date]) -> pl.Series:
    """Per bar: how many of the ``history_bars(interval)`` interval slots before it fall on an absent day
    (0 = its whole history window was available). Slots are counted on the interval grid, whether or not
    the market traded then."""
    step = INTERVAL_MS[interval]
    opens = open_time.dt.epoch("ms").to_numpy().astype(np.int64, copy=False)
    absent = np.array(sorted({(d - _EPOCH_DAY).days for d in absent_days}), dtype=np.int64)
    if not len(absent) or not len(opens):
        return pl.Series("missing_history_bars", np.zeros(len(opens), dtype=np.int64))

    def absent_ms_before(x: np.ndarray) -> np.ndarray:
        """Milliseconds of absent days before instant x (a running total over the sorted absent days)."""
        day = np.floor_divide(x, DAY_MS)
        before = np.searchsorted(absent, day, side="left")
        inside = absent[np.minimum(before, len(absent) - 1)] == day
        return before * DAY_MS + np.where(inside, x - day * DAY_MS, 0)

    span = history_bars(interval) * step
    missing = (absent_ms_before(opens) - absent_ms_before(opens - span)) // step
    return pl.Series("missing_history_bars", missing)


def bars_per_year(interval: str) -> float:
    return BARS_PER_YEAR_DAYS * DAY_MS / INTERVAL_MS[interval]


def check_talib_defaults() -> None:
    """Refuse to run with non-default TA-Lib globals: they are process-wide and change every value."""
    if talib.get_compatibility() != 0:
        raise RuntimeError(
            "TA-Lib compatibility mode is not the default (0): something in this process called "
            "talib.set_compatibility(); features would not match TA-Lib's default output"
        )
    for name in ("RSI", "ATR", "EMA"):
        if talib.get_unstable_period(name) != 0:
            raise RuntimeError(
                f"TA-Lib unstable period for {name} is {talib.get_unstable_period(name)}, not 0: "
                "something in this process called talib.set_unstable_period(); refusing to compute features"
            )


def talib_segment(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> dict[str, np.ndarray]:
    """TA-Lib's RSI, MACD, Bollinger bands and ATR for ONE contiguous series, parameters explicit."""
    macd, signal, hist = talib.MACD(close, fastperiod=MACD_FAST, slowperiod=MACD_SLOW, signalperiod=MACD_SIGNAL)
    upper, middle, lower = talib.BBANDS(close, timeperiod=BB_PERIOD, nbdevup=BB_NBDEV, nbdevdn=BB_NBDEV, matype=0)
    return {
        "rsi_14": talib.RSI(close, timeperiod=RSI_PERIOD),
        "macd_12_26_9": macd,
        "macd_signal_12_26_9": signal,
        "macd_hist_12_26_9": hist,
        "bb_upper_20_2": upper,
        "bb_middle_20_2": middle,
        "bb_lower_20_2": lower,
        "atr_14": talib.ATR(high, low, close, timeperiod=ATR_PERIOD),
    }


def compute_features(bars: pl.DataFrame | pl.LazyFrame, absent_days: Iterable[date] = ()) -> pl.DataFrame:
    """Features for every bar of ``bars`` (any instruments and intervals), sorted by the key.

    ``bars`` needs market, symbol, interval, open_time, high, low, close, volume, quote_volume;
    close_time and is_complete are taken when present (1m silver bars are complete by definition).
    Every value at bar t uses bars <= t only. ``absent_days``: UTC days whose bars exist upstream but
    were not available (never materialized); ``lookback_complete`` is false for the bars whose history
    window overlaps one (module docstring). Without them, every bar is ``lookback_complete``.
    """
    check_talib_defaults()
    frame = bars.collect() if isinstance(bars, pl.LazyFrame) else bars
    missing = [c for c in _INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"feature input lacks column(s) {missing}")
    if frame.is_empty():
        return pl.DataFrame(schema=FEATURES_SCHEMA)
    keep = [*_INPUT_COLUMNS, *(c for c in ("close_time", "is_complete") if c in frame.columns)]
    frame = frame.select(keep)
    # Per (market, symbol, interval), in key order: the concatenation is sorted without a global sort,
    # and only one part's intermediate columns are alive at a time.
    interval = frame["interval"]
    present = [interval[0]] if bool((interval == interval[0]).all()) else interval.unique().to_list()
    unknown = sorted(set(present) - set(INTERVAL_MS))
    if unknown:
        raise ValueError(f"feature input has unknown interval(s) {unknown}")
    absent = frozenset(absent_days)
    return pl.concat(
        [_features_one(part, absent).collect() for _, part in split_by(frame, ["market", "symbol", "interval"])],
        how="vertical",
        rechunk=False,
    )


def features_for_window(
    bars: pl.DataFrame | pl.LazyFrame, start: datetime, end: datetime, absent_days: Iterable[date] = ()
) -> pl.DataFrame:
    """Compute over all of ``bars`` (the history incl. lookback) and keep bars opening in [start, end).

    ``absent_days``: days of the lookback the caller could not read (``compute_features``)."""
    out = compute_features(bars, absent_days)
    return out.filter(pl.col("open_time") >= start, pl.col("open_time") < end)


def _features_one(part: pl.DataFrame, absent_days: frozenset[date]) -> pl.LazyFrame:
    """One (market, symbol, interval): its own frame, so no string-keyed group-bys or window functions."""
    interval = part["interval"][0]
    step = INTERVAL_MS[interval]
    if not part["open_time"].is_sorted():
        part = part.sort("open_time")
    gaps = part["open_time"].dt.epoch("ms").diff()
    repeated = int((gaps == 0).sum())
    if repeated:
        row = part.filter(gaps == 0).row(0, named=True)
        raise ValueError(
            f"feature input has {repeated} rows sharing a key, e.g. {row['market']}:{row['symbol']} "
            f"{row['interval']} {row['open_time']}; bars must be unique per (market, symbol, interval, open_time)"
        )
    # A segment starts at the first bar and after every hole in the bar grid.
    new_segment = (gaps != step).fill_null(True)
    talib_values = _talib_columns(part, new_segment.to_numpy())

    prev_close = pl.when(~pl.col("__new_segment")).then(pl.col("close").shift(1))
    window = {"by": "open_time", "window_size": ROLLING_WINDOW}
    return (
        part.lazy()
        .with_columns(
            new_segment.alias("__new_segment"),
            *talib_values,
            close_time=pl.col("close_time")
            if "close_time" in part.columns
            else pl.col("open_time") + pl.duration(milliseconds=step - 1),
            is_complete=pl.col("is_complete") if "is_complete" in part.columns else pl.lit(True),
            lookback_complete=missing_history_bars(part["open_time"], interval, absent_days) == 0
            if absent_days
            else pl.lit(True),
        )
        .with_columns(
            ret_1=pl.col("close") / prev_close - 1.0,
            log_ret_1=(pl.col("close") / prev_close).log(),
        )
        .with_columns(
            __qsum=pl.col("quote_volume").rolling_sum_by(**window),
            __vsum=pl.col("volume").rolling_sum_by(**window),
            # quote volume unknown (an OHLCV-only REST bar, see resample.py) anywhere in the window -> VWAP unknown
            __qnull=pl.col("quote_volume").is_null().cast(pl.Int64).rolling_sum_by(**window)
            if part["quote_volume"].null_count()
            else pl.lit(0, dtype=pl.Int64),
            __vmean=pl.col("volume").rolling_mean_by(**window),
            __vstd=pl.col("volume").rolling_std_by(**window, min_samples=2),
            __rstd=pl.col("log_ret_1").rolling_std_by(**window, min_samples=2),
            bars_24h=pl.col("close").is_not_null().cast(pl.Int64).rolling_sum_by(**window),
        )
        .with_columns(
            vwap_24h=pl.when((pl.col("__vsum") > 0) & (pl.col("__qnull") == 0)).then(
                pl.col("__qsum") / pl.col("__vsum")
            ),
            realized_vol_24h=pl.col("__rstd") * math.sqrt(bars_per_year(interval)),
            volume_zscore_24h=pl.when(pl.col("__vstd") > 0).then(
                (pl.col("volume") - pl.col("__vmean")) / pl.col("__vstd")
            ),
        )
        .select([pl.col(c).cast(t) for c, t in FEATURES_SCHEMA.items()])
    )


def _talib_columns(part: pl.DataFrame, new_segment: np.ndarray) -> list[pl.Series]:
    n = part.height
    close = part["close"].to_numpy().astype(np.float64, copy=False)
    high = part["high"].to_numpy().astype(np.float64, copy=False)
    low = part["low"].to_numpy().astype(np.float64, copy=False)
    starts = np.flatnonzero(new_segment)
    ends = np.append(starts[1:], n)
    out = {name: np.full(n, np.nan) for name in TALIB_COLUMNS}
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        if b - a <= RSI_PERIOD:  # shorter than every warm-up: all null, skip the calls
            continue
        for name, values in talib_segment(high[a:b], low[a:b], close[a:b]).items():
            out[name][a:b] = values
    return [pl.Series(name, values, nan_to_null=True) for name, values in out.items()]


def segments(frame: pl.DataFrame, interval: str) -> pl.DataFrame:
    """Contiguous runs of one instrument's bars: start, end and length (for metadata and charts)."""
    step = INTERVAL_MS[interval]
    return (
        frame.sort("open_time")
        .with_columns(__seg=((pl.col("open_time").dt.epoch("ms").diff() != step).fill_null(True)).cum_sum())
        .group_by("__seg", maintain_order=True)
        .agg(start=pl.col("open_time").first(), end=pl.col("open_time").last(), bars=pl.len())
        .drop("__seg")
    )
