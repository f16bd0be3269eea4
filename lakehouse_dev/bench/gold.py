"""Gold-layer steps of ``make bench``: resample + features for symbol-years of 1m, and TA-Lib's own speed.

The 1m input is a seeded random walk shaped exactly like silver/klines (prices on a 0.01 tick,
volumes on 1e-8, OHLC consistent) and built in memory, so the transforms are timed without the
archive and Parquet costs measured elsewhere in the benchmark. Correctness is the tests' job, on
real Binance files. ``pipeline`` times the real assets through Dagster over a silver lake built by
the bronze -> silver scenarios, as monthly backfill runs.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from lakehouse_assets.klines.schema import SILVER_KLINES_SCHEMA
from lakehouse_dev.bench.common import local_instance, peak_rss_mb, run_in_chunks


def synthetic_minutes(n_symbols: int, days: int = 365, seed: int = 1, start: date = date(2023, 1, 1)) -> pl.DataFrame:
    """``n_symbols`` x ``days`` of complete 1m bars in the silver schema (benchmark input only)."""
    rng = np.random.default_rng(seed)
    n = days * 1440
    t0 = datetime(start.year, start.month, start.day, tzinfo=UTC)
    open_time = pl.datetime_range(t0, t0 + timedelta(minutes=n - 1), "1m", eager=True, time_unit="ms", time_zone="UTC")
    frames = []
    for i in range(n_symbols):
        ticks = np.maximum(100, np.rint(3_000_000 * np.exp(np.cumsum(rng.normal(0, 8e-4, n)))))  # 0.01 ticks
        close = ticks / 100
        open_ = np.r_[close[0], close[:-1]]
        wiggle = np.rint(np.abs(rng.normal(0, 300, (2, n)))) / 100
        high = np.maximum(open_, close) + wiggle[0]
        low = np.maximum(0.01, np.minimum(open_, close) - wiggle[1])
        volume = np.rint(rng.lognormal(2, 1.2, n) * 1e5) / 1e8 * 1000
        taker = np.rint(volume * rng.uniform(0, 1, n) * 1e8) / 1e8
        frames.append(
            pl.DataFrame(
                {
                    "market": "spot",
                    "symbol": f"BENCH{i + 1}USDT",
                    "interval": "1m",
                    "open_time": open_time,
                    "close_time": open_time + timedelta(milliseconds=59_999),
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": volume,
                    "quote_volume": np.rint(volume * close * 1e8) / 1e8,
                    "trade_count": rng.integers(1, 2_000, n),
                    "taker_buy_volume": taker,
                    "taker_buy_quote_volume": np.rint(taker * close * 1e8) / 1e8,
                    "source": "archive",
                    "contract_volume": None,
                    "taker_buy_contract_volume": None,
                },
                schema=SILVER_KLINES_SCHEMA,
            )
        )
    return pl.concat(frames)


def talib_alone(minutes: pl.DataFrame) -> float:
    """Seconds for TA-Lib's RSI, MACD, BBANDS and ATR over every symbol's 1m arrays (best of 3)."""
    import talib

    from lakehouse_assets.klines.resample import split_by

    arrays = [
        (part["high"].to_numpy(), part["low"].to_numpy(), part["close"].to_numpy())
        for _, part in split_by(minutes, ["symbol"])
    ]
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        for h, lo, c in arrays:
            talib.RSI(c, 14)
            talib.MACD(c, 12, 26, 9)
            talib.BBANDS(c, 20, 2.0, 2.0, 0)
            talib.ATR(h, lo, c, 14)
        best = min(best, time.perf_counter() - began)
    return best


def core(n_symbols: int) -> dict:
    """resample (5m,15m,1h,4h,1d) + features (1m,1h,1d) for n symbol-years of 1m, without Dagster."""
    from lakehouse_assets.klines.indicators import compute_features
    from lakehouse_assets.klines.resample import DEFAULT_RESAMPLE_INTERVALS, resample_klines

    minutes = synthetic_minutes(n_symbols)
    rss_input = peak_rss_mb()
    compute_features(minutes.head(5000))  # warm TA-Lib/Polars code paths outside the timing
    began = time.perf_counter()
    resampled = resample_klines(minutes, DEFAULT_RESAMPLE_INTERVALS)
    t_resample = time.perf_counter() - began
    began = time.perf_counter()
    f1m = compute_features(minutes)
    t_1m = time.perf_counter() - began
    began = time.perf_counter()
    f_long = compute_features(resampled.filter(pl.col("interval").is_in(["1h", "1d"])))
    t_long = time.perf_counter() - began
    total = t_resample + t_1m + t_long
    peak = peak_rss_mb()  # before the TA-Lib-alone reference run below
    t_talib = talib_alone(minutes)
    rows = minutes.height
    return {
        "symbols": n_symbols,
        "rows_1m": rows,
        "resampled_bars": resampled.height,
        "feature_rows": f1m.height + f_long.height,
        "resample_s": t_resample,
        "features_1m_s": t_1m,
        "features_1h_1d_s": t_long,
        "seconds": total,
        "rows_per_s": rows / total,
        "talib_s": t_talib,
        "talib_rows_per_s": rows / t_talib,
        "ratio_to_talib": total / t_talib,
        "rss_input_mb": rss_input,
        "peak_rss_mb": peak,
    }


def pipeline(lake: Path, symbols: str, first: date, last: date, runs: int) -> dict:
    """gold_job (klines_resampled + features) through Dagster, as ``runs`` range runs over [first, last].

    gold reads silver/klines_filled, so klines_filled_job runs first over the same ranges (timed on its
    own; the synthetic archive is complete and REST is off, so it only re-checks and copies silver)."""
    os.environ.update(
        LAKEHOUSE_STORAGE=str(lake),
        LAKEHOUSE_SYMBOLS=symbols,
        LAKEHOUSE_START_DATE=first.isoformat(),
        LAKEHOUSE_REST_FILL="0",
    )
    from lakehouse_assets.definitions import defs

    days = (last - first).days + 1
    elapsed: dict[str, float] = {}
    with local_instance() as instance:
        for name in ("klines_filled_job", "gold_job"):
            began = time.perf_counter()
            run_in_chunks(defs.resolve_job_def(name), instance, first, last, runs)
            elapsed[name] = time.perf_counter() - began
    features = sum(p.stat().st_size for p in (lake / "gold/features").rglob("*.parquet"))
    resampled = sum(p.stat().st_size for p in (lake / "gold/klines_resampled").rglob("*.parquet"))
    return {
        "seconds": elapsed["gold_job"],
        "klines_filled_seconds": elapsed["klines_filled_job"],
        "runs": runs,
        "days": days,
        "peak_rss_mb": peak_rss_mb(),
        "features_bytes": features,
        "resampled_bytes": resampled,
    }
