"""What a year-long backfill launched from the UI does, and how the run queue keeps daily updates flowing.

The backfill is launched with the same GraphQL mutation the UI's "Launch backfill" button sends,
against the project's real code location (a code server subprocess, as in production), and the
backfill daemon's own iteration turns it into runs.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime

import dagster as dg
import polars as pl

from lakehouse_assets.defs.common.keys import BRONZE_KLINES as BRONZE
from lakehouse_assets.defs.common.keys import SILVER_KLINES as SILVER
from lakehouse_assets.defs.common.partitions import DAYS_PER_RUN
from lakehouse_assets_tests.harness import (
    RANGE_END,
    RANGE_START,
    daemon_workspace,
    execute_queued_run,
    iterate_backfills,
    launch_backfill,
)
from lakehouse_assets_tests.samples import REPO


def test_year_backfill_from_the_ui_in_month_runs_with_per_day_check_results(
    tmp_path, sample_mirror, queued_instance, monkeypatch
):
    # The default (366) makes the year one run (test_every_daily_partitioned_asset_has_a_backfill_policy);
    # a month per run shows how the daemon cuts a range, and keeps the run executed below small.
    monkeypatch.setenv("LAKEHOUSE_DAYS_PER_RUN", "31")
    lake = tmp_path / "lake"
    monkeypatch.setenv("LAKEHOUSE_STORAGE", str(lake))
    monkeypatch.setenv("LAKEHOUSE_ARCHIVE_URL", sample_mirror.as_uri())
    monkeypatch.setenv("LAKEHOUSE_SYMBOLS", "spot:ADABTC")  # the bundle has its real 2021-11-27 file
    days = [d.isoformat() for d in pl.date_range(date(2021, 1, 1), date(2021, 12, 31), "1d", eager=True)]

    with daemon_workspace(queued_instance) as workspace:
        backfill_id = launch_backfill(workspace, [BRONZE, SILVER], days)
        for _ in range(2):  # a second daemon iteration must not request anything twice
            iterate_backfills(workspace)

        runs = sorted(queued_instance.get_runs(), key=lambda r: r.tags[RANGE_START])
        # 365 days in multi_run(31) ranges -> 12 runs, each doing bronze AND silver for its range
        assert len(runs) == 12
        assert {r.status for r in runs} == {dg.DagsterRunStatus.QUEUED}
        assert all(r.asset_selection == {BRONZE, SILVER} for r in runs)
        assert all(r.tags["dagster/backfill"] == backfill_id for r in runs)
        ranges = [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in runs]
        assert ranges[0] == ("2021-01-01", "2021-01-31") and ranges[-1] == ("2021-12-08", "2021-12-31")
        covered = [d.isoformat() for s, e in ranges for d in pl.date_range(date.fromisoformat(s),
                                                                           date.fromisoformat(e), "1d", eager=True)]
        assert covered == days  # every day exactly once

        # Execute the run that covers November as the queue daemon does: through the instance's run launcher,
        # which has the code server start a run worker process (it loads the code location with this test's
        # settings; the run executes its steps in that process, defs/common/executors.py).
        november = next(r for r in runs if r.tags[RANGE_START] <= "2021-11-27" <= r.tags[RANGE_END])
        assert (november.tags[RANGE_START], november.tags[RANGE_END]) == ("2021-11-07", "2021-12-07")
        execute_queued_run(workspace, queued_instance, november)  # as the queue daemon dequeues it

    # every day of the range is a materialized partition of both assets, recorded per day
    for key in (BRONZE, SILVER):
        materialized = queued_instance.get_materialized_partitions(key)
        assert len(materialized) == 31 and min(materialized) == "2021-11-07" and max(materialized) == "2021-12-07"
    # one evaluation per check for the run; completeness lists the 30 days Binance's file is missing for
    evaluations = {
        record.event_log_entry.dagster_event.event_specific_data.check_name: (
            record.event_log_entry.dagster_event.event_specific_data
        )
        for record in queued_instance.get_records_for_run(
            november.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
    }
    assert {name: e.passed for name, e in evaluations.items()} == {
        "schema": True, "ohlc_consistency": True, "volumes": True, "time_grid": True, "completeness": False,
        "monthly_matches_daily": True,  # no day of the sample is held by both a monthly and a daily file
        "freshness": False,  # the lake's newest candle is from 2021: true today, and only a WARN
    }
    completeness = evaluations["completeness"]
    assert completeness.severity == dg.AssetCheckSeverity.WARN
    assert completeness.description == "30 of 31 instrument-days incomplete"
    listed = completeness.metadata["incomplete_days"].value
    assert "| 2021-11-26 | spot | ADABTC | 0 | 1440 |" in listed and "2021-11-27" not in listed
    # the one real day is complete and exact
    silver = pl.read_parquet(lake / "silver/klines/date=2021-11-27/spot-ADABTC.parquet")
    assert silver.height == 1440
    assert silver.row(0, named=True)["open_time"] == datetime(2021, 11, 27, tzinfo=UTC)
    assert (silver["open"][0], silver["close"][-1]) == (0.00002853, 0.00002821)
    empty_day = list((lake / "silver/klines/date=2021-11-26").iterdir())
    assert [p.name for p in empty_day] == ["_empty.parquet"]


def test_every_daily_partitioned_asset_has_a_backfill_policy():
    """Without one, a year-long UI backfill of that asset would be 365 runs (and 365 processes)."""
    from dagster._core.definitions.backfill_policy import BackfillPolicyType

    from lakehouse_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    daily = [node for node in graph.asset_nodes if isinstance(node.partitions_def, dg.TimeWindowPartitionsDefinition)]
    assert daily, "expected daily-partitioned assets"
    missing = [node.key.to_user_string() for node in daily if node.backfill_policy is None]
    assert missing == []
    for key in (BRONZE, SILVER):
        policy = graph.get(key).backfill_policy
        assert policy.policy_type == BackfillPolicyType.MULTI_RUN and policy.max_partitions_per_run == DAYS_PER_RUN
    # by default a year (even a leap year) is one run: a run worker's start-up is paid once, not 12 times
    assert DAYS_PER_RUN == 366


# --------------------------------------------------------------------------- run queue


def _queued(instance: dg.DagsterInstance, name: str, **tags: str) -> dg.DagsterRun:
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.test_utils import create_run_for_test

    origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(GrpcServerCodeLocationOrigin(host="code", port=4000, location_name="lakehouse"),
                               "__repository__"),
        name,
    )
    return create_run_for_test(
        instance, job_name=name, status=dg.DagsterRunStatus.QUEUED, tags=tags, remote_job_origin=origin
    )


def test_tag_limits_keep_backfills_from_starving_daily_updates(tmp_path):
    """The project's dagster.yaml, through the queued run coordinator daemon's own dequeue logic."""
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        config = instance.get_concurrency_config()
        assert config.run_queue_config.max_concurrent_runs == 4
        assert config.pool_config.default_pool_limit == 2
        assert instance.event_log_storage.get_concurrency_info("binance_api").slot_count == 0  # not yet used
        instance.event_log_storage.initialize_concurrency_limit_to_default("binance_archive")
        instance.event_log_storage.initialize_concurrency_limit_to_default("binance_api")
        assert instance.event_log_storage.get_concurrency_info("binance_archive").slot_count == 2
        assert instance.event_log_storage.get_concurrency_info("binance_api").slot_count == 2

        year_a = [_queued(instance, f"a{i}", **{"dagster/backfill": "year-a"}) for i in range(6)]
        year_b = [_queued(instance, f"b{i}", **{"dagster/backfill": "year-b"}) for i in range(3)]
        sensor_run = _queued(instance, "sensor", **{"dagster/priority": "10"})
        automation_run = _queued(instance, "automation", **{"dagster/priority": "5"})

        daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)

        def dequeue() -> list[str]:
            runs = daemon._get_runs_to_dequeue(instance, instance.get_concurrency_config(), None)  # noqa: SLF001
            for run in runs:
                instance.handle_run_event(
                    run.run_id,
                    dg.DagsterEvent(event_type_value="PIPELINE_START", job_name=run.job_name, message="started"),
                )
            return [run.job_name for run in runs]

        # 9 backfill runs were queued first, yet the daily updates start at once, and each backfill gets 1 slot
        assert dequeue() == ["sensor", "automation", "a0", "b0"]
        assert dequeue() == []  # 4 of 4 slots busy
        assert {r.run_id for r in (sensor_run, automation_run)} <= {
            r.run_id for r in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        }

        def finish(run: dg.DagsterRun) -> None:
            instance.handle_run_event(
                run.run_id, dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name=run.job_name, message="ok")
            )

        # the daily runs finish; backfills still only get their 2 slots, leaving 2 free for the next daily run
        finish(sensor_run)
        finish(automation_run)
        assert dequeue() == []
        late_sensor_run = _queued(instance, "sensor-2", **{"dagster/priority": "10"})
        assert dequeue() == ["sensor-2"]
        finish(late_sensor_run)
        finish(year_a[0])
        assert dequeue() == ["a1"]
        assert len(year_b) == 3
