"""The benchmark generator writes files in Binance's exact kline layout, with valid bars.

These tests check the generator itself; no correctness test elsewhere may use synthetic data.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from lakehouse_assets.archive.client import ArchiveClient, parse_checksum
from lakehouse_assets.instruments import Instrument
from lakehouse_dev.fixtures.synthetic_archive import write_synthetic_mirror

INSTRUMENTS = [Instrument("spot", "BTCUSDT"), Instrument("um", "ETHUSDT")]
DAYS = [date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1)]
COLUMNS = [
    "open_time", "open", "high", "low", "close", "volume", "close_time",
    "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore",
]  # fmt: skip
DECIMAL_8DP = re.compile(r"^\d+\.\d{8}$")


def read_day(root: Path, instrument: Instrument, day: date, interval: str = "1m") -> tuple[bytes, pl.DataFrame]:
    zip_path = root / instrument.daily_klines_path(interval, day)
    zip_bytes = zip_path.read_bytes()
    checksum = zip_path.with_name(zip_path.name + ".CHECKSUM").read_bytes()
    assert not checksum.endswith(b"\n")
    assert parse_checksum(checksum, expected_name=zip_path.name) == hashlib.sha256(zip_bytes).hexdigest()
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        (info,) = archive.infolist()
        assert info.filename == zip_path.name.replace(".zip", ".csv")
        assert info.compress_type == zipfile.ZIP_DEFLATED
        text = archive.read(info)
    assert text.endswith(b"\n") and b"\r" not in text
    frame = pl.read_csv(io.BytesIO(text), has_header=False, new_columns=COLUMNS, infer_schema=False)
    return text, frame


def test_files_are_binance_kline_csvs_with_valid_bars(tmp_path: Path) -> None:
    written = write_synthetic_mirror(tmp_path, INSTRUMENTS, DAYS, seed=7)
    assert written == sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    for instrument in INSTRUMENTS:
        previous_close: str | None = None
        for day in DAYS:
            text, raw = read_day(tmp_path, instrument, day)
            assert raw.width == 12 and raw.height == 1440
            assert text.split(b",", 1)[0].isdigit()  # no header row, like spot files
            for column in ("open", "high", "low", "close", "volume", "quote_volume",
                           "taker_buy_volume", "taker_buy_quote_volume"):  # fmt: skip
                assert raw[column].str.contains(DECIMAL_8DP.pattern).all(), column
            assert (raw["ignore"] == "0").all()
            bars = raw.with_columns(
                pl.col("open_time", "close_time", "count").cast(pl.Int64),
                pl.col("open", "high", "low", "close", "volume", "quote_volume",
                       "taker_buy_volume", "taker_buy_quote_volume").cast(pl.Decimal(38, 8)),
            )  # fmt: skip
            midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
            assert bars["open_time"].to_list() == [midnight + 60_000 * i for i in range(1440)]
            assert (bars["close_time"] == bars["open_time"] + 59_999).all()
            ok = bars.select(
                ohlc=(pl.col("low") <= pl.min_horizontal("open", "close"))
                & (pl.max_horizontal("open", "close") <= pl.col("high"))
                & (pl.col("low") > 0),
                volumes=(pl.col("volume") > 0)
                & (pl.col("taker_buy_volume") <= pl.col("volume"))
                & (pl.col("taker_buy_quote_volume") <= pl.col("quote_volume"))
                & (pl.col("quote_volume") >= pl.col("volume") * pl.col("low") - 1)
                & (pl.col("quote_volume") <= pl.col("volume") * pl.col("high")),
                count=pl.col("count") >= 1,
            )
            assert ok["ohlc"].all() and ok["volumes"].all() and ok["count"].all()
            # the walk continues across midnight: each day opens at the previous day's close
            if previous_close is not None:
                assert raw["open"][0] == previous_close
            previous_close = raw["close"][-1]


def test_generation_is_deterministic_per_seed(tmp_path: Path) -> None:
    write_synthetic_mirror(tmp_path / "a", INSTRUMENTS[:1], DAYS[:1], seed=3)
    write_synthetic_mirror(tmp_path / "b", INSTRUMENTS[:1], DAYS[:1], seed=3)
    write_synthetic_mirror(tmp_path / "c", INSTRUMENTS[:1], DAYS[:1], seed=4)
    rel = INSTRUMENTS[0].daily_klines_path("1m", DAYS[0])
    a, b, c = ((tmp_path / d / rel).read_bytes() for d in "abc")
    assert a == b and a != c


def test_other_interval_and_microsecond_option(tmp_path: Path) -> None:
    spot = Instrument("spot", "BTCUSDT")
    write_synthetic_mirror(
        tmp_path, [spot], [date(2024, 12, 31), date(2025, 1, 1)], interval="1h", timestamp_unit="auto"
    )
    _, ms = read_day(tmp_path, spot, date(2024, 12, 31), "1h")
    _, us = read_day(tmp_path, spot, date(2025, 1, 1), "1h")
    assert ms.height == us.height == 24
    assert len(ms["open_time"][0]) == 13 and len(us["open_time"][0]) == 16  # Binance's 2025 switch
    assert int(us["close_time"][0]) - int(us["open_time"][0]) == 3_600_000_000 - 1


def test_synthetic_mirror_is_servable_by_the_client(tmp_path: Path) -> None:
    write_synthetic_mirror(tmp_path, INSTRUMENTS[:1], DAYS[:1])
    client = ArchiveClient(tmp_path.as_uri())
    path = INSTRUMENTS[0].daily_klines_path("1m", DAYS[0])
    digest = parse_checksum(client.fetch(path + ".CHECKSUM"), expected_name=path)
    assert hashlib.sha256(client.fetch(path)).hexdigest() == digest


def test_monthly_files_hold_the_same_bars_as_the_daily_ones(tmp_path: Path) -> None:
    from lakehouse_assets.archive.listing import ArchiveListing
    from lakehouse_assets.archive.plan import monthly_klines_path

    spot = INSTRUMENTS[0]
    both, monthly_only = tmp_path / "both", tmp_path / "monthly"
    write_synthetic_mirror(both, [spot], DAYS, seed=7, periods=("daily", "monthly"))
    write_synthetic_mirror(monthly_only, [spot], DAYS, seed=7, periods=("monthly",))
    with ArchiveListing(both.as_uri()) as listing:
        months = listing.kline_files("spot", "BTCUSDT", "1m", "monthly")
    assert [(m.month, m.has_checksum) for m in months] == [("2024-02", True), ("2024-03", True)]
    for month, days in ((date(2024, 2, 1), DAYS[:2]), (date(2024, 3, 1), DAYS[2:])):
        zip_path = both / monthly_klines_path(spot, "1m", month)
        checksum = zip_path.with_name(zip_path.name + ".CHECKSUM").read_bytes()
        assert parse_checksum(checksum, expected_name=zip_path.name) == hashlib.sha256(zip_path.read_bytes()).hexdigest()
        with zipfile.ZipFile(zip_path) as archive:
            (info,) = archive.infolist()
            assert info.filename == zip_path.name.replace(".zip", ".csv")
            text = archive.read(info)
        assert text == b"".join(read_day(both, spot, day)[0] for day in days)  # the daily files' rows, in day order
        assert (monthly_only / monthly_klines_path(spot, "1m", month)).read_bytes() == zip_path.read_bytes()
    assert not (monthly_only / "data/spot/daily").exists()
