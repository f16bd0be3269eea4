"""Silver funding transforms and checks on the real USD-M BTCUSDT 2026-04 month and variants of it.

Variants (a dropped settlement, a relabelled interval, a row moved off the grid) are derived from the
real rows in the test; only the interval-inference cases for 4 h / 1 h schedules use small
hand-written frames, because no real file with those schedules is in the sample.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
import pytest

from lakehouse_assets.funding.quality import (
    DEFAULT_RATE_CAP,
    parse_rate_caps,
    validate_fundings_per_day,
    validate_silver_funding,
)
from lakehouse_assets.funding.schema import SILVER_FUNDING_SCHEMA, UTC_MS
from lakehouse_assets.funding.transforms import fill_intervals, slot_report, snap_events, within_days
from lakehouse_assets.instruments import Instrument
from lakehouse_assets_tests.samples import funding_month, utc

UM_BTC = Instrument("um", "BTCUSDT")
APRIL = [date(2026, 4, d) for d in range(1, 31)]


@pytest.fixture(scope="module")
def april() -> pl.DataFrame:
    return funding_month()


def outcomes(frame: pl.DataFrame, caps: str | None = None) -> dict[str, object]:
    return {o.name: o for o in validate_silver_funding(frame, parse_rate_caps(caps))}


# ------------------------------------------------------------------ interval inference (REST rows)


def test_spacing_recovers_the_archive_interval_for_every_real_row(april: pl.DataFrame) -> None:
    as_rest = april.with_columns(pl.lit(None, pl.Int64).alias("funding_interval_hours"), source=pl.lit("rest"))
    filled = fill_intervals(as_rest, fallback_hours=None)
    assert filled["funding_interval_hours"].to_list() == april["funding_interval_hours"].to_list() == [8] * 90


def test_a_missing_settlement_is_not_mistaken_for_a_longer_interval(april: pl.DataFrame) -> None:
    as_rest = april.with_columns(pl.lit(None, pl.Int64).alias("funding_interval_hours"))
    gap = as_rest.filter(pl.col("funding_time") != utc(2026, 4, 10, 8))
    filled = fill_intervals(gap, fallback_hours=None)
    assert set(filled["funding_interval_hours"]) == {8}  # 16:00 sits 16 h after 00:00 but 8 h before the next
    report = slot_report(filled, APRIL, [UM_BTC]).filter(pl.col("missing") > 0)
    assert report.select("date", "rows", "expected", "missing_slots").rows() == [(date(2026, 4, 10), 2, 3, "08:00")]


def frame_at(times: list[datetime], hours: list[int | None] | None = None, rate: float = 0.0001) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "market": "um",
            "symbol": "XUSDT",
            "funding_time": times,
            "funding_interval_hours": hours or [None] * len(times),
            "funding_rate": rate,
            "mark_price": None,
            "source": "rest",
            "calc_time": times,
        },
        schema=SILVER_FUNDING_SCHEMA,
    )


def test_4h_and_1h_schedules_and_a_switch_between_them() -> None:
    four = [utc(2026, 5, 1) + timedelta(hours=4 * k) for k in range(6)]
    one = [four[-1] + timedelta(hours=k) for k in range(1, 5)]
    filled = fill_intervals(frame_at(four + one), fallback_hours=None)
    # The switch row (the first 1 h settlement) reads 1 h: the smaller neighbour gap wins (see module doc).
    assert filled["funding_interval_hours"].to_list() == [4] * 5 + [1] + [1] * 4


def test_a_lone_settlement_takes_the_interval_fundinginfo_states() -> None:
    lone = frame_at([utc(2026, 5, 1, 4)])
    assert fill_intervals(lone, fallback_hours=4)["funding_interval_hours"].to_list() == [4]
    assert fill_intervals(lone, fallback_hours=None)["funding_interval_hours"].to_list() == [None]
    # A declared interval (archive rows) is never overwritten.
    declared = frame_at([utc(2026, 5, 1, 4)], hours=[2])
    assert fill_intervals(declared, fallback_hours=8)["funding_interval_hours"].to_list() == [2]


def test_within_days_keeps_only_the_days_slots(april: pl.DataFrame) -> None:
    day = within_days(april, [date(2026, 4, 15)])
    assert day["funding_time"].to_list() == [utc(2026, 4, 15, h) for h in (0, 8, 16)]
    assert day["funding_rate"].to_list() == [-0.00009313, -0.00005085, -0.00007151]


# ------------------------------------------------------------------ slot accounting


def test_the_real_month_is_complete_three_settlements_a_day(april: pl.DataFrame) -> None:
    report = slot_report(april, APRIL, [UM_BTC])
    assert report.height == 30
    assert set(report["rows"]) == {3} and set(report["expected"]) == {3} and set(report["missing"]) == {0}
    assert set(report["interval_hours"]) == {"8"}
    assert validate_fundings_per_day(report).passed


def test_a_changed_interval_changes_the_expected_count_and_lists_the_missing_slots(april: pl.DataFrame) -> None:
    # The file is relabelled to 4 h from 2026-04-21 while the settlements stay 8 h apart: the interval is read
    # from the data, so those days expect 6 settlements and the three 4 h slots in between are reported missing.
    relabelled = april.with_columns(
        funding_interval_hours=pl.when(pl.col("funding_time") >= utc(2026, 4, 21)).then(4).otherwise(8)
    )
    report = slot_report(relabelled, APRIL, [UM_BTC])
    by_day = {r["date"]: r for r in report.iter_rows(named=True)}
    assert (by_day[date(2026, 4, 19)]["expected"], by_day[date(2026, 4, 19)]["missing_slots"]) == (3, "")
    # The 2026-04-21 00:00 settlement declares 4 h, so 20:00 on the 20th was due too.
    assert (by_day[date(2026, 4, 20)]["expected"], by_day[date(2026, 4, 20)]["missing_slots"]) == (4, "20:00")
    assert by_day[date(2026, 4, 25)]["interval_hours"] == "4"
    assert (by_day[date(2026, 4, 25)]["expected"], by_day[date(2026, 4, 25)]["missing_slots"]) == (6, "04:00, 12:00, 20:00")
    outcome = validate_fundings_per_day(report)
    assert not outcome.passed
    assert outcome.failures["date"].to_list() == [date(2026, 4, d) for d in range(20, 31)]
    assert int(outcome.failures["missing"].sum()) == 1 + 10 * 3


def test_days_without_any_settlement_are_reported(april: pl.DataFrame) -> None:
    eth = Instrument("um", "ETHUSDT")
    first_week = [date(2026, 4, d) for d in range(1, 8)]
    report = slot_report(within_days(april, first_week[:2]), first_week, [UM_BTC, eth])
    btc = report.filter(pl.col("symbol") == "BTCUSDT")
    assert btc["missing"].to_list() == [0, 0, 3, 3, 3, 3, 3]  # the window end is closed on the last interval
    assert btc["missing_slots"][2] == "00:00, 08:00, 16:00"
    assert report.filter(pl.col("symbol") == "ETHUSDT")["missing_slots"].unique().to_list() == [
        "no funding events in the run window"
    ]
    assert not validate_fundings_per_day(report).passed


# ------------------------------------------------------------------ pandera checks


def test_the_real_month_passes_every_check(april: pl.DataFrame) -> None:
    results = outcomes(april)
    assert list(results) == ["funding_schema", "funding_unique_slots", "funding_interval_grid", "funding_rate_within_cap"]
    assert all(o.passed for o in results.values())


def test_a_row_off_the_grid_fails_the_grid_check_naming_it(april: pl.DataFrame) -> None:
    # The 2026-04-12 08:00 settlement moved to 08:20:00.004: it rounds to 08:00 but sits 20 min from it.
    moved = utc(2026, 4, 12, 8, 20) + timedelta(milliseconds=4)
    late = april.with_columns(
        calc_time=pl.when(pl.col("funding_time") == utc(2026, 4, 12, 8)).then(pl.lit(moved, UTC_MS)).otherwise("calc_time")
    )
    grid = outcomes(late)["funding_interval_grid"]
    assert not grid.passed
    assert grid.failures.select("date", "funding_time", "rule").rows() == [
        (date(2026, 4, 12), utc(2026, 4, 12, 8), "calc_time within 60 s of the slot")
    ]
    # A settlement snapped to 04:00 is on the hour but not on its declared 8 h grid.
    four = snap_events(
        pl.DataFrame({"calc_time_ms": [1775966400002], "funding_interval_hours": [8], "funding_rate": [0.0001], "mark_price": [None]},
                     schema={"calc_time_ms": pl.Int64, "funding_interval_hours": pl.Int64, "funding_rate": pl.Float64, "mark_price": pl.Float64}),
        instrument=UM_BTC, source="archive",
    )  # fmt: skip
    grid = outcomes(pl.concat([april, four]).sort("funding_time"))["funding_interval_grid"]
    assert grid.failures.select("funding_time", "rule").rows() == [(utc(2026, 4, 12, 4), "funding_time on the interval grid")]
    assert grid.failures_by_day.rows() == [("um", "BTCUSDT", date(2026, 4, 12), 1)]


def test_an_interval_that_does_not_divide_the_day_fails(april: pl.DataFrame) -> None:
    odd = april.with_columns(funding_interval_hours=pl.when(pl.col("funding_time") == utc(2026, 4, 3, 16)).then(5).otherwise(8))
    grid = outcomes(odd)["funding_interval_grid"]
    assert sorted(grid.failures["rule"]) == ["funding_interval_hours divides 24", "funding_time on the interval grid"]


def test_two_settlements_in_one_slot_fail_uniqueness(april: pl.DataFrame) -> None:
    twice = pl.concat([april, april.filter(pl.col("funding_time") == utc(2026, 4, 7, 16)).with_columns(funding_rate=pl.lit(0.0002))])
    unique = outcomes(twice)["funding_unique_slots"]
    assert not unique.passed
    assert set(unique.failures["funding_time"]) == {utc(2026, 4, 7, 16)}
    assert unique.failures_by_day.rows() == [("um", "BTCUSDT", date(2026, 4, 7), 2)]


def test_schema_check_catches_nulls_and_unknown_sources(april: pl.DataFrame) -> None:
    broken = april.with_columns(
        funding_rate=pl.when(pl.col("funding_time") == utc(2026, 4, 2, 8)).then(None).otherwise("funding_rate"),
        source=pl.when(pl.col("funding_time") == utc(2026, 4, 3, 8)).then(pl.lit("guess")).otherwise("source"),
    )
    schema = outcomes(broken)["funding_schema"]
    assert not schema.passed
    assert sorted(schema.failures["rule"]) == ["funding_rate is null", "source = 'guess' not allowed"]


def test_rate_cap_is_a_per_symbol_warning(april: pl.DataFrame) -> None:
    assert parse_rate_caps(None).cap("um", "BTCUSDT") == DEFAULT_RATE_CAP
    caps = parse_rate_caps("0.02, um:BTCUSDT=0.0001")
    assert (caps.cap("um", "BTCUSDT"), caps.cap("cm", "BTCUSD_PERP")) == (0.0001, 0.02)
    capped = outcomes(april, "um:BTCUSDT=0.0001")["funding_rate_within_cap"]
    # The two real April settlements beyond +/-0.01 %.
    assert not capped.passed
    assert capped.failures.select("funding_time", "funding_rate").rows() == [
        (utc(2026, 4, 17, 16), -0.00010789),
        (utc(2026, 4, 19, 16), -0.00012276),
    ]
    assert outcomes(april, "um:ETHUSDT=0.0001")["funding_rate_within_cap"].passed  # other symbols' caps don't apply
    with pytest.raises(ValueError, match="not a number"):
        parse_rate_caps("um:BTCUSDT=high")
    with pytest.raises(ValueError, match="must be > 0"):
        parse_rate_caps("-0.1")
