"""gold through Dagster on real files: day-by-day == range backfill == one full-history TA-Lib run.

Every lake here is built the way production builds it: bronze -> silver/klines -> silver/klines_filled
(the gap-fill, with ccxt pointed at the local REST stand-in) -> gold. The sample days are complete,
so the gap-fill asks REST nothing and gold sees exactly Binance's files.
"""

from __future__ import annotations

import base64
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import talib

from lakehouse_assets.defs.common.keys import (
    BRONZE_KLINES,
    GOLD_FEATURES,
    GOLD_RESAMPLED,
    KLINE_GAPS,
    KLINES_FILLED,
    SILVER_KLINES,
)
from lakehouse_assets.defs.resources import GoldResource
from lakehouse_assets.klines.indicators import TALIB_COLUMNS
from lakehouse_assets_tests.harness import (
    automation_defs,
    failure_text,
    gapfill_config,
    materialize,
    resources,
    run_gapfill,
    run_gold,
    run_klines,
)
from lakehouse_assets_tests.samples import (
    SAMPLE_DATA,
    SPOT,
    assert_matches,
    copy_mirror,
    remove_minutes,
    rewrite_zip_csv,
)
from lakehouse_dev.fakes.rest_server import BinanceRestServer

DAYS = ["2020-01-01", "2020-01-02", "2020-01-03"]
SYMBOLS = "spot:BTCUSDT"


@pytest.fixture(scope="module")
def silver_lake(sample_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bronze + silver + silver/klines_filled (gold's input) for three real, checksummed spot days,
    built once and copied per test."""
    lake = tmp_path_factory.mktemp("gold") / "lake"
    with dg.instance_for_test() as instance, BinanceRestServer(SAMPLE_DATA) as rest:
        res = resources(lake, sample_mirror.as_uri(), SYMBOLS, rest_url=rest.base_url)
        assert run_klines(res, DAYS[0], DAYS[-1], instance).success
        assert run_gapfill(res, DAYS[0], DAYS[-1], instance).success
        assert rest.kline_requests() == []  # complete archive days: nothing to fill
    filled = pl.read_parquet(sorted((lake / "silver/klines_filled").glob("date=*/*.parquet")))
    assert filled.height == 3 * 1440 and set(filled["source"]) == {"archive"}
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
    minutes = pl.read_parquet(sorted((daily / "silver/klines_filled").glob("date=*/*.parquet"))).sort("open_time")
    hours = table(daily, "klines_resampled").filter(pl.col("interval") == "1h")
    for interval, bars in (("1m", minutes), ("1h", hours)):
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
            for n in ("schema", "unique_bars", "rsi_range", "bollinger_order", "atr_non_negative", "lookback_coverage")
        },
    }
    (coverage,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "lookback_coverage"]
    assert coverage.severity == dg.AssetCheckSeverity.WARN and coverage.metadata["incomplete_bars"].value == 0
    assert table(lake, "features")["lookback_complete"].all()
    events = result.asset_materializations_for_node("gold__features")
    assert sorted(e.partition for e in events) == DAYS  # one materialization per day of the range
    md = events[0].metadata
    assert md["intervals"].value == "1m, 1h, 1d" and md["source"].value == "silver/klines_filled"
    assert "| 1d | 600 | 0 |" in md["lookback"].value and "| 1h | 25 | 0 |" in md["lookback"].value  # none absent
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


def run_features_only(res: dict, start: str, end: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """gold/features alone over [start, end] (its inputs only read), the way its asset page materializes it."""
    return materialize([GOLD_FEATURES], res, start, end, instance, raise_on_error=False)


def lookback_evaluation(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "lookback_coverage"]
    return evaluation


def test_a_missing_lookback_marks_the_bars_instead_of_failing_and_a_backfill_then_rerun_makes_them_exact(
    silver_lake: Path, gold_runs: dict, tmp_path: Path, sample_mirror: Path
) -> None:
    """Gold for the two newest days (2020-01-02..03) with only those days of klines_filled in the lake: the run
    succeeds; the bars whose lookback reached 2020-01-01 are marked and listed by the WARN check. After 2020-01-01
    is backfilled (klines_filled, then gold) and the two days re-run, every bar equals the full-history run."""
    lake = fresh(silver_lake, tmp_path)
    shutil.rmtree(lake / "silver/klines_filled/date=2020-01-01")  # never materialized: the lookback is missing
    with dg.instance_for_test() as instance, BinanceRestServer(SAMPLE_DATA) as rest:
        res = resources(lake, sample_mirror.as_uri(), SYMBOLS, rest_url=rest.base_url)
        partial = run_gold(res, DAYS[1], DAYS[2], instance)
        assert partial.success
        features = table(lake, "features")
        assert features.height == 2 * 1440 + 2 * 24 + 2  # every bar of both days written
        marked = features.filter(~pl.col("lookback_complete"))
        # 1m: 2020-01-02 had no day before it (1440 bars, its whole 24h history), 2020-01-03 had 2020-01-02: none.
        # 1h/1d: the 600-bar history of every bar of both days reaches back into 2020-01-01.
        spans = marked.group_by("interval").agg(pl.len(), first=pl.col("open_time").min(), last=pl.col("open_time").max())
        assert spans.sort("interval").rows() == [
            ("1d", 2, datetime(2020, 1, 2, tzinfo=UTC), datetime(2020, 1, 3, tzinfo=UTC)),
            ("1h", 48, datetime(2020, 1, 2, tzinfo=UTC), datetime(2020, 1, 3, 23, tzinfo=UTC)),
            ("1m", 1440, datetime(2020, 1, 2, tzinfo=UTC), datetime(2020, 1, 2, 23, 59, tzinfo=UTC)),
        ]
        day2_minutes = marked.filter(pl.col("interval") == "1m")
        assert day2_minutes["rsi_14"].null_count() == 14 and day2_minutes["ret_1"][0] is None  # warming up again
        # ... while the bars whose history was all there are exactly those of the complete lake's day-by-day run
        complete_bars = features.filter(pl.col("lookback_complete"))
        reference = table(gold_runs["daily"], "features").join(
            complete_bars.select("interval", "open_time"), on=["interval", "open_time"], how="semi"
        )
        assert complete_bars.height == 1440 and complete_bars.equals(reference)

        evaluation = lookback_evaluation(partial)
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
        assert evaluation.metadata["incomplete_bars"].value == 1490
        assert evaluation.metadata["lookback_days_absent"].value == (
            "silver/klines_filled 2020-01-01; gold/klines_resampled 2020-01-01"
        )
        assert evaluation.description.startswith(
            "1490 bar(s) computed from an incomplete lookback (lookback_complete = false): "
            "spot:BTCUSDT 1d 2020-01-02 (1 bars), spot:BTCUSDT 1d 2020-01-03 (1 bars), "
            "spot:BTCUSDT 1h 2020-01-02 (24 bars), spot:BTCUSDT 1h 2020-01-03 (24 bars), "
            "spot:BTCUSDT 1m 2020-01-02 (1440 bars). Lookback days never materialized upstream: "
        )
        by_day = evaluation.metadata["by_day"].value
        for row in (
            "| spot | BTCUSDT | 1m | 2020-01-02 | 1440 | 2020-01-02 00:00:00+00:00 | 2020-01-02 23:59:00+00:00 | 1440 | 1440 |",
            "| spot | BTCUSDT | 1h | 2020-01-03 | 24 | 2020-01-03 00:00:00+00:00 | 2020-01-03 23:00:00+00:00 | 600 | 24 |",
            "| spot | BTCUSDT | 1d | 2020-01-03 | 1 | 2020-01-03 00:00:00+00:00 | 2020-01-03 00:00:00+00:00 | 600 | 1 |",
        ):
            assert row in by_day, row
        blocking = [e.passed for e in partial.get_asset_check_evaluations() if e.check_name != "lookback_coverage"]
        assert blocking == [True] * (5 + 5)  # the marked bars are valid bars: every blocking check passes
        md = partial.asset_materializations_for_node("gold__features")[0].metadata
        # per interval: lookback days, days absent, bars read, bars written, bars marked
        assert "| 1m | 1 | 1 | 2880 | 2880 | 1440 |\n| 1h | 25 | 1 | 48 | 48 | 48 |" in md["lookback"].value

        # the earlier day is backfilled: its klines_filled, then its gold; the two days re-run afterwards
        assert run_gapfill(res, DAYS[0], None, instance).success
        assert run_gold(res, DAYS[0], None, instance).success
        rerun = run_gold(res, DAYS[1], DAYS[2], instance)
    assert rerun.success and lookback_evaluation(rerun).passed
    refreshed, complete = table(lake, "features"), table(gold_runs["ranged"], "features")
    assert refreshed["lookback_complete"].all()
    later = pl.col("open_time") >= datetime(2020, 1, 2, tzinfo=UTC)
    assert refreshed.filter(later).equals(complete.filter(later))  # bit for bit, every column of both days
    assert refreshed.filter(~later).equals(table(gold_runs["daily"], "features").filter(~later))


def test_own_days_are_required_and_every_missing_one_is_named_at_once(
    gold_runs: dict, tmp_path: Path, sample_mirror: Path
) -> None:
    """The days a run writes need their inputs; absent ones of both inputs are named in one message, and nothing
    is written (the stored features stay)."""
    lake = tmp_path / "lake"
    shutil.copytree(gold_runs["ranged"], lake)
    shutil.rmtree(lake / "silver/klines_filled/date=2020-01-03")
    for day in DAYS[1:]:
        shutil.rmtree(lake / f"gold/klines_resampled/date={day}")
    written = {p: p.read_bytes() for p in (lake / "gold/features").rglob("*.parquet")}
    with dg.instance_for_test() as instance:
        result = run_features_only(resources(str(lake), sample_mirror.as_uri(), SYMBOLS), DAYS[1], DAYS[2], instance)
    assert not result.success
    assert (
        "gold/features needs its inputs for the days it writes; not materialized: silver/klines_filled 2020-01-03; "
        "gold/klines_resampled 2020-01-02, 2020-01-03." in failure_text(result)
    )
    assert {p: p.read_bytes() for p in (lake / "gold/features").rglob("*.parquet")} == written


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
    from lakehouse_assets.defs.klines.gold import (
        FEATURE_LOOKBACKS,
        GOLD_FEATURES,
        GOLD_RESAMPLED,
        KLINES_SOURCE,
        features,
        gold_job,
        klines_resampled,
    )
    from lakehouse_assets.lake.io_manager import LOOKBACK_KEY, MISSING_KEY, MISSING_SKIP

    loaded = defs() if callable(defs) else defs
    assert {GOLD_RESAMPLED, GOLD_FEATURES} <= set(loaded.resolve_all_asset_keys())
    assert loaded.resolve_job_def("gold_job").name == gold_job.name
    assert KLINES_SOURCE == dg.AssetKey(["silver", "klines_filled"])  # the gap-filled series
    assert set(klines_resampled.asset_deps[GOLD_RESAMPLED]) == {KLINES_SOURCE}
    assert set(features.asset_deps[GOLD_FEATURES]) == {KLINES_SOURCE, GOLD_RESAMPLED}
    # in the graph a features day depends on that day of each input (the default mapping), so a backfill over
    # [a, b] targets [a, b] (operations/test_gold_backfill.py); the lookback is an input option the IO manager reads
    assert [features.get_partition_mapping(key) for key in (KLINES_SOURCE, GOLD_RESAMPLED)] == [None, None]
    inputs = {features.keys_by_input_name[d.name]: d.metadata for d in features.node_def.input_defs}
    assert {key: inputs[key][LOOKBACK_KEY] for key in (KLINES_SOURCE, GOLD_RESAMPLED)} == {
        KLINES_SOURCE: 1, GOLD_RESAMPLED: 600
    } == FEATURE_LOOKBACKS
    assert all(inputs[key][MISSING_KEY] == MISSING_SKIP for key in FEATURE_LOOKBACKS)
    assert features.backfill_policy == klines_resampled.backfill_policy


def test_gold_stops_at_yesterday_while_its_input_has_today() -> None:
    """klines_filled has today's (REST-only, growing) partition; gold's partitions end at yesterday, and
    the mappings between the two partitionings hold for a day, a range, the lookback, and today."""
    from lakehouse_assets.definitions import defs
    from lakehouse_assets.defs.common.lookback import lookback_keys
    from lakehouse_assets.defs.common.partitions import daily_partitions, daily_partitions_with_today
    from lakehouse_assets.defs.klines.gold import FEATURE_LOOKBACKS, GOLD_FEATURES, GOLD_RESAMPLED, KLINES_SOURCE

    graph = (defs() if callable(defs) else defs).resolve_asset_graph()
    gold_def, source_def = graph.get(GOLD_FEATURES).partitions_def, graph.get(KLINES_SOURCE).partitions_def
    assert gold_def == graph.get(GOLD_RESAMPLED).partitions_def == daily_partitions
    assert source_def == daily_partitions_with_today
    today = datetime.now(UTC).date()
    yesterday, day_before = (today - timedelta(days=1)).isoformat(), (today - timedelta(days=2)).isoformat()
    assert gold_def.get_last_partition_key() == yesterday and source_def.get_last_partition_key() == today.isoformat()

    def upstream(child: dg.AssetKey, keys: list[str]) -> list[str]:
        mapped = graph.get_partition_mapping(child, KLINES_SOURCE).get_upstream_mapped_partitions_result_for_partitions(
            gold_def.subset_with_partition_keys(keys), gold_def, source_def
        )
        assert not mapped.required_but_nonexistent_subset.get_partition_keys()
        return sorted(mapped.partitions_subset.get_partition_keys())

    def read(keys: list[str]) -> list[str]:
        """What a gold/features run over ``keys`` reads of klines_filled: the mapped days and the lookback."""
        return lookback_keys(source_def, upstream(GOLD_FEATURES, keys), FEATURE_LOOKBACKS[KLINES_SOURCE])

    def downstream(child: dg.AssetKey, key: str) -> list[str]:
        mapping = graph.get_partition_mapping(child, KLINES_SOURCE)
        subset = source_def.subset_with_partition_keys([key])
        mapped = mapping.get_downstream_partitions_for_partitions(subset, source_def, gold_def)
        return sorted(mapped.get_partition_keys())

    # both depend on the same day(s); features also reads the 1-day lookback before them
    for child in (GOLD_RESAMPLED, GOLD_FEATURES):
        assert upstream(child, ["2020-01-05", "2020-01-06"]) == ["2020-01-05", "2020-01-06"]
        assert upstream(child, [yesterday]) == [yesterday]
    assert read(["2020-01-05"]) == ["2020-01-04", "2020-01-05"]
    assert read(["2020-01-05", "2020-01-06", "2020-01-07"]) == ["2020-01-04", "2020-01-05", "2020-01-06", "2020-01-07"]
    assert read(["2020-01-01"]) == ["2020-01-01"]  # before the first partition: none
    assert read([yesterday]) == [day_before, yesterday]
    # today's klines_filled feeds no gold partition (hourly REST refreshes of it start no gold run);
    # yesterday's feeds yesterday's gold, and no backfill reaches a later day through the lookback
    for child in (GOLD_RESAMPLED, GOLD_FEATURES):
        assert downstream(child, today.isoformat()) == []
        assert downstream(child, yesterday) == [yesterday]
        assert downstream(child, day_before) == [day_before]


# ---------------------------------------------------------------------------------------------
# a hole in the archive, filled from REST by silver/klines_filled, reaches gold

HOLE = (datetime(2020, 1, 2, 10, tzinfo=UTC), datetime(2020, 1, 2, 12, 7, tzinfo=UTC))  # 127 real minutes


@pytest.fixture(scope="module")
def holed_silver(sample_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """bronze + silver/klines over a copy of the mirror whose 2020-01-02 zip lacks 10:00-12:06 (lake, mirror)."""
    root = tmp_path_factory.mktemp("gold_hole")
    mirror = copy_mirror(sample_mirror, root / "mirror")
    rewrite_zip_csv(mirror / SPOT.daily_klines_path("1m", date(2020, 1, 2)), remove_minutes(*HOLE))
    lake = root / "lake"
    with dg.instance_for_test() as instance:
        assert run_klines(resources(str(lake), mirror.as_uri(), SYMBOLS), DAYS[0], DAYS[-1], instance).success
    assert pl.read_parquet(lake / "silver/klines/date=2020-01-02/spot-BTCUSDT.parquet").height == 1440 - 127
    return lake, mirror


def fill_then_gold(
    holed_silver: tuple[Path, Path], target: Path, **fill: object
) -> tuple[Path, dg.ExecuteInProcessResult, int]:
    """silver/klines_filled (REST = the local stand-in; run config ``fill``) then gold_job over the 3 days.
    Returns the lake, the gold run, and how many kline requests REST received."""
    lake, mirror = holed_silver
    shutil.copytree(lake, target)
    rest_options = {"kline_api": fill.pop("kline_api")} if "kline_api" in fill else {}
    with dg.instance_for_test() as instance, BinanceRestServer(SAMPLE_DATA) as rest:
        res = resources(target, mirror.as_uri(), SYMBOLS, rest_url=rest.base_url, **rest_options)
        config = gapfill_config(**fill) if fill else None
        assert run_gapfill(res, DAYS[0], DAYS[-1], instance, run_config=config).success
        result = run_gold(res, DAYS[0], DAYS[-1], instance)
        requests = len(rest.kline_requests())
    assert result.success
    return target, result, requests


def test_a_gap_filled_from_rest_gives_gold_exactly_the_complete_days_values(
    holed_silver: tuple[Path, Path], gold_runs: dict, tmp_path: Path
) -> None:
    complete = gold_runs["ranged"]  # gold over the untouched archive
    lake, result, requests = fill_then_gold(holed_silver, tmp_path / "filled")
    assert requests == 1  # one REST window for the 127 minutes
    minutes = pl.read_parquet(lake / "silver/klines_filled/date=2020-01-02/spot-BTCUSDT.parquet")
    assert minutes.height == 1440 and (minutes["source"] == "rest").sum() == 127

    # every feature of every interval, bit for bit, and every bar except where its minutes came from
    assert table(lake, "features").equals(table(complete, "features"))
    bars, reference = table(lake, "klines_resampled"), table(complete, "klines_resampled")
    assert bars.drop("source").equals(reference.drop("source"))
    hours = bars.filter(pl.col("interval") == "1h", pl.col("open_time").dt.date() == date(2020, 1, 2))
    assert hours.filter(pl.col("source") != "archive").select("open_time", "source", "is_complete").rows() == [
        (datetime(2020, 1, 2, 10, tzinfo=UTC), "rest", True),
        (datetime(2020, 1, 2, 11, tzinfo=UTC), "rest", True),
        (datetime(2020, 1, 2, 12, tzinfo=UTC), "mixed", True),
    ]
    assert bars.filter(pl.col("interval") == "1d")["source"].to_list() == ["archive", "mixed", "archive"]
    assert all(e.passed for e in result.get_asset_check_evaluations())
    event = result.asset_materializations_for_node("gold__klines_resampled")[0]
    assert event.metadata["source"].value == "silver/klines_filled" and event.metadata["incomplete_bars"].value == 0

    # control: the same hole with the REST fill off reaches gold as a hole (so the equality above is the fill's doing)
    unfilled, _, requests = fill_then_gold(holed_silver, tmp_path / "unfilled", rest_fill=False)
    assert requests == 0
    holed = table(unfilled, "klines_resampled")
    day2 = holed.filter(pl.col("interval") == "1d", pl.col("open_time") == datetime(2020, 1, 2, tzinfo=UTC))
    assert day2.select("minutes", "is_complete", "source").row(0) == (1440 - 127, False, "archive")
    noon = holed.filter(pl.col("interval") == "1h", pl.col("open_time") == datetime(2020, 1, 2, 12, tzinfo=UTC))
    assert noon.select("minutes", "is_complete").row(0) == (53, False)
    assert holed.filter(pl.col("interval") == "1h").height == 72 - 2  # 10:00 and 11:00 have no minute: no bar
    after = table(unfilled, "features").filter(
        pl.col("interval") == "1m",
        pl.col("open_time") >= HOLE[1],
        pl.col("open_time") < HOLE[1] + timedelta(minutes=15),
    )
    assert after["rsi_14"].null_count() == 14 and after["ret_1"][0] is None  # TA-Lib restarts after the hole


def test_rest_minutes_without_volume_details_keep_them_unknown_in_gold(
    holed_silver: tuple[Path, Path], gold_runs: dict, tmp_path: Path
) -> None:
    """ccxt fetch_ohlcv (a non-Binance exchange, or LAKEHOUSE_REST_KLINE_API=ohlcv) gives no quote volume,
    trade count or taker volumes: gold keeps those unknown instead of summing what is there."""
    complete = gold_runs["ranged"]
    lake, result, requests = fill_then_gold(holed_silver, tmp_path / "ohlcv", kline_api="ohlcv")
    assert requests == 1 and all(e.passed for e in result.get_asset_check_evaluations())
    unknown = ["quote_volume", "trade_count", "taker_buy_volume", "taker_buy_quote_volume"]

    bars, reference = table(lake, "klines_resampled"), table(complete, "klines_resampled")
    touched = bars["source"] != "archive"  # bars holding a REST minute: 10:00-12:06 on 2020-01-02
    assert bars.filter(touched).group_by("interval").len().sort("interval").rows() == [
        ("15m", 9), ("1d", 1), ("1h", 3), ("4h", 2), ("5m", 26)
    ]
    assert bars.filter(touched).select(unknown).null_count().row(0) == (41, 41, 41, 41)
    known = ["open", "high", "low", "close", "volume", "minutes", "is_complete"]
    assert bars.filter(touched).select(known).equals(reference.filter(touched).select(known))
    assert bars.filter(~touched).equals(reference.filter(touched.not_()))

    features, expected = table(lake, "features"), table(complete, "features")
    assert features.drop("vwap_24h").equals(expected.drop("vwap_24h"))  # TA-Lib, returns, vol, z-score: exact
    # VWAP = Σ quote volume / Σ volume over the last 24h: unknown while an unknown minute is in the window
    # (1m: 10:00 on day 2 up to 12:05 on day 3, when 12:06 of day 2 leaves it)
    nulls = features.filter(pl.col("vwap_24h").is_null(), pl.col("open_time") >= datetime(2020, 1, 2, tzinfo=UTC))
    for interval, first, last, count in (
        ("1m", datetime(2020, 1, 2, 10, tzinfo=UTC), datetime(2020, 1, 3, 12, 5, tzinfo=UTC), 1440 + 126),
        ("1h", datetime(2020, 1, 2, 10, tzinfo=UTC), datetime(2020, 1, 3, 11, tzinfo=UTC), 26),
        ("1d", datetime(2020, 1, 2, tzinfo=UTC), datetime(2020, 1, 2, tzinfo=UTC), 1),
    ):
        rows = nulls.filter(pl.col("interval") == interval)["open_time"]
        assert (rows.min(), rows.max(), rows.len()) == (first, last, count), interval
    defined = features["vwap_24h"].is_not_null()
    assert_matches(features.filter(defined)["vwap_24h"], expected.filter(defined)["vwap_24h"].to_numpy())


# ---------------------------------------------------------------------------------------------
# declarative automation: gold follows the gap-fill


def test_automation_builds_gold_after_the_gap_fill_and_never_for_today() -> None:
    """With the project's follow_upstream condition: silver -> klines_filled -> gold, one layer per tick (the
    gap-fill has its own partitions, so it runs separately, and gold waits for it); hourly refreshes of
    today's klines_filled start nothing in gold; a re-filled day re-runs that day and the days reading it."""
    # the shipped assets, each with the condition lakehouse_automation gives it (follow_upstream())
    defs = automation_defs(resources("unused", "file:///unused", SYMBOLS))
    now = datetime(2020, 1, 4, 6, 5, tzinfo=UTC)  # partitions: gold up to 2020-01-03, klines_filled up to 01-04
    bronze, silver = BRONZE_KLINES, SILVER_KLINES

    with dg.instance_for_test() as instance:

        def tick(cursor: object) -> tuple[dict[str, list[str]], object]:
            result = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now, cursor=cursor)
            requested = {
                key.to_user_string(): sorted(result.get_requested_partitions(key))
                for key in (silver, KLINES_FILLED, KLINE_GAPS, GOLD_RESAMPLED, GOLD_FEATURES)
                if result.get_requested_partitions(key)
            }
            return requested, result.cursor

        def materialized(keys: list[dg.AssetKey], days: list[str]) -> None:
            for key in keys:
                for day in days:
                    instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day))

        requested, cursor = tick(None)
        assert requested == {}
        materialized([bronze], DAYS)
        requested, cursor = tick(cursor)
        assert requested == {"silver/klines": DAYS}  # not gold: it no longer reads silver/klines
        materialized([silver], DAYS)
        requested, cursor = tick(cursor)
        assert requested == {"silver/klines_filled": DAYS, "silver/kline_gaps": DAYS}
        materialized([KLINES_FILLED, KLINE_GAPS], DAYS)
        requested, cursor = tick(cursor)
        assert requested == {"gold/klines_resampled": DAYS, "gold/features": DAYS}
        materialized([GOLD_RESAMPLED, GOLD_FEATURES], DAYS)
        assert tick(cursor)[0] == {}

        materialized([KLINES_FILLED, KLINE_GAPS], ["2020-01-04"])  # the hourly lakehouse_today refresh
        requested, cursor = tick(cursor)
        assert requested == {}
        materialized([KLINES_FILLED, KLINE_GAPS], ["2020-01-02"])  # e.g. its archive landed, REST rows replaced
        requested, cursor = tick(cursor)
        assert requested == {"gold/klines_resampled": ["2020-01-02"], "gold/features": ["2020-01-02", "2020-01-03"]}


@pytest.mark.parametrize(
    ("now", "in_window", "after_silver", "after_gold"),
    [
        # 2020-01-01..03 are all inside follow_upstream's window (the last 62 daily partitions): when the earlier
        # day's klines_filled lands, automation builds its gold and re-runs the two days, in one backfill
        (
            datetime(2020, 1, 4, 6, 5, tzinfo=UTC),
            DAYS[1:],
            {"gold/klines_resampled": DAYS[:1], "gold/features": DAYS},
            None,
        ),
        # 62 days later only 2020-01-03 still is: the earlier day's gold is the backfill's to build; then
        # 2020-01-03 is re-run, and 2020-01-02 keeps its marked bars until someone re-materializes it
        (datetime(2020, 3, 5, 6, 5, tzinfo=UTC), ["2020-01-03"], {}, {"gold/features": ["2020-01-03"]}),
    ],
)
def test_automation_refreshes_days_computed_without_their_lookback_within_its_window(
    now: datetime, in_window: list[str], after_silver: dict, after_gold: dict | None
) -> None:
    """gold/features for 2020-01-02..03 was materialized by hand while 2020-01-01 was missing upstream (its bars
    marked). Automation itself never starts such a partition (it waits until every day it reads exists); once the
    earlier day is backfilled, it re-runs the days reading it, within LAKEHOUSE_AUTOMATION_LOOKBACK_DAYS only."""
    from lakehouse_assets.defs import operations

    assert operations.AUTOMATION_LOOKBACK_DAYS == 62  # the default, which the dates above are chosen for
    # the shipped assets, each with the condition lakehouse_automation gives it (follow_upstream())
    defs = automation_defs(resources("unused", "file:///unused", SYMBOLS))
    upstream = [BRONZE_KLINES, SILVER_KLINES, KLINES_FILLED, KLINE_GAPS]

    with dg.instance_for_test() as instance:

        def tick(cursor: object) -> tuple[dict[str, list[str]], object]:
            result = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now, cursor=cursor)
            requested = {
                key.to_user_string(): sorted(result.get_requested_partitions(key))
                for key in (SILVER_KLINES, KLINES_FILLED, GOLD_RESAMPLED, GOLD_FEATURES)
                if result.get_requested_partitions(key)
            }
            return requested, result.cursor

        def materialized(keys: list[dg.AssetKey], days: list[str]) -> None:
            for key in keys:
                for day in days:
                    instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day))

        cursor = tick(None)[1]
        materialized(upstream, DAYS[1:])
        requested, cursor = tick(cursor)
        assert requested == {"gold/klines_resampled": in_window}  # not gold/features: 2020-01-01 is missing
        materialized([GOLD_RESAMPLED], DAYS[1:])
        requested, cursor = tick(cursor)
        assert requested == {}  # still not: automation never computes from a partial lookback itself
        materialized([GOLD_FEATURES], DAYS[1:])  # by hand (asset page, gold_job, a backfill of those days)
        requested, cursor = tick(cursor)
        assert requested == {}

        materialized(upstream, DAYS[:1])  # the earlier day is backfilled: silver first ...
        requested, cursor = tick(cursor)
        assert requested == after_silver
        if after_gold is not None:
            materialized([GOLD_RESAMPLED, GOLD_FEATURES], DAYS[:1])  # ... then its gold, by the backfill
            requested, cursor = tick(cursor)
            assert requested == after_gold
        for key, days in requested.items():
            materialized([dg.AssetKey(key.split("/"))], days)
        assert tick(cursor)[0] == {}  # each refreshed once
