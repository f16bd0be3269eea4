"""gold/funding_features through Dagster, the funding archive sensor and the daily schedule.

The sample has no USD-M klines for 2026-04 (its funding month), so the bars gold/funding_features
joins onto are written here as gold/features *keys only* (market, symbol, interval, open_time,
close_time: no price at all); the funding side is the real month, run through bronze and silver.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse_assets.defs.funding import automation as funding_automation
from lakehouse_assets.funding.features import add_funding_features
from lakehouse_assets_tests.harness import (
    check_outcomes,
    failure_text,
    project_defs,
    read_table,
    resources,
    run_funding,
    run_funding_features,
    write_bar_keys,
)
from lakehouse_assets_tests.samples import FUNDING_DIR, MONTH_ZIP, rewrite_zip_csv, utc


def test_funding_features_by_day_equal_one_range_and_the_full_month_computation(tmp_path, sample_mirror, instance):
    lake = tmp_path / "lake"
    bars = write_bar_keys(lake, date(2026, 4, 1), date(2026, 4, 15))
    res = resources(str(lake), sample_mirror.as_uri(), "spot:BTCUSDT,um:BTCUSDT")
    assert run_funding(res, "2026-04-01", "2026-04-15", instance).success

    # one day alone (its 8-day lookback read from silver) ...
    single = run_funding_features(res, "2026-04-10", "2026-04-10", instance)
    assert single.success and check_outcomes(single) == {"funding_no_lookahead": True, "funding_coverage": True}
    day10 = read_table(lake, "gold/funding_features").drop("date")
    # ... then the whole range in one run, which rewrites 2026-04-10 with the same values
    ranged = run_funding_features(res, "2026-04-01", "2026-04-15", instance)
    assert ranged.success
    everything = read_table(lake, "gold/funding_features").drop("date").sort("interval", "open_time")
    assert everything.filter(pl.col("open_time").dt.date() == date(2026, 4, 10)).equals(day10.sort("interval", "open_time"))

    # equal to one computation over the whole month of settlements
    silver = read_table(lake, "silver/funding_rates").drop("date")
    reference = add_funding_features(bars.filter(pl.col("market") == "um"), silver).sort("interval", "open_time")
    assert everything.equals(reference.select(everything.columns))
    assert set(everything["market"]) == {"um"}  # spot bars have no funding table rows
    assert everything.height == 15 * 24 + 15

    row = everything.filter((pl.col("interval") == "1h") & (pl.col("open_time") == utc(2026, 4, 10, 9))).row(0, named=True)
    assert (row["funding_rate"], row["last_funding_time"], row["next_funding_time"]) == (0.00002458, utc(2026, 4, 10, 8), utc(2026, 4, 10, 16))
    assert row["funding_rate_annualized"] == pytest.approx(0.00002458 * 1095, rel=1e-12)
    assert row["funding_events_7d"] == 21

    # 2026-04-01 has no March funding to look back on: still computed, and the WARN says what is missing
    (coverage,) = [e for e in ranged.get_asset_check_evaluations() if e.check_name == "funding_coverage"]
    assert not coverage.passed
    assert coverage.metadata["lookback_days_missing"].value == ", ".join(f"2026-03-{d:02d}" for d in range(24, 32))
    first_day = everything.filter(pl.col("open_time") == utc(2026, 4, 1)).sort("interval")
    assert first_day["funding_events_7d"].to_list() == [3, 1]  # 1d bar closes after all three settlements, 1h after one


def test_gold_funding_refuses_days_whose_silver_funding_is_missing(tmp_path, sample_mirror, instance):
    lake = tmp_path / "lake"
    write_bar_keys(lake, date(2026, 4, 20), date(2026, 4, 20))
    res = resources(str(lake), sample_mirror.as_uri(), "um:BTCUSDT")
    result = run_funding_features(res, "2026-04-20", "2026-04-20", instance, raise_on_error=False)
    assert not result.success
    assert "silver/funding_rates is not materialized for 1 day(s) of this run: 2026-04-20" in failure_text(result)


# --------------------------------------------------------------------------- sensor and schedule


def sensor_tick(mirror: Path, symbols: str, cursor: str | None = None):
    res = resources("unused-lake", mirror.as_uri(), symbols)
    sensor = funding_automation.funding_archive_sensor
    with dg.build_sensor_context(cursor=cursor, resources=res, definitions=project_defs(res)) as context:
        return sensor.evaluate_tick(context)


def test_sensor_requests_the_month_when_it_lands_and_again_when_republished(mirror, clock):
    clock.set(utc(2026, 5, 12, 6))
    first = sensor_tick(mirror, "spot:BTCUSDT,um:BTCUSDT")
    april = [f"2026-04-{d:02d}" for d in range(1, 31)]
    assert sorted(r.partition_key for r in first.run_requests) == april  # May 1..11 (no archive yet) and March too
    assert all(r.run_key.startswith("funding_monthly:2026-04-") for r in first.run_requests)

    again = sensor_tick(mirror, "spot:BTCUSDT,um:BTCUSDT", first.cursor)
    assert again.run_requests == []

    rewrite_zip_csv(mirror / FUNDING_DIR / MONTH_ZIP, lambda text: text)  # Binance re-publishes the month
    republished = sensor_tick(mirror, "spot:BTCUSDT,um:BTCUSDT", again.cursor)
    assert sorted(r.partition_key for r in republished.run_requests) == april
    assert not {r.run_key for r in republished.run_requests} & {r.run_key for r in first.run_requests}


def test_description_states_the_lookback_the_asset_reads():
    """The description is the asset's docstring (a literal): it must say the LOOKBACK_DAYS the mapping reads."""
    from lakehouse_assets.defs.funding.gold import funding_features
    from lakehouse_assets.funding.features import LOOKBACK_DAYS

    (spec,) = funding_features.specs
    assert f"Reads {LOOKBACK_DAYS} days of silver/funding_rates before each day" in " ".join(spec.description.split())


def test_daily_schedule_requests_the_day_that_just_ended():
    from lakehouse_assets.definitions import defs as project_defs

    defs_obj = project_defs() if callable(project_defs) else project_defs
    repo = defs_obj.get_repository_def()
    schedule = funding_automation.funding_daily
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    result = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=utc(2026, 5, 2, 0, 20), repository_def=repo))
    assert [r.partition_key for r in result.run_requests] == ["2026-05-01"]
    assert funding_automation.funding_archive_sensor.default_status == dg.DefaultSensorStatus.RUNNING
