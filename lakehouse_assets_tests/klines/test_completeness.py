"""Completeness of real parsed days, and of copies with bars removed in the test."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
import pytest

from lakehouse_assets.instruments import Instrument
from lakehouse_assets.klines.completeness import (
    COMPLETENESS_SCHEMA,
    completeness_report,
    missing_ranges,
)
from lakehouse_assets_tests.samples import real_day, real_days, utc

SPOT_BTC = Instrument("spot", "BTCUSDT")
UM_BTC = Instrument("um", "BTCUSDT")
CM_BTC = Instrument("cm", "BTCUSD_PERP")
MINUTE = timedelta(minutes=1)


@pytest.fixture(scope="module")
def spot_days() -> pl.DataFrame:
    return real_days(SPOT_BTC, [date(2020, 1, d) for d in (1, 2, 3)])


def drop_minutes(frame: pl.DataFrame, *moments: datetime) -> pl.DataFrame:
    return frame.filter(~pl.col("open_time").is_in(list(moments)))


def minutes(first: datetime, count: int) -> list[datetime]:
    return [first + k * MINUTE for k in range(count)]


# ---------------------------------------------------------------------------------------------
# missing_ranges


def test_complete_real_day_has_no_missing_ranges(spot_days: pl.DataFrame) -> None:
    assert missing_ranges(spot_days["open_time"], utc(2020, 1, 1), utc(2020, 1, 4), MINUTE) == []


def test_hole_in_the_middle(spot_days: pl.DataFrame) -> None:
    frame = drop_minutes(spot_days, *minutes(utc(2020, 1, 1, 3), 15))
    assert missing_ranges(frame["open_time"], utc(2020, 1, 1), utc(2020, 1, 2), MINUTE) == [
        (utc(2020, 1, 1, 3, 0), utc(2020, 1, 1, 3, 14))
    ]


def test_holes_at_both_edges_and_single_bars(spot_days: pl.DataFrame) -> None:
    frame = drop_minutes(
        spot_days,
        utc(2020, 1, 2, 0, 0), utc(2020, 1, 2, 0, 1),
        utc(2020, 1, 2, 12, 30),
        utc(2020, 1, 2, 23, 59),
    )  # fmt: skip
    assert missing_ranges(frame["open_time"], utc(2020, 1, 2), utc(2020, 1, 3), MINUTE) == [
        (utc(2020, 1, 2, 0, 0), utc(2020, 1, 2, 0, 1)),
        (utc(2020, 1, 2, 12, 30), utc(2020, 1, 2, 12, 30)),
        (utc(2020, 1, 2, 23, 59), utc(2020, 1, 2, 23, 59)),
    ]


def test_window_is_half_open_and_other_days_do_not_count(spot_days: pl.DataFrame) -> None:
    day1 = spot_days.filter(pl.col("open_time") < utc(2020, 1, 2))
    assert missing_ranges(
        day1["open_time"], utc(2020, 1, 1, 23, 58), utc(2020, 1, 2, 0, 2), MINUTE
    ) == [(utc(2020, 1, 2, 0, 0), utc(2020, 1, 2, 0, 1))]


def test_no_data_is_one_hole_and_empty_window_is_none() -> None:
    empty = pl.Series("open_time", [], dtype=pl.Datetime("ms", "UTC"))
    assert missing_ranges(empty, utc(2020, 1, 1), utc(2020, 1, 2), MINUTE) == [
        (utc(2020, 1, 1, 0, 0), utc(2020, 1, 1, 23, 59))
    ]
    assert missing_ranges(empty, utc(2020, 1, 2), utc(2020, 1, 1), MINUTE) == []


def test_off_grid_times_do_not_fill_a_slot(spot_days: pl.DataFrame) -> None:
    frame = spot_days.with_columns(
        pl.when(pl.col("open_time") == utc(2020, 1, 1, 5))
        .then(pl.col("open_time") + timedelta(seconds=30))
        .otherwise(pl.col("open_time"))
        .alias("open_time")
    )
    assert missing_ranges(frame["open_time"], utc(2020, 1, 1), utc(2020, 1, 2), MINUTE) == [
        (utc(2020, 1, 1, 5), utc(2020, 1, 1, 5))
    ]


def test_naive_datetimes_are_utc_and_stay_naive(spot_days: pl.DataFrame) -> None:
    frame = drop_minutes(spot_days, utc(2020, 1, 1, 7, 7))
    naive = frame["open_time"].dt.replace_time_zone(None)
    expected = [(datetime(2020, 1, 1, 7, 7), datetime(2020, 1, 1, 7, 7))]
    assert missing_ranges(naive, datetime(2020, 1, 1), datetime(2020, 1, 2), MINUTE) == expected
    assert (
        missing_ranges(frame["open_time"], datetime(2020, 1, 1), datetime(2020, 1, 2), MINUTE)
        == expected
    )


def test_hourly_microsecond_file_is_complete() -> None:
    frame = real_day(SPOT_BTC, date(2026, 5, 8), "1h")
    step = timedelta(hours=1)
    assert missing_ranges(frame["open_time"], utc(2026, 5, 8), utc(2026, 5, 9), step) == []
    assert missing_ranges(frame["open_time"][1:], utc(2026, 5, 8), utc(2026, 5, 9), step) == [
        (utc(2026, 5, 8, 0), utc(2026, 5, 8, 0))
    ]


def test_bad_arguments() -> None:
    series = pl.Series([1, 2])
    with pytest.raises(TypeError, match="Datetime"):
        missing_ranges(series, utc(2020, 1, 1), utc(2020, 1, 2), MINUTE)
    empty = pl.Series([], dtype=pl.Datetime("ms", "UTC"))
    with pytest.raises(ValueError, match="positive"):
        missing_ranges(empty, utc(2020, 1, 1), utc(2020, 1, 2), timedelta(0))


# ---------------------------------------------------------------------------------------------
# completeness_report


def test_report_on_complete_real_days(spot_days: pl.DataFrame) -> None:
    days = [date(2020, 1, d) for d in (1, 2, 3)]
    report = completeness_report(spot_days, days=days, instruments=[SPOT_BTC])
    assert report.schema == pl.Schema(COMPLETENESS_SCHEMA)
    assert report.to_dicts() == [
        {
            "market": "spot",
            "symbol": "BTCUSDT",
            "date": day,
            "rows": 1440,
            "expected": 1440,
            "completeness": 1.0,
            "missing_minutes": 0,
            "missing_ranges": "",
            "status": "expected",
            "not_trading": "",
        }
        for day in days
    ]


def test_report_lists_holes_and_zero_row_combinations(spot_days: pl.DataFrame) -> None:
    frame = drop_minutes(spot_days, *minutes(utc(2020, 1, 2, 3), 15), utc(2020, 1, 2, 23, 59))
    um = real_day(UM_BTC, date(2022, 5, 4), "1m")
    report = completeness_report(
        pl.concat([frame, um]),
        days=[date(2020, 1, 2), date(2020, 1, 4)],
        instruments=[SPOT_BTC, CM_BTC],
    )
    rows = report.select(
        "market", "symbol", "date", "rows", "missing_minutes", "missing_ranges"
    ).rows()
    assert rows == [
        ("spot", "BTCUSDT", date(2020, 1, 2), 1424, 16, "03:00–03:14 (15), 23:59 (1)"),
        ("spot", "BTCUSDT", date(2020, 1, 4), 0, 1440, "00:00–23:59 (1440)"),
        ("cm", "BTCUSD_PERP", date(2020, 1, 2), 0, 1440, "00:00–23:59 (1440)"),
        ("cm", "BTCUSD_PERP", date(2020, 1, 4), 0, 1440, "00:00–23:59 (1440)"),
    ]
    assert report["completeness"][0] == pytest.approx(1424 / 1440)
    assert report["completeness"][1:].to_list() == [0.0, 0.0, 0.0]
    assert report["expected"].unique().to_list() == [1440]


def test_report_caps_the_range_list(spot_days: pl.DataFrame) -> None:
    every_other = minutes(utc(2020, 1, 1, 10), 50)[::2]  # 25 single-minute holes
    report = completeness_report(
        drop_minutes(spot_days, *every_other), days=[date(2020, 1, 1)], instruments=[SPOT_BTC]
    )
    text = report["missing_ranges"][0]
    assert text.startswith("10:00 (1), 10:02 (1), ")
    assert text.endswith("10:38 (1), … and 5 more")
    assert text.count("(1)") == 20
    assert report["missing_minutes"][0] == 25


def test_report_counts_distinct_bars_not_rows(spot_days: pl.DataFrame) -> None:
    day1 = spot_days.filter(pl.col("open_time") < utc(2020, 1, 2))
    doubled = pl.concat([drop_minutes(day1, utc(2020, 1, 1, 6)), day1.head(1)])
    report = completeness_report(doubled, days=[date(2020, 1, 1)], instruments=[SPOT_BTC])
    assert report.row(0, named=True) | {"completeness": None} == {
        "market": "spot", "symbol": "BTCUSDT", "date": date(2020, 1, 1), "rows": 1440,
        "expected": 1440, "completeness": None, "missing_minutes": 1,
        "missing_ranges": "06:00 (1)", "status": "expected", "not_trading": "",
    }  # fmt: skip


def test_report_for_hourly_interval_ignores_other_intervals(spot_days: pl.DataFrame) -> None:
    hourly = real_day(SPOT_BTC, date(2026, 5, 8), "1h")
    mixed = pl.concat([hourly.slice(0, 20), spot_days])
    report = completeness_report(
        mixed, days=[date(2026, 5, 8), date(2020, 1, 1)], instruments=[SPOT_BTC], interval="1h"
    )
    assert report.select(
        "date", "rows", "expected", "missing_minutes", "missing_ranges"
    ).rows() == [
        (date(2026, 5, 8), 20, 24, 4, "20:00–23:00 (4)"),
        (date(2020, 1, 1), 0, 24, 24, "00:00–23:00 (24)"),
    ]


def test_report_on_empty_frame() -> None:
    from lakehouse_assets.klines.schema import empty_klines

    report = completeness_report(
        empty_klines(), days=[date(2024, 1, 1)], instruments=[UM_BTC, SPOT_BTC]
    )
    assert report.select("market", "rows", "completeness").rows() == [
        ("um", 0, 0.0),
        ("spot", 0, 0.0),
    ]
    assert completeness_report(empty_klines(), days=[], instruments=[UM_BTC]).is_empty()
