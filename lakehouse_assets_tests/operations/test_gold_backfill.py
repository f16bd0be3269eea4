"""A backfill of the gold tables launched from the UI targets exactly the selected days, and its runs succeed.

gold/features reads a lookback before its own days. Declared as a ``TimeWindowPartitionMapping(start_offset=-N)``,
that window also made Dagster's asset backfill (partition names + asset selection, what the UI's "Launch
backfill" sends) walk from the selected gold/klines_resampled days to every features day whose lookback reads
them: [a, b + N], N = 600 for the 1d features, and the runs after b failed for want of their own resampled days.
The backfill is launched here with the UI's GraphQL mutation against the real code location (a code server
subprocess), and the backfill daemon's own iteration turns it into runs, one of which is executed by the run
launcher as the queue daemon would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lakehouse_assets.defs.common.keys import (
    BRONZE_KLINES,
    GOLD_FEATURES,
    GOLD_RESAMPLED,
    KLINE_GAPS,
    KLINES_FILLED,
    SILVER_KLINES,
)
from lakehouse_assets.defs.common.lookback import lookback_keys
from lakehouse_assets.defs.common.partitions import DAYS_PER_RUN, daily_partitions
from lakehouse_assets_tests.harness import (
    RANGE_END,
    RANGE_START,
    daemon_workspace,
    execute_queued_run,
    iterate_backfills,
    launch_backfill,
    resources,
    run_gapfill,
    run_gold,
    run_klines,
    targeted_partitions,
)
from lakehouse_assets_tests.samples import SAMPLE_DATA
from lakehouse_dev.fakes.rest_server import BinanceRestServer

SYMBOLS = "spot:BTCUSDT"
DAYS = ["2020-01-01", "2020-01-02", "2020-01-03"]  # the bundled real spot BTCUSDT days
BACKFILL = DAYS[1:]  # the backfilled range; 2020-01-01 is its lookback, materialized before


@pytest.fixture
def workspace(queued_instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_mirror: Path):
    """The code location as the webserver and the daemons load it (a code server subprocess, which inherits
    these settings, as do the run workers it starts)."""
    monkeypatch.setenv("LAKEHOUSE_STORAGE", str(tmp_path / "lake"))
    monkeypatch.setenv("LAKEHOUSE_ARCHIVE_URL", sample_mirror.as_uri())
    monkeypatch.setenv("LAKEHOUSE_SYMBOLS", SYMBOLS)
    with daemon_workspace(queued_instance) as context:
        yield context


def build_silver(lake: Path, mirror: Path, instance: dg.DagsterInstance) -> dict:
    """bronze -> silver -> silver/klines_filled for the three real days (complete: the gap-fill asks REST nothing)."""
    with BinanceRestServer(SAMPLE_DATA) as rest:
        res = resources(lake, mirror.as_uri(), SYMBOLS, rest_url=rest.base_url)
        assert run_klines(res, DAYS[0], DAYS[-1], instance).success
        assert run_gapfill(res, DAYS[0], DAYS[-1], instance).success
        assert rest.kline_requests() == []
    return res


def features_table(lake: Path, days: list[str]) -> pl.DataFrame:
    files = sorted(f for day in days for f in (lake / f"gold/features/date={day}").glob("*.parquet"))
    return pl.read_parquet(files).sort("market", "symbol", "interval", "open_time")


def test_backfill_of_both_gold_tables_targets_the_range_and_its_one_run_succeeds_with_the_lookback_read(
    tmp_path, sample_mirror, instance, queued_instance, workspace
):
    from dagster._core.execution.backfill import BulkActionStatus

    assert DAYS_PER_RUN >= len(BACKFILL), "LAKEHOUSE_DAYS_PER_RUN cuts the two days into one run"
    lake = tmp_path / "lake"
    res = build_silver(lake, sample_mirror, instance)
    # the reference: gold over the three days in one run of gold_job, in a copy of the lake
    reference = tmp_path / "reference"
    shutil.copytree(lake, reference)
    assert run_gold(resources(reference, sample_mirror.as_uri(), SYMBOLS), DAYS[0], DAYS[-1], instance).success
    # gold for the first day exists, so the backfilled days read their whole lookback
    assert run_gold(res, DAYS[0], None, instance).success

    backfill_id = launch_backfill(workspace, [GOLD_RESAMPLED, GOLD_FEATURES], BACKFILL)
    assert targeted_partitions(queued_instance, backfill_id) == {"gold/klines_resampled": BACKFILL, "gold/features": BACKFILL}
    for _ in range(2):  # a second iteration must not request anything twice
        iterate_backfills(workspace)
    (run,) = queued_instance.get_runs()  # one range run builds both tables, resampled first
    assert run.asset_selection == {GOLD_RESAMPLED, GOLD_FEATURES}
    assert (run.tags[RANGE_START], run.tags[RANGE_END]) == (BACKFILL[0], BACKFILL[-1])

    # execute it as the queue daemon does: the code server starts a run worker process
    execute_queued_run(workspace, queued_instance, run)
    iterate_backfills(workspace)
    backfill = queued_instance.get_backfill(backfill_id)
    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS
    assert queued_instance.get_materialized_partitions(GOLD_FEATURES) == set(BACKFILL)

    # the lookback was read inside the run: 2020-01-01's klines_filled and resampled bars were there, so no
    # bar is marked, the WARN check passed, and the features equal those of one run over the three days
    evaluations = {
        r.event_log_entry.dagster_event.event_specific_data.check_name: r.event_log_entry.dagster_event.event_specific_data
        for r in queued_instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    }
    coverage = evaluations["lookback_coverage"]
    assert coverage.passed and coverage.metadata["lookback_days_absent"].value == "none"
    backfilled = features_table(lake, BACKFILL)
    assert backfilled.height == 2 * (1440 + 24 + 1) and backfilled["lookback_complete"].all()
    assert_frame_equal(backfilled, features_table(reference, BACKFILL))


def test_backfill_of_the_whole_kline_graph_targets_the_range_in_every_table(queued_instance, workspace):
    """The README's way to build gold with its inputs: every table of the chain, one backfill. klines_filled is
    features' 1m lookback input (1 day), so this selection also reached the day after the range."""
    chain = [BRONZE_KLINES, SILVER_KLINES, KLINES_FILLED, KLINE_GAPS, GOLD_RESAMPLED, GOLD_FEATURES]
    backfill_id = launch_backfill(workspace, chain, BACKFILL)
    assert targeted_partitions(queued_instance, backfill_id) == {key.to_user_string(): BACKFILL for key in chain}
    iterate_backfills(workspace)
    runs = queued_instance.get_runs()
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in runs] == [(BACKFILL[0], BACKFILL[-1])]
    assert runs[0].asset_selection == {BRONZE_KLINES, SILVER_KLINES}  # the first layer; the rest follow it


def test_the_lookback_read_is_the_window_the_mapping_had() -> None:
    """What the IO manager reads for a lookback input: the days before the first own day, none before the first
    partition (the lake's history starts there), the same days ``TimeWindowPartitionMapping(start_offset=-N)`` gave."""
    assert daily_partitions.get_first_partition_key() == "2020-01-01"  # the default LAKEHOUSE_START_DATE
    assert lookback_keys(daily_partitions, ["2020-01-05", "2020-01-06"], 2) == [
        "2020-01-03", "2020-01-04", "2020-01-05", "2020-01-06"
    ]
    assert lookback_keys(daily_partitions, ["2020-01-02"], 600) == ["2020-01-01", "2020-01-02"]
    assert lookback_keys(daily_partitions, ["2020-01-01"], 1) == ["2020-01-01"]
    assert lookback_keys(daily_partitions, ["2020-01-05"], 0) == ["2020-01-05"]
