"""Monthly 1m files: parsed once, cut into days, and compared with the daily files of the same days.

There is no real Binance monthly 1m file in the bundled sample (PROVENANCE.md: the real monthly kline
files are 1h and 5m). The monthly zips here are built by ``lakehouse_dev/fixtures/monthly_from_daily.py``
from Binance's real daily 1m files of the same month, with a self-computed CHECKSUM; so every expected
value below is a fact of those real daily files.
"""

from __future__ import annotations

import pickle
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from lakehouse_assets.klines.agreement import compare_day
from lakehouse_assets.klines.parse import (
    ArchiveFileError,
    ConflictingRowsError,
    parse_klines_month_zip,
    parse_klines_zip,
    split_days,
)
from lakehouse_assets_tests.samples import CM, SPOT, parse_real, rewrite_zip_csv, utc
from lakehouse_dev.fixtures.monthly_from_daily import MONTHLY_NOTE_NAME, build_monthly_from_daily

JANUARY = [date(2020, 1, 1), date(2020, 1, 2), date(2020, 1, 3)]


def month_of(mirror: Path, instrument, month: str, contract_size: float | None = None):
    path, days = build_monthly_from_daily(mirror, instrument, month)
    parsed = parse_klines_month_zip(
        (mirror / path).read_bytes(), instrument=instrument, interval="1m", month=days[0].replace(day=1),
        file_name=path.rsplit("/", 1)[-1], contract_size=contract_size,
    )  # fmt: skip
    return path, days, parsed


def test_a_monthly_file_parses_once_into_the_days_of_the_daily_files(mirror: Path) -> None:
    path, days, parsed = month_of(mirror, SPOT, "2020-01")
    assert path == "data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01.zip"
    assert days == JANUARY  # the sample's three real days of January 2020, not the whole month
    assert (parsed.rows_in_file, parsed.had_header, parsed.time_unit, parsed.duplicates_dropped) == (4320, False, "ms", 0)
    by_day = split_days(parsed.frame)
    assert sorted(by_day) == JANUARY
    for day in JANUARY:
        assert by_day[day].equals(parse_real(SPOT, "1m", day).frame), day
    noon = by_day[date(2020, 1, 2)].filter(pl.col("open_time") == utc(2020, 1, 2, 12)).row(0, named=True)
    assert (noon["open"], noon["high"], noon["low"], noon["close"], noon["trade_count"]) == (
        7139.73, 7148.19, 7139.03, 7147.40, 338,
    )  # fmt: skip
    note = (mirror / MONTHLY_NOTE_NAME).read_text()
    assert "NOT published by Binance" in note and "self-computed" in note and path in note


def test_a_coinm_month_with_a_header_keeps_one_header_and_its_contract_sizes(mirror: Path) -> None:
    _, days, parsed = month_of(mirror, CM, "2022-10", contract_size=100.0)
    assert days == [date(2022, 10, 24), date(2022, 10, 25)]
    assert (parsed.rows_in_file, parsed.had_header) == (2880, True)  # both daily files have a header; one is kept
    first = parsed.frame.row(0, named=True)
    assert (first["contract_volume"], first["volume"], first["quote_volume"]) == (19431, 99.33183109, 19431 * 100.0)
    daily = parse_klines_zip(
        (mirror / CM.daily_klines_path("1m", days[1])).read_bytes(), instrument=CM, interval="1m", day=days[1],
        file_name="BTCUSD_PERP-1m-2022-10-25.zip", contract_size=100.0,
    )  # fmt: skip
    assert split_days(parsed.frame)[days[1]].equals(daily.frame)


def test_a_row_from_another_month_names_the_file_the_month_and_the_line(mirror: Path) -> None:
    path, _ = build_monthly_from_daily(mirror, SPOT, "2020-01")
    # the last row moved to February: the file no longer belongs to one month
    rewrite_zip_csv(mirror / path, lambda csv: csv.replace(b"1578095940000,", b"1580601540000,", 1))
    with pytest.raises(ArchiveFileError) as raised:
        parse_klines_month_zip((mirror / path).read_bytes(), instrument=SPOT, interval="1m", month=date(2020, 1, 1),
                               file_name="BTCUSDT-1m-2020-01.zip")  # fmt: skip
    message = str(raised.value)
    assert message.startswith("BTCUSDT-1m-2020-01.zip (spot:BTCUSDT, 2020-01): line 4320: open_time 2020-02-01 23:59:00")
    assert "outside 2020-01 UTC" in message and "another month" in message
    assert (raised.value.day, raised.value.period) == (None, "2020-01")
    again = pickle.loads(pickle.dumps(raised.value))
    assert str(again) == message


def test_conflicting_rows_in_a_month_keep_the_month_after_pickling(mirror: Path) -> None:
    path, _ = build_monthly_from_daily(mirror, SPOT, "2020-01")

    def conflict(csv: bytes) -> bytes:
        lines = csv.split(b"\n")
        fields = lines[1].split(b",")
        fields[4] = b"9999.00000000"  # a second 00:01 bar with another close
        return b"\n".join([*lines[:2], b",".join(fields), *lines[2:]])

    rewrite_zip_csv(mirror / path, conflict)
    with pytest.raises(ConflictingRowsError) as raised:
        parse_klines_month_zip((mirror / path).read_bytes(), instrument=SPOT, interval="1m", month=date(2020, 1, 1),
                               file_name="BTCUSDT-1m-2020-01.zip")  # fmt: skip
    assert str(raised.value).startswith("BTCUSDT-1m-2020-01.zip (spot:BTCUSDT, 2020-01): conflicting rows")
    assert pickle.loads(pickle.dumps(raised.value)).period == "2020-01"


def test_compare_day_names_missing_extra_and_differing_bars() -> None:
    daily = parse_real(SPOT, "1m", date(2020, 1, 2)).frame
    assert compare_day(daily, daily).disagreement is None
    monthly = (
        daily.filter((pl.col("open_time") < utc(2020, 1, 2, 10)) | (pl.col("open_time") >= utc(2020, 1, 2, 11)))
        .with_columns(close=pl.when(pl.col("open_time") == utc(2020, 1, 2, 12)).then(7150.0).otherwise(pl.col("close")))
    )
    outcome = compare_day(daily, monthly)
    assert (outcome.daily_bars, outcome.monthly_bars, outcome.only_in_daily, outcome.only_in_monthly,
            outcome.differing_bars) == (1440, 1380, 60, 0, 1)  # fmt: skip
    assert outcome.disagreement == (
        "the monthly file lacks 60 of the daily file's 1440 bars (first 2020-01-02 10:00 UTC); "
        "1 bars differ (first 2020-01-02 12:00 UTC: close 7147.4 daily vs 7150.0 monthly)"
    )
    reverse = compare_day(monthly, daily)
    assert reverse.only_in_monthly == 60 and "has 60 bars the daily file lacks" in (reverse.disagreement or "")
