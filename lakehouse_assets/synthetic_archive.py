"""Synthetic daily-kline archive generator — FOR BENCHMARKS ONLY.

Correctness tests never use this module's output as evidence: they run on the real Binance
samples (see ``sample_mirror``). Synthetic files exist so that a year x N-symbol load can be
benchmarked without the internet; their *format* imitates Binance exactly, their *content* is a
seeded random walk and says nothing about any market.

Format written (spot/USD-M daily klines as Binance publishes them before 2025):
12 columns, no header, LF, epoch-millisecond ``open_time``/``close_time`` with
``close_time = open_time + interval - 1`` (``...59999`` for 1m), decimals printed with 8 dp like
spot files, ``ignore`` = 0, one zip per day with one ``<name>.csv`` member, plus a real sha256
``.zip.CHECKSUM`` in Binance's shape (two spaces, no trailing newline).

Values are generated as integers (price in 0.01 ticks, quantities in 1e-8 units) and only then
printed, so OHLC ordering and volume/taker-buy/quote consistency hold exactly in the text.
Pure Python + polars (numpy is not a dependency of this project).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import sys
from array import array
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Final, Literal

import polars as pl

from lakehouse_assets.instruments import Instrument
from lakehouse_assets.sample_mirror import checksum_text, deterministic_zip

__all__ = ["INTERVAL_MS", "synthetic_day_csv", "write_synthetic_mirror"]

#: Intervals for which Binance publishes *daily* kline files, in milliseconds.
INTERVAL_MS: Final[dict[str, int]] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}
_DAY_MS: Final = 86_400_000
_QTY_UNIT: Final = 10**8  # quantities/quote amounts are integers in 1e-8
_LOT: Final = 1_000  # base quantity granularity 1e-5 (BTC lot size since 2022), printed with 8 dp
_COMPRESS_LEVEL: Final = 1  # still deflate (what Binance uses); level only trades size for speed

TimestampUnit = Literal["ms", "us", "auto"]


def _fixed8_from_units(col: str) -> pl.Expr:
    """Integer 1e-8 units -> '123.45678900'."""
    return pl.concat_str(
        (pl.col(col) // _QTY_UNIT).cast(pl.String),
        pl.lit("."),
        (pl.col(col) % _QTY_UNIT).cast(pl.String).str.zfill(8),
    )


def _fixed8_from_cents(col: str) -> pl.Expr:
    """Integer 0.01 ticks -> '42283.58000000' (spot prints prices with 8 dp)."""
    return pl.concat_str(
        (pl.col(col) // 100).cast(pl.String),
        pl.lit("."),
        (pl.col(col) % 100).cast(pl.String).str.zfill(2),
        pl.lit("000000"),
    )


def _uniform(rng: random.Random, n: int) -> pl.Series:
    """n uniforms in (0, 1) from one ``randbytes`` call: stable across Python/polars versions and ~100x
    faster than n ``rng.random()`` calls."""
    raw = array("Q", rng.randbytes(8 * n))
    if sys.byteorder != "little":  # pragma: no cover - keep streams identical on big-endian hosts
        raw.byteswap()
    return (pl.Series(raw, dtype=pl.UInt64).cast(pl.Float64) + 0.5) / 2.0**64


def _normal(rng: random.Random, n: int) -> pl.Series:
    """Standard normals via Box-Muller (numpy is not a dependency)."""
    u1, u2 = _uniform(rng, n), _uniform(rng, n)
    return (-2.0 * u1.log()).sqrt() * (2.0 * math.pi * u2).cos()


class _Walk:
    """Per-instrument random walk carried across days so consecutive files join up.

    Everything is vectorised in polars: a year of 1m bars is 525,600 rows.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.price_cents = rng.randint(1_000_00, 60_000_00)
        self.sigma = rng.uniform(0.0004, 0.0012)  # per-bar relative volatility
        self.mean_lots = float(rng.randint(20_000, 200_000))  # lots of 1e-5 base per bar (0.2-2 BTC)

    def bars(self, n: int) -> pl.DataFrame:
        """n consecutive integer bars: prices in 0.01 ticks, quantities in 1e-8 units."""
        rng, sigma = self.rng, self.sigma
        p0 = self.price_cents
        z_close, z_high, z_low = _normal(rng, n), _normal(rng, n), _normal(rng, n)
        u_lots, u_vwap, u_taker, u_count = (_uniform(rng, n) for _ in range(4))
        frame = pl.DataFrame(
            {"zc": z_close, "zh": z_high, "zl": z_low, "ul": u_lots, "uv": u_vwap, "ut": u_taker, "un": u_count}
        )
        c = (math.log(p0) + (pl.col("zc") * sigma).cum_sum()).exp().round(0).cast(pl.Int64).clip(lower_bound=1)
        frame = frame.with_columns(c=c).with_columns(o=pl.col("c").shift(1, fill_value=p0))
        wick = pl.col("o").cast(pl.Float64) * (sigma * 0.5)
        frame = frame.with_columns(
            h=pl.max_horizontal("o", "c") + (pl.col("zh").abs() * wick).floor().cast(pl.Int64),
            l=(pl.min_horizontal("o", "c") - (pl.col("zl").abs() * wick).floor().cast(pl.Int64)).clip(lower_bound=1),
            lots=1 + (-(pl.col("ul").log()) * self.mean_lots).floor().cast(pl.Int64),
        )
        frame = frame.with_columns(
            vwap=pl.col("l") + ((pl.col("h") - pl.col("l")).cast(pl.Float64) * pl.col("uv")).floor().cast(pl.Int64),
            taker_lots=(pl.col("lots").cast(pl.Float64) * pl.col("ut")).floor().cast(pl.Int64),
        )
        out = frame.select(
            "o",
            "h",
            "l",
            "c",
            v=pl.col("lots") * _LOT,
            q=pl.col("lots") * _LOT * pl.col("vwap") // 100,
            n=1 + pl.col("lots") // 200 + (pl.col("lots").cast(pl.Float64) / 100 * pl.col("un")).floor().cast(pl.Int64),
            tv=pl.col("taker_lots") * _LOT,
            tq=pl.col("taker_lots") * _LOT * pl.col("vwap") // 100,
        )
        self.price_cents = int(out["c"][-1]) if n else p0
        return out


def synthetic_day_csv(bars: pl.DataFrame, day: date, interval_ms: int, *, unit_factor: int = 1) -> bytes:
    """Render one day of integer bars (from ``_Walk.bars``) as Binance kline CSV bytes."""
    start = int(datetime.combine(day, time(), tzinfo=UTC).timestamp()) * 1000
    open_time = (pl.lit(start, dtype=pl.Int64) + pl.int_range(0, pl.len(), dtype=pl.Int64) * interval_ms) * unit_factor
    text = bars.select(
        open_time.alias("open_time"),
        _fixed8_from_cents("o").alias("open"),
        _fixed8_from_cents("h").alias("high"),
        _fixed8_from_cents("l").alias("low"),
        _fixed8_from_cents("c").alias("close"),
        _fixed8_from_units("v").alias("volume"),
        (open_time + (interval_ms * unit_factor - 1)).alias("close_time"),
        _fixed8_from_units("q").alias("quote_volume"),
        pl.col("n").alias("count"),
        _fixed8_from_units("tv").alias("taker_buy_volume"),
        _fixed8_from_units("tq").alias("taker_buy_quote_volume"),
        pl.lit("0").alias("ignore"),
    ).write_csv(include_header=False, quote_style="never")
    return text.encode("ascii")


def _unit_factor(instrument: Instrument, day: date, unit: TimestampUnit) -> int:
    if unit == "ms":
        return 1
    if unit == "us":
        return 1000
    # "auto" follows Binance: spot files dated 2025-01-01 onward are in microseconds.
    return 1000 if instrument.market == "spot" and day >= date(2025, 1, 1) else 1


def write_synthetic_mirror(
    dst: Path,
    instruments: Iterable[Instrument],
    days: Iterable[date],
    *,
    seed: int = 0,
    interval: str = "1m",
    timestamp_unit: TimestampUnit = "ms",
) -> int:
    """Write daily kline zips + CHECKSUMs for every (instrument, day) under ``dst``; return bytes written.

    Deterministic for equal arguments (per-instrument RNG seeded from ``seed``, market, symbol and
    interval; the walk runs over ``days`` in sorted order, so a day's content depends on the
    earlier days requested). ``timestamp_unit="auto"`` switches spot files dated 2025+ to
    microseconds like the real archive; the default is milliseconds.
    """
    if interval not in INTERVAL_MS:
        raise ValueError(
            f"Binance has no daily kline files for interval {interval!r}; use one of {', '.join(INTERVAL_MS)}"
        )
    interval_ms = INTERVAL_MS[interval]
    rows_per_day = _DAY_MS // interval_ms
    ordered_days = sorted(set(days))
    dst = Path(dst)

    def render(instrument: Instrument, day: date, bars: pl.DataFrame) -> int:
        zip_path = dst / instrument.daily_klines_path(interval, day)
        csv_bytes = synthetic_day_csv(bars, day, interval_ms, unit_factor=_unit_factor(instrument, day, timestamp_unit))
        # Binance's member timestamp is the publication time, typically shortly after midnight T+1.
        published = day + timedelta(days=1)
        zip_bytes = deterministic_zip(
            zip_path.name[: -len(".zip")] + ".csv",
            csv_bytes,
            date_time=(published.year, published.month, published.day, 0, 10, 0),
            compresslevel=_COMPRESS_LEVEL,
        )
        checksum = checksum_text(zip_path.name, zip_bytes)
        zip_path.parent.mkdir(parents=True, exist_ok=True)
        zip_path.write_bytes(zip_bytes)
        zip_path.with_name(zip_path.name + ".CHECKSUM").write_bytes(checksum)
        return len(zip_bytes) + len(checksum)

    written = 0
    # zlib and polars release the GIL, so a small pool roughly divides the wall time by the cores.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for instrument in instruments:
            walk = _Walk(random.Random(f"{seed}:{instrument.market}:{instrument.symbol}:{interval}"))
            bars = walk.bars(rows_per_day * len(ordered_days))
            jobs = [
                pool.submit(render, instrument, day, bars.slice(i * rows_per_day, rows_per_day))
                for i, day in enumerate(ordered_days)
            ]
            written += sum(job.result() for job in jobs)
    return written


def sha256_hex(data: bytes) -> str:
    """Convenience for benchmarks that verify what they just wrote."""
    return hashlib.sha256(data).hexdigest()
