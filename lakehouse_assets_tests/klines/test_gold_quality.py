"""Pandera checks on the gold tables: pass on real data, name the rows of damaged copies."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest

from lakehouse_assets.klines.gold_quality import (
    FEATURE_CHECK_DESCRIPTIONS,
    LOOKBACK_REPORT_SCHEMA,
    RESAMPLED_CHECK_DESCRIPTIONS,
    lookback_report,
    validate_features,
    validate_resampled,
)
from lakehouse_assets.klines.indicators import compute_features
from lakehouse_assets.klines.resample import resample_klines
from lakehouse_assets_tests.samples import hourly, ohlcv_only, um_day


def outcomes(results) -> dict[str, bool]:
    return {o.name: o.passed for o in results}


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    return compute_features(hourly("2020-02"))


@pytest.fixture(scope="module")
def resampled() -> pl.DataFrame:
    return resample_klines(um_day(), ["5m", "1h", "1d"])


def test_real_features_pass_every_check(features: pl.DataFrame) -> None:
    results = validate_features(features)
    assert outcomes(results) == dict.fromkeys(FEATURE_CHECK_DESCRIPTIONS, True)
    assert all(o.failures.height == 0 for o in results)


def test_real_resampled_bars_pass_every_check(resampled: pl.DataFrame) -> None:
    assert outcomes(validate_resampled(resampled)) == dict.fromkeys(RESAMPLED_CHECK_DESCRIPTIONS, True)


@pytest.mark.parametrize(
    ("damage", "check", "rule"),
    [
        (
            pl.when(pl.col("open_time") == datetime(2020, 2, 10, 5, tzinfo=UTC))
            .then(100.5)
            .otherwise(pl.col("rsi_14"))
            .alias("rsi_14"),
            "rsi_range",
            "0 <= rsi_14 <= 100",
        ),
        (
            pl.when(pl.col("open_time") == datetime(2020, 2, 10, 5, tzinfo=UTC))
            .then(float("nan"))
            .otherwise(pl.col("atr_14"))
            .alias("atr_14"),
            "atr_non_negative",
            "atr_14 >= 0",
        ),
        (
            pl.when(pl.col("open_time") == datetime(2020, 2, 10, 5, tzinfo=UTC))
            .then(pl.col("bb_upper_20_2"))
            .otherwise(pl.col("bb_lower_20_2"))
            .alias("bb_lower_20_2"),
            "bollinger_order",
            "bb_lower <= bb_middle",
        ),
    ],
)
def test_damaged_values_fail_their_check_and_name_the_bar(
    features: pl.DataFrame, damage: pl.Expr, check: str, rule: str
) -> None:
    results = {o.name: o for o in validate_features(features.with_columns(damage))}
    failed = [name for name, o in results.items() if not o.passed]
    assert failed == [check]
    rows = results[check].failures
    assert rows.height == 1
    assert rows.row(0, named=True)["open_time"] == datetime(2020, 2, 10, 5, tzinfo=UTC)
    assert rows["rule"].to_list() == [rule]
    assert results[check].failures_by_day.rows() == [("spot", "BTCUSDT", datetime(2020, 2, 10).date(), 1)]


def test_duplicate_bar_and_wrong_columns_are_caught(features: pl.DataFrame) -> None:
    results = {o.name: o for o in validate_features(pl.concat([features, features.slice(100, 1)]))}
    assert not results["unique_bars"].passed and results["schema"].passed
    assert results["unique_bars"].failures["open_time"].unique().to_list() == [features["open_time"][100]]
    results = {
        o.name: o for o in validate_features(features.drop("atr_14").with_columns(pl.col("bars_24h").cast(pl.Int32)))
    }
    assert not results["schema"].passed
    assert any("bars_24h" in r for r in results["schema"].failures["rule"].to_list())


def test_resampled_coverage_rules(resampled: pl.DataFrame) -> None:
    lying = resampled.with_columns(
        is_complete=pl.when(pl.col("open_time") == datetime(2022, 4, 8, 3, tzinfo=UTC))
        .then(False)
        .otherwise(pl.col("is_complete"))
    )
    results = {o.name: o for o in validate_resampled(lying)}
    assert not results["bar_coverage"].passed
    assert set(results["bar_coverage"].failures["interval"]) == {"5m", "1h"}  # the 03:00 5m and 1h bars
    too_many = resampled.with_columns(
        minutes=pl.when(pl.col("interval") == "1d").then(1441).otherwise(pl.col("minutes"))
    )
    assert not outcomes(validate_resampled(too_many))["bar_coverage"]
    off_grid = resampled.with_columns(open_time=pl.col("open_time") + pl.duration(minutes=1))
    assert not outcomes(validate_resampled(off_grid))["time_grid"]


def test_unknown_volumes_pass_only_on_bars_with_rest_minutes() -> None:
    """A bar with a minute from an OHLCV-only REST source has null volume details (unknown): the rules
    check what is known on it; the same nulls on an all-archive bar still fail the schema check."""
    hole = (pl.col("open_time") >= datetime(2022, 4, 8, 10, 3, tzinfo=UTC)) & (
        pl.col("open_time") < datetime(2022, 4, 8, 10, 4, tzinfo=UTC)
    )
    bars = resample_klines(ohlcv_only(um_day(), hole), ["5m", "1h", "1d"])
    assert bars["quote_volume"].null_count() == 3
    assert all(outcomes(validate_resampled(bars)).values())
    as_archive = bars.with_columns(source=pl.lit("archive"))
    results = {o.name: o for o in validate_resampled(as_archive)}
    assert not results["schema"].passed and results["schema"].failures.height >= 3
    assert set(results["schema"].failures_by_day["market"]) == {"um"}


def test_lookback_report_names_each_day_of_marked_bars_and_the_history_they_lacked() -> None:
    """2021-06-10 absent from 3 months of real hourly bars: the 600 bars after it are listed per day (25 days of
    24 bars, each day's first bar 24 of its 600 history bars short); nothing absent, nothing listed."""
    bars = hourly("2021-05", "2021-06", "2021-07")
    absent = date(2021, 6, 10)
    marked = compute_features(bars.filter(pl.col("open_time").dt.date() != absent), absent_days=[absent])
    report = lookback_report(marked, {"1h": [absent]})
    assert dict(report.schema) == LOOKBACK_REPORT_SCHEMA
    assert report.height == 25 and report["incomplete_bars"].to_list() == [24] * 25
    assert report.row(0) == (
        "spot", "BTCUSDT", "1h", date(2021, 6, 11), 24,
        datetime(2021, 6, 11, tzinfo=UTC), datetime(2021, 6, 11, 23, tzinfo=UTC), 600, 24,
    )  # fmt: skip
    assert report["date"].to_list()[-1] == date(2021, 7, 5)
    assert set(report["max_history_bars_missing"]) == {24}
    assert all(outcomes(validate_features(marked)).values())  # marked bars are valid bars, only less warmed up

    complete = compute_features(bars)
    assert lookback_report(complete, {"1h": [absent]}).is_empty()  # the mark decides, not the absent list
    assert not outcomes(validate_features(complete.with_columns(lookback_complete=pl.lit(None, pl.Boolean))))[
        "schema"
    ]  # never null
