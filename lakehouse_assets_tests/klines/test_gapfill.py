"""Gap detection, fetch planning, merging and reporting on real Binance days (no Dagster, no network)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
import pytest

from lakehouse_assets.klines.gapfill import (
    KLINE_GAPS_SCHEMA,
    REASON_DISABLED,
    Hole,
    closed_until,
    day_window,
    fill_gaps,
    find_holes,
    merge_archive_and_rest,
    plan_fetch_windows,
    validation_view,
)
from lakehouse_assets.klines.quality import validate_silver_klines
from lakehouse_assets.klines.rest import ohlcv_rows_to_silver
from lakehouse_assets_tests.samples import SPOT, UM, real_day, spot_1h_february_2020, utc, without

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


LATER = utc(2030, 1, 1)


# ---------------------------------------------------------------------------------------------
# the clock


def test_closed_until_excludes_the_forming_bar() -> None:
    assert closed_until(utc(2020, 1, 2, 12, 0, 30), MINUTE) == utc(2020, 1, 2, 12, 0)
    # exactly on the boundary the 11:59 bar has just closed (open_time + interval == now)
    assert closed_until(utc(2020, 1, 2, 12, 0), MINUTE) == utc(2020, 1, 2, 12, 0)
    assert closed_until(utc(2020, 1, 2, 12, 59, 59), HOUR) == utc(2020, 1, 2, 12, 0)
    # naive datetimes are UTC
    assert closed_until(datetime(2020, 1, 2, 12, 0, 30), MINUTE) == utc(2020, 1, 2, 12, 0)


def test_day_window_for_past_running_and_future_days() -> None:
    now = utc(2020, 1, 2, 12, 0, 30)
    assert day_window(date(2020, 1, 1), MINUTE, now) == (utc(2020, 1, 1), utc(2020, 1, 2))
    assert day_window(date(2020, 1, 2), MINUTE, now) == (utc(2020, 1, 2), utc(2020, 1, 2, 12, 0))
    assert day_window(date(2020, 1, 3), MINUTE, now) == (utc(2020, 1, 3), utc(2020, 1, 3))


# ---------------------------------------------------------------------------------------------
# holes


def test_complete_real_day_has_no_holes() -> None:
    day = real_day(SPOT, date(2020, 1, 1))
    assert find_holes(day, instruments=[SPOT], days=[date(2020, 1, 1)], interval="1m", now=LATER) == []


def test_holes_of_a_real_day_with_minutes_removed_and_a_day_absent() -> None:
    day = real_day(SPOT, date(2020, 1, 1))
    damaged = without(without(day, utc(2020, 1, 1, 10), utc(2020, 1, 1, 12)), utc(2020, 1, 1, 23, 59), utc(2020, 1, 2))
    holes = find_holes(damaged, instruments=[SPOT], days=[date(2020, 1, 1), date(2020, 1, 2)], interval="1m", now=LATER)
    assert holes == [
        Hole(SPOT, utc(2020, 1, 1, 10), utc(2020, 1, 1, 12)),
        Hole(SPOT, utc(2020, 1, 1, 23, 59), utc(2020, 1, 2)),
        Hole(SPOT, utc(2020, 1, 2), utc(2020, 1, 3)),  # no rows at all that day
    ]
    assert [h.bars(MINUTE) for h in holes] == [120, 1, 1440]


def test_real_maintenance_gap_in_1h_bars() -> None:
    day = spot_1h_february_2020()
    assert day.height == 19
    holes = find_holes(day, instruments=[SPOT], days=[date(2020, 2, 19)], interval="1h", now=LATER)
    assert holes == [Hole(SPOT, utc(2020, 2, 19, 12), utc(2020, 2, 19, 17))]
    assert holes[0].bars(HOUR) == 5


def test_running_day_expects_only_closed_bars() -> None:
    day = real_day(SPOT, date(2020, 1, 1))
    now = utc(2020, 1, 1, 12, 0, 30)
    # the archive holds the whole day, but "now" is noon: nothing is missing, nothing after noon expected
    assert find_holes(day, instruments=[SPOT], days=[date(2020, 1, 1)], interval="1m", now=now) == []
    morning = without(day, utc(2020, 1, 1, 11, 30), utc(2020, 1, 2))
    assert find_holes(morning, instruments=[SPOT], days=[date(2020, 1, 1)], interval="1m", now=now) == [
        Hole(SPOT, utc(2020, 1, 1, 11, 30), utc(2020, 1, 1, 12))
    ]


# ---------------------------------------------------------------------------------------------
# fetch planning


def test_scattered_small_holes_share_one_request() -> None:
    holes = [
        Hole(SPOT, utc(2020, 1, 1, 0, 5), utc(2020, 1, 1, 0, 6)),
        Hole(SPOT, utc(2020, 1, 1, 3, 0), utc(2020, 1, 1, 3, 10)),
        Hole(SPOT, utc(2020, 1, 1, 16, 39), utc(2020, 1, 1, 16, 40)),
    ]
    (window,) = plan_fetch_windows(holes, interval="1m", page_limit=1000)
    assert (window.start, window.end) == (utc(2020, 1, 1, 0, 5), utc(2020, 1, 1, 16, 40))
    assert window.holes == tuple(holes)


def test_far_apart_holes_are_not_merged_when_that_costs_requests() -> None:
    holes = [
        Hole(SPOT, utc(2020, 1, 1, 0, 0), utc(2020, 1, 1, 0, 10)),
        Hole(SPOT, utc(2020, 1, 1, 12, 0), utc(2020, 1, 1, 12, 10)),
    ]
    windows = plan_fetch_windows(holes, interval="1m", page_limit=100)  # 730 bars apart = 8 pages > 2
    assert [(w.start, w.end) for w in windows] == [(h.start, h.end) for h in holes]


def test_consecutive_missing_days_become_one_paginated_window_and_instruments_never_mix() -> None:
    days = [Hole(SPOT, utc(2020, 1, d), utc(2020, 1, d + 1)) for d in (1, 2, 3)]
    other = Hole(UM, utc(2020, 1, 1, 5), utc(2020, 1, 1, 6))
    windows = plan_fetch_windows([*days, other], interval="1m", page_limit=1000)
    assert [(w.instrument, w.start, w.end) for w in windows] == [
        (SPOT, utc(2020, 1, 1), utc(2020, 1, 4)),  # 4320 bars: 5 pages instead of 2+2+2
        (UM, utc(2020, 1, 1, 5), utc(2020, 1, 1, 6)),
    ]
    with pytest.raises(ValueError, match="page_limit"):
        plan_fetch_windows(days, interval="1m", page_limit=0)


# ---------------------------------------------------------------------------------------------
# merging


def test_archive_wins_where_both_sources_have_a_bar_and_rest_fills_the_rest() -> None:
    full = real_day(SPOT, date(2020, 1, 1))
    archive = without(full, utc(2020, 1, 1, 10), utc(2020, 1, 1, 12))
    rest = full.filter(pl.col("open_time") >= utc(2020, 1, 1, 9)).filter(pl.col("open_time") < utc(2020, 1, 1, 13))
    merged = merge_archive_and_rest(archive, rest, days=[date(2020, 1, 1)], interval="1m", now=LATER)
    assert merged.height == 1440
    assert merged.drop("source").equals(full.drop("source"))
    rest_minutes = merged.filter(pl.col("source") == "rest")["open_time"]
    assert rest_minutes.min() == utc(2020, 1, 1, 10) and rest_minutes.max() == utc(2020, 1, 1, 11, 59)
    assert rest_minutes.len() == 120  # 09:00-09:59 and 12:00-12:59 came from both: the archive rows stayed


def test_forming_candle_and_other_days_are_never_stored() -> None:
    full = real_day(SPOT, date(2020, 1, 1))
    merged = merge_archive_and_rest(
        full.head(0), full, days=[date(2020, 1, 1)], interval="1m", now=utc(2020, 1, 1, 12, 0, 30)
    )
    assert merged.height == 720
    assert merged["open_time"].max() == utc(2020, 1, 1, 11, 59)  # 12:00 is still forming at 12:00:30
    next_day = real_day(SPOT, date(2020, 1, 2))
    merged = merge_archive_and_rest(full, next_day, days=[date(2020, 1, 1)], interval="1m", now=LATER)
    assert merged.height == 1440 and set(merged["source"]) == {"archive"}


def test_fill_without_rest_reports_every_hole_with_the_reason() -> None:
    full = real_day(SPOT, date(2020, 1, 1))
    archive = without(full, utc(2020, 1, 1, 10), utc(2020, 1, 1, 12))
    result = fill_gaps(archive, instruments=[SPOT], days=[date(2020, 1, 1)], interval="1m", now=LATER,
                       fetcher=None, page_limit=1000)
    assert result.frame.height == 1320 and result.outcomes == []
    assert result.gaps.schema == KLINE_GAPS_SCHEMA
    assert result.gaps.rows() == [
        ("spot", "BTCUSDT", "1m", utc(2020, 1, 1, 10), utc(2020, 1, 1, 12), 120, 120, REASON_DISABLED)
    ]
    report = result.report.row(0, named=True)
    assert report == {
        "date": date(2020, 1, 1), "market": "spot", "symbol": "BTCUSDT", "expected": 1440, "rows": 1320,
        "archive_rows": 1320, "rest_rows": 0, "missing": 120, "gaps": 1, "completeness": 1 - 120 / 1440,
        "status": "expected", "not_trading": 0,
    }


# ---------------------------------------------------------------------------------------------
# validation of OHLCV-only REST rows


def test_ohlcv_only_rows_keep_unknown_volumes_null_but_pass_the_rules_on_what_is_known() -> None:
    full = real_day(SPOT, date(2020, 1, 1))
    rows = [[int(t.timestamp() * 1000), o, h, low, c, v] for t, o, h, low, c, v in
            full.select("open_time", "open", "high", "low", "close", "volume").head(5).iter_rows()]
    rest = ohlcv_rows_to_silver(rows, instrument=SPOT, interval="1m")
    assert rest["quote_volume"].null_count() == 5 and rest["trade_count"].null_count() == 5
    merged = merge_archive_and_rest(full.tail(1435), rest, days=[date(2020, 1, 1)], interval="1m", now=LATER)
    assert merged.height == 1440
    assert all(o.passed for o in validate_silver_klines(validation_view(merged)))
    # a null in an archive row is never excused
    broken = merged.with_columns(
        quote_volume=pl.when(pl.col("open_time") == utc(2020, 1, 1, 12)).then(None).otherwise(pl.col("quote_volume"))
    )
    schema = validate_silver_klines(validation_view(broken))[0]
    assert not schema.passed and schema.failures["rule"].to_list() == ["quote_volume is null"]
    # and the known values are still checked: an inverted candle in a REST row fails
    inverted = merged.with_columns(
        high=pl.when(pl.col("open_time") == utc(2020, 1, 1, 0, 2)).then(pl.col("low") / 2).otherwise(pl.col("high"))
    )
    assert not validate_silver_klines(validation_view(inverted))[1].passed


def test_the_bar_cut_short_by_a_real_halt_passes_the_silver_rules() -> None:
    """Binance's 2020-02-19 maintenance began at 11:35:32.286: the 11:00 bar closed then, not at 11:59:59.999."""
    day = spot_1h_february_2020()
    halted = day.filter(pl.col("open_time") == utc(2020, 2, 19, 11)).row(0, named=True)
    assert halted["close_time"] == utc(2020, 2, 19, 11, 35, 32, 286000)
    assert all(o.passed for o in validate_silver_klines(day))
    # a close_time at or before open_time is still refused
    broken = day.with_columns(
        close_time=pl.when(pl.col("open_time") == utc(2020, 2, 19, 11)).then(pl.col("open_time")).otherwise("close_time")
    )
    grid = validate_silver_klines(broken)[3]
    assert not grid.passed and grid.failures["open_time"].to_list() == [utc(2020, 2, 19, 11)]
