"""The bundled real Binance files (``data/binance``, see its PROVENANCE.md) and how tests read them.

Plain helpers, no fixtures: where the files are, ``utc()``, the loaders that parse a real file the way
the product does (or, where a test needs an independent reading, without the product's parser), and
the helpers that make a damaged variant of a file in a temp copy of the mirror. The bundled files
themselves are never modified.
"""

from __future__ import annotations

import functools
import hashlib
import io
import shutil
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import talib

from lakehouse_assets.exchange.exchange_info import parse_exchange_info
from lakehouse_assets.funding.parse import parse_funding_month_zip
from lakehouse_assets.funding.transforms import snap_events
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.klines.parse import ParsedKlines, parse_klines_csv, parse_klines_zip

#: The project root (pyproject.toml, lakehouse_assets/, README.md): the working directory of child processes.
REPO = Path(__file__).resolve().parent.parent
#: The sample as a Binance mirror root: ``SAMPLE_DATA / "data/spot/daily/klines/..."``.
SAMPLE_DATA = Path(__file__).parent / "data" / "binance"
#: Binance's own ``data/`` tree inside it: ``DATA / "spot/daily/klines/..."``.
DATA = SAMPLE_DATA / "data"
#: Binance exchangeInfo answers (real spot 2023, USD-M 2021, COIN-M 2020; a SYNTHETIC COIN-M one): PROVENANCE.md.
API = SAMPLE_DATA / "api"
COINM_ANSWER = API / "SYNTHETIC" / "dapi-v1-exchangeInfo.SYNTHETIC.json"

#: First open and last close of each real spot BTCUSDT 1m day (from Binance's files).
SPOT_OPEN_CLOSE = {
    "2020-01-01": (7195.24, 7200.85),
    "2020-01-02": (7200.77, 6965.71),
    "2020-01-03": (6965.49, 7344.96),
}

SPOT = Instrument("spot", "BTCUSDT")
UM = Instrument("um", "BTCUSDT")
CM = Instrument("cm", "BTCUSD_PERP")

#: The real USD-M BTCUSDT funding month (with its CHECKSUM), relative to a mirror root.
FUNDING_DIR = "data/futures/um/monthly/fundingRate/BTCUSDT"
MONTH_ZIP = "BTCUSDT-fundingRate-2026-04.zip"
FUNDING_MONTH_ZIP = SAMPLE_DATA / FUNDING_DIR / MONTH_ZIP


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


# --------------------------------------------------------------------------- klines, parsed by the product


def archive_path(instrument: Instrument, interval: str, day: date, suffix: str) -> Path:
    """The sample's daily kline file for (instrument, interval, day), ``.zip`` or its CSV-only copy ``.csv``."""
    relative = instrument.daily_klines_path(interval, day).removeprefix("data/")
    return DATA / (relative.removesuffix(".zip") + suffix)


def contract_size(instrument: Instrument) -> float | None:
    """A COIN-M contract's USD size as the lake of a pipeline test knows it: from the COIN-M exchangeInfo answer
    the REST stand-in serves and the harness stores in bronze (SYNTHETIC, built from the real 2020 answer: see
    PROVENANCE.md); None for spot and USD-M."""
    if instrument.market != "cm":
        return None
    return _coinm_sizes()[instrument.symbol]


@functools.cache
def _coinm_sizes() -> dict[str, float]:
    answer = parse_exchange_info(COINM_ANSWER.read_bytes(), market="cm", source=str(COINM_ANSWER))
    return dict(answer.select("symbol", "contract_size").iter_rows())


def parse_real(instrument: Instrument, interval: str, day: date) -> ParsedKlines:
    """Parse the real file for (instrument, interval, day), zip or CSV-only copy."""
    zipped = archive_path(instrument, interval, day, ".zip")
    size = contract_size(instrument)
    if zipped.exists():
        return parse_klines_zip(zipped.read_bytes(), instrument=instrument, interval=interval, day=day,
                                file_name=zipped.name, contract_size=size)  # fmt: skip
    csv = archive_path(instrument, interval, day, ".csv")
    return parse_klines_csv(csv.read_bytes(), instrument=instrument, interval=interval, day=day, file_name=csv.name,
                            contract_size=size)  # fmt: skip


def real_day(instrument: Instrument, day: date, interval: str = "1m") -> pl.DataFrame:
    """One real day of klines as silver holds it."""
    return parse_real(instrument, interval, day).frame


def real_days(instrument: Instrument, days: list[date], interval: str = "1m") -> pl.DataFrame:
    return pl.concat([real_day(instrument, d, interval) for d in days])


def minutes_spot() -> pl.DataFrame:
    """spot BTCUSDT 1m, 2020-01-01..03 (three checksummed zips)."""
    return real_days(SPOT, [date(2020, 1, 1), date(2020, 1, 2), date(2020, 1, 3)])


def minutes_adabtc() -> pl.DataFrame:
    """spot ADABTC 1m, 2021-11-27 (8-decimal prices)."""
    return real_day(Instrument("spot", "ADABTC"), date(2021, 11, 27))


def um_day() -> pl.DataFrame:
    """USD-M BTCUSDT 1m, 2022-04-08 (a CSV-only copy of the published file)."""
    return real_day(UM, date(2022, 4, 8))


def spot_1h_february_2020() -> pl.DataFrame:
    """The real monthly file with Binance's 2020-02-19 maintenance (12:00-16:00 missing), that day's 1h bars."""
    path = DATA / "spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2020-02.csv"
    lines = path.read_bytes().splitlines(keepends=True)
    day_ms = int(utc(2020, 2, 19).timestamp() * 1000)
    body = b"".join(line for line in lines if day_ms <= int(line.split(b",")[0]) < day_ms + 86_400_000)
    return parse_klines_csv(body, instrument=SPOT, interval="1h", day=date(2020, 2, 19), file_name=path.name).frame


def without(frame: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """``frame`` without the bars opening in [start, end) (a hole, as an archive file with a block removed)."""
    return frame.filter((pl.col("open_time") < start) | (pl.col("open_time") >= end))


# --------------------------------------------------------------------------- klines, read without the product's parser


def real_csv(relative: str) -> bytes:
    """The CSV bytes of a sample file (``relative`` to ``DATA``): a zip's one member, or the CSV itself."""
    path = DATA / relative
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            return archive.read(archive.namelist()[0])
    return path.read_bytes()


def real_rows(day: str, n: int = 5) -> pl.DataFrame:
    """The first minutes of the real spot BTCUSDT file for ``day`` (market, symbol, open_time, close)."""
    csv = real_csv(f"spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-{day}.zip")
    raw = pl.read_csv(io.BytesIO(csv), has_header=False, n_rows=n, new_columns=[f"c{i}" for i in range(12)])
    return raw.select(
        market=pl.lit("spot"),
        symbol=pl.lit("BTCUSDT"),
        open_time=pl.from_epoch(pl.col("c0"), time_unit="ms").dt.replace_time_zone("UTC"),
        close=pl.col("c4").cast(pl.Float64),
    )


KLINE_COLUMNS = [
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "trade_count",
    "taker_buy_volume", "taker_buy_quote_volume", "ignore",
]  # fmt: skip


def hourly(*months: str) -> pl.DataFrame:
    """Binance's own spot BTCUSDT 1h bars from the monthly files (a real exchange-maintenance gap in 2020-02)."""
    frames = [
        pl.read_csv(
            DATA / "spot/monthly/klines/BTCUSDT/1h" / f"BTCUSDT-1h-{m}.csv",
            has_header=False,
            new_columns=KLINE_COLUMNS,
            schema_overrides={"ignore": pl.Float64},
        )
        for m in months
    ]
    return pl.concat(frames).select(
        market=pl.lit("spot"),
        symbol=pl.lit("BTCUSDT"),
        interval=pl.lit("1h"),
        open_time=pl.from_epoch("open_time", time_unit="ms").dt.cast_time_unit("ms").dt.replace_time_zone("UTC"),
        high="high",
        low="low",
        close="close",
        volume="volume",
        quote_volume="quote_volume",
    )


# --------------------------------------------------------------------------- funding


def funding_month_csv() -> bytes:
    with zipfile.ZipFile(FUNDING_MONTH_ZIP) as archive:
        return archive.read("BTCUSDT-fundingRate-2026-04.csv")


def funding_month() -> pl.DataFrame:
    """The real 2026-04 month as silver/funding_rates holds it (90 settlements, snapped to their slots)."""
    raw = parse_funding_month_zip(
        FUNDING_MONTH_ZIP.read_bytes(), instrument=UM, month="2026-04", file_name=FUNDING_MONTH_ZIP.name
    )
    return snap_events(raw, instrument=UM, source="archive")


# --------------------------------------------------------------------------- references


def talib_full(bars: pl.DataFrame) -> dict[str, np.ndarray]:
    """TA-Lib called directly on one contiguous series, defaults spelled out."""
    h, lo, c = (bars[k].to_numpy() for k in ("high", "low", "close"))
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    return {
        "rsi_14": talib.RSI(c, 14),
        "macd_12_26_9": macd,
        "macd_signal_12_26_9": signal,
        "macd_hist_12_26_9": hist,
        "bb_upper_20_2": upper,
        "bb_middle_20_2": middle,
        "bb_lower_20_2": lower,
        "atr_14": talib.ATR(h, lo, c, 14),
    }


def assert_matches(ours: pl.Series, reference: np.ndarray, rel: float = 1e-9) -> None:
    """Same null/NaN positions, and relative 1e-9 wherever defined."""
    mine = ours.to_numpy().astype(float)  # nulls -> NaN
    assert ours.null_count() == int(np.isnan(reference).sum()), ours.name
    assert np.array_equal(np.isnan(mine), np.isnan(reference)), ours.name
    defined = ~np.isnan(reference)
    np.testing.assert_allclose(mine[defined], reference[defined], rtol=rel, atol=0, err_msg=ours.name)


def ohlcv_only(frame: pl.DataFrame, when: pl.Expr) -> pl.DataFrame:
    """Real minutes as the gap-fill stores them from an OHLCV-only REST source: the volume details unknown."""
    from lakehouse_assets.klines.gapfill import UNKNOWN_WITHOUT_FULL_KLINES

    return frame.with_columns(
        *(pl.when(when).then(None).otherwise(pl.col(c)).alias(c) for c in UNKNOWN_WITHOUT_FULL_KLINES),
        source=pl.when(when).then(pl.lit("rest")).otherwise(pl.col("source")),
    )


# --------------------------------------------------------------------------- damaged variants in a mirror copy


def copy_mirror(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rewrite_zip_csv(zip_path: Path, transform: Callable[[bytes], bytes], *, update_checksum: bool = True) -> None:
    """Rewrite the CSV inside a mirror zip (a deliberately damaged variant) and, optionally, its CHECKSUM."""
    with zipfile.ZipFile(zip_path) as zf:
        (member,) = zf.namelist()
        text = zf.read(member)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, transform(text))
    if update_checksum:
        write_checksum(zip_path)


def write_checksum(zip_path: Path, digest: str | None = None) -> None:
    digest = digest or hashlib.sha256(zip_path.read_bytes()).hexdigest()
    Path(str(zip_path) + ".CHECKSUM").write_text(f"{digest}  {zip_path.name}")


def remove_minutes(start: datetime, end: datetime) -> Callable[[bytes], bytes]:
    """A ``rewrite_zip_csv`` transform dropping the kline rows opening in [start, end)."""
    lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)

    def transform(text: bytes) -> bytes:
        kept = [
            line for line in text.splitlines(keepends=True)
            if not line[:1].isdigit() or not lo <= int(line.split(b",")[0]) < hi
        ]
        return b"".join(kept)

    return transform


def mirror_without_funding(sample_mirror: Path, target: Path) -> Path:
    """A copy of the sample mirror where the monthly funding archive is not published (yet)."""
    shutil.copytree(sample_mirror, target)
    shutil.rmtree(target / FUNDING_DIR)
    return target


def publish_month(sample_mirror: Path, mirror: Path) -> None:
    """The monthly file (and its CHECKSUM) lands in the mirror, exactly as Binance published it."""
    (mirror / FUNDING_DIR).mkdir(parents=True, exist_ok=True)
    for name in (MONTH_ZIP, MONTH_ZIP + ".CHECKSUM"):
        shutil.copy2(sample_mirror / FUNDING_DIR / name, mirror / FUNDING_DIR / name)
