"""gold through Dagster on real files: day-by-day == range backfill == one full-history TA-Lib run."""

from __future__ import annotations

import base64
import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import talib

from lakehouse_assets.indicators import TALIB_COLUMNS
from lakehouse_assets.resources import GoldResource
from lakehouse_assets_tests.pipeline_helpers import failure_text, resources, run_gold, run_range
from lakehouse_assets_tests.test_indicators import assert_matches

DAYS = ["2020-01-01", "2020-01-02", "2020-01-03"]
SYMBOLS = "spot:BTCUSDT"


@pytest.fixture(scope="module")
def silver_lake(sample_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bronze + silver for three real, checksummed spot days, built once and copied per test."""
    lake = tmp_path_factory.mktemp("gold") / "lake"
    with dg.instance_for_test() as instance:
        assert run_range(resources(str(lake), sample_mirror.as_uri(), SYMBOLS), DAYS[0], DAYS[-1], instance).success
    return lake


def fresh(silver_lake: Path, tmp_path: Path, name: str = "lake") -> Path:
    target = tmp_path / name
    shutil.copytree(silver_lake, target)
    return target


def table(lake: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(sorted((lake / "gold" / name).glob("date=*/*.parquet"))).sort("interval", "open_time")


@pytest.fixture(scope="module")
def gold_runs(silver_lake: Path, sample_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same three days materialized one partition at a time, and as one range (backfill) run."""
    root = tmp_path_factory.mktemp("gold_runs")
    daily, ranged = root / "daily", root / "ranged"
    shutil.copytree(silver_lake, daily)
    shutil.copytree(silver_lake, ranged)
    with dg.instance_for_test() as instance:
        day_events = []
        for day in DAYS:
            result = run_gold(resources(str(daily), sample_mirror.as_uri(), SYMBOLS), day, None, instance)
            assert result.success
            day_events += result.asset_materializations_for_node("gold__features")
        backfill = run_gold(resources(str(ranged), sample_mirror.as_uri(), SYMBOLS), DAYS[0], DAYS[-1], instance)
        assert backfill.success
        materialized = instance.get_materialized_partitions(dg.AssetKey(["gold", "features"]))
    return {
        "daily": daily,
        "ranged": ranged,
        "backfill": backfill,
        "materialized": materialized,
        "day_events": day_events,
    }


def test_day_by_day_equals_range_backfill_equals_full_history_talib(gold_runs: dict) -> None:
    daily, ranged = gold_runs["daily"], gold_runs["ranged"]
    assert gold_runs["materialized"] == set(DAYS)
    one_by_one, at_once = table(daily, "features"), table(ranged, "features")
    assert one_by_one.height == at_once.height == 3 * 1440 + 3 * 24 + 3
    assert one_by_one.select("interval", "open_time").equals(at_once.select("interval", "open_time"))
    # Day 3's 1m features were computed from days 2-3 only (1 day lookback) in the day-by-day runs and
    # from days 1-3 in the backfill: recursive indicators identical, running sums (Bollinger, 24h) to 1e-9.
    for name in ("rsi_14", "atr_14", "macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9", "ret_1", "log_ret_1"):
        assert one_by_one[name].equals(at_once[name]), name
    for name in (
        "bb_upper_20_2",
        "bb_middle_20_2",
        "bb_lower_20_2",
        "vwap_24h",
        "realized_vol_24h",
        "volume_zscore_24h",
    ):
        assert_matches(one_by_one[name], at_once[name].to_numpy().astype(float))
    assert table(daily, "klines_resampled").equals(table(ranged, "klines_resampled"))  # exact decimal sums

    # ... and both equal TA-Lib run once over the whole contiguous history of each interval
    silver = pl.read_parquet(sorted((daily / "silver/klines").glob("date=*/*.parquet"))).sort("open_time")
    hours = table(daily, "klines_resampled").filter(pl.col("interval") == "1h")
    for interval, bars in (("1m", silver), ("1h", hours)):
        h, lo, c = (bars[k].to_numpy() for k in ("high", "low", "close"))
        macd, signal, hist = talib.MACD(c, 12, 26, 9)
        upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
        reference = {
            "rsi_14": talib.RSI(c, 14),
            "macd_12_26_9": macd,
            "macd_signal_12_26_9": signal,
            "macd_hist_12_26_9": hist,
            "bb_upper_20_2": upper,
            "bb_middle_20_2": middle,
            "bb_lower_20_2": lower,
            "atr_14": talib.ATR(h, lo, c, 14),
        }
        for frame in (one_by_one, at_once):
            ours = frame.filter(pl.col("interval") == interval)
            assert ours["open_time"].equals(bars["open_time"])
            for name in TALIB_COLUMNS:
                assert_matches(ours[name], reference[name])
    # real values at the end of the sample (spot BTCUSDT closes 7344.96 on 2020-01-03 23:59)
    last_hour = at_once.filter(pl.col("interval") == "1h").row(-1, named=True)
    assert last_hour["close"] == 7344.96 and last_hour["open_time"] == datetime(2020, 1, 3, 23, tzinfo=UTC)
    assert last_hour["rsi_14"] == pytest.approx(talib.RSI(hours["close"].to_numpy(), 14)[-1], rel=1e-12)


def test_each_partition_holds_its_utc_day_warmed_up_by_the_lookback(gold_runs: dict) -> None:
    chart = gold_runs["day_events"][1].metadata["chart spot:BTCUSDT"].value
    assert chart.startswith("![spot:BTCUSDT 1m 2020-01-02](data:image/svg+xml;base64,")  # one day: minute bars
    assert gold_runs["day_events"][1].metadata["days_in_run"].value == 1
    day = pl.read_parquet(gold_runs["daily"] / "gold/features/date=2020-01-02/spot-BTCUSDT.parquet")
    assert day["open_time"].min() == datetime(2020, 1, 2, tzinfo=UTC) and day["open_time"].max() == datetime(
        2020, 1, 2, 23, 59, tzinfo=UTC
    )
    assert day["open_time"].dt.date().unique().to_list() == [date(2020, 1, 2)]
    assert day.filter(pl.col("interval") == "1m")["rsi_14"].null_count() == 0  # warmed up by the lookback day
    assert day.filter(pl.col("interval") == "1h")["rsi_14"].null_count() == 0  # 24 bars of 2020-01-01 before it
    assert day.filter(pl.col("interval") == "1h")["macd_12_26_9"].null_count() == 33 - 24  # MACD needs 34 bars
    assert np.isclose(day.filter(pl.col("interval") == "1d")["close"].item(), 6965.71)


def test_materialization_reports_checks_lookback_and_a_chart(gold_runs: dict) -> None:
    result, lake = gold_runs["backfill"], gold_runs["ranged"]
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        **{
            ("gold/klines_resampled", n): True
            for n in ("schema", "ohlc_consistency", "volumes", "time_grid", "bar_coverage")
        },
        **{
            ("gold/features", n): True
            for n in ("schema", "unique_bars", "rsi_range", "bollinger_order", "atr_non_negative")
        },
    }
    events = result.asset_materializations_for_node("gold__features")
    assert sorted(e.partition for e in events) == DAYS  # one materialization per day of the range
    md = events[0].metadata
    assert md["intervals"].value == "1m, 1h, 1d"
    assert "| 1d | 600 |" in md["lookback"].value and "| 1h | 25 |" in md["lookback"].value
    assert md["days_in_run"].value == 3
    # every day's event carries that day's own chart and summary, not a copy of the run's
    for event in events:
        match = re.fullmatch(
            r"!\[(.*)\]\(data:image/svg\+xml;base64,(.+)\)", event.metadata["chart spot:BTCUSDT"].value
        )
        assert match and match.group(1) == f"spot:BTCUSDT 1m {event.partition}"
        svg = base64.b64decode(match.group(2)).decode()
        assert svg.startswith("<svg") and "1440 bars, 3 min buckets" in svg
        assert f"| spot | BTCUSDT | 1h | {event.partition} 23:00:00+00:00 |" in event.metadata["latest"].value
        assert "| spot | BTCUSDT | 1m | 1440 | 0 | 0 |" in event.metadata["coverage"].value
    resampled_md = result.asset_materializations_for_node("gold__klines_resampled")[0].metadata
    assert resampled_md["incomplete_bars"].value == 0
    assert "| 1d | 3 | 3 | 0 |" in resampled_md["bars_by_interval"].value

    bars = table(lake, "klines_resampled")
    days = bars.filter(pl.col("interval") == "1d")
    assert days.select("open", "close", "minutes").rows() == [
        (7195.24, 7200.85, 1440),
        (7200.77, 6965.71, 1440),
        (6965.49, 7344.96, 1440),
    ]
    files = sorted(p.relative_to(lake).as_posix() for p in (lake / "gold").rglob("*.parquet"))
    assert files == [f"gold/{t}/date={d}/spot-BTCUSDT.parquet" for t in ("features", "klines_resampled") for d in DAYS]


def test_rerun_is_idempotent(gold_runs: dict, sample_mirror: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(gold_runs["ranged"], lake)
    before = (table(lake, "features"), table(lake, "klines_resampled"))
    with dg.instance_for_test() as instance:
        assert run_gold(resources(str(lake), sample_mirror.as_uri(), SYMBOLS), DAYS[0], DAYS[-1], instance).success
    assert table(lake, "features").equals(before[0]) and table(lake, "klines_resampled").equals(before[1])
    assert len(list((lake / "gold").rglob("*.parquet"))) == 6


def test_missing_lookback_day_fails_clearly_and_writes_nothing(
    silver_lake: Path, gold_runs: dict, tmp_path: Path, sample_mirror: Path
) -> None:
    lake = fresh(silver_lake, tmp_path)
    res = resources(str(lake), sample_mirror.as_uri(), SYMBOLS)
    with dg.instance_for_test() as instance:
        # gold/klines_resampled reads no lookback: day 3 alone is fine, but its features need days 1-2 of it
        result = run_gold(res, DAYS[2], None, instance, raise_on_error=False)
        assert not result.success
        assert "gold/klines_resampled has no data for 2 requested day(s): 2020-01-01, 2020-01-02" in failure_text(
            result
        )
        assert not (lake / "gold/features").exists()
        assert (lake / "gold/klines_resampled/date=2020-01-03/spot-BTCUSDT.parquet").exists()

    lake = tmp_path / "with_gold"
    shutil.copytree(gold_runs["ranged"], lake)
    shutil.rmtree(lake / "silver/klines/date=2020-01-02")  # the 1m lookback day of 2020-01-03 disappears
    written = (lake / "gold/features/date=2020-01-03/spot-BTCUSDT.parquet").read_bytes()
    with dg.instance_for_test() as instance:
        result = run_gold(
            resources(str(lake), sample_mirror.as_uri(), SYMBOLS), DAYS[2], None, instance, raise_on_error=False
        )
    assert not result.success
    assert "silver/klines has no data for 1 requested day(s): 2020-01-02" in failure_text(result)
    assert (lake / "gold/features/date=2020-01-03/spot-BTCUSDT.parquet").read_bytes() == written  # untouched


def test_feature_interval_that_is_not_resampled_is_refused(
    silver_lake: Path, tmp_path: Path, sample_mirror: Path
) -> None:
    lake = fresh(silver_lake, tmp_path)
    res = {
        **resources(str(lake), sample_mirror.as_uri(), SYMBOLS),
        "gold": GoldResource(resample_intervals="5m,1h", feature_intervals="1m,4h"),
    }
    with dg.instance_for_test() as instance:
        result = run_gold(res, DAYS[0], None, instance, raise_on_error=False)
    assert not result.success
    assert "LAKEHOUSE_FEATURE_INTERVALS has ['4h'], which gold/klines_resampled does not build" in failure_text(result)
    bars = table(lake, "klines_resampled")  # the resampled table itself followed its own setting
    assert sorted(set(bars["interval"])) == ["1h", "5m"]


def test_gold_assets_are_wired_to_one_source_with_declared_lookbacks() -> None:
    from lakehouse_assets.definitions import defs
    from lakehouse_assets.defs.gold import (
        GOLD_FEATURES,
        GOLD_RESAMPLED,
        KLINES_SOURCE,
        features,
        gold_job,
        klines_resampled,
    )

    loaded = defs() if callable(defs) else defs
    assert {GOLD_RESAMPLED, GOLD_FEATURES} <= set(loaded.resolve_all_asset_keys())
    assert loaded.resolve_job_def("gold_job").name == gold_job.name
    assert KLINES_SOURCE == dg.AssetKey(["silver", "klines"])
    assert set(klines_resampled.asset_deps[GOLD_RESAMPLED]) == {KLINES_SOURCE}
    assert set(features.asset_deps[GOLD_FEATURES]) == {KLINES_SOURCE, GOLD_RESAMPLED}
    mappings = {key: features.get_partition_mapping(key) for key in (KLINES_SOURCE, GOLD_RESAMPLED)}
    assert (mappings[KLINES_SOURCE].start_offset, mappings[GOLD_RESAMPLED].start_offset) == (-1, -600)
    assert all(m.allow_nonexistent_upstream_partitions and m.end_offset == 0 for m in mappings.values())
    assert features.backfill_policy == klines_resampled.backfill_policy
