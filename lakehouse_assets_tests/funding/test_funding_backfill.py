"""A backfill of the funding tables launched from the UI targets exactly the selected days, and its run succeeds;
automation still treats gold/funding_features' lookback days as its inputs.

gold/funding_features reads LOOKBACK_DAYS (8) of silver/funding_rates before its own days. Declared as a
``TimeWindowPartitionMapping(start_offset=-8)``, that window also made Dagster's asset backfill (partition names +
asset selection, what the UI's "Launch backfill" sends) walk from the selected silver days to every gold day whose
lookback reads them: a backfill of bronze, silver and gold funding over [a, b] targeted gold over [a, b + 8], and
the runs after b failed for want of their own silver days. The backfill is launched here with the UI's GraphQL
mutation against the real code location (a code server subprocess); the backfill daemon's own iteration turns it
into one run, which the run launcher executes as the queue daemon would. The funding side is the real USD-M BTCUSDT
2026-04 month; the gold/features bars it joins onto are keys only (``test_gold.write_bar_keys``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lakehouse_assets.defs.common.keys import BRONZE_FUNDING, GOLD_FEATURES, GOLD_FUNDING, SILVER_FUNDING
from lakehouse_assets.defs.common.partitions import DAYS_PER_RUN
from lakehouse_assets.funding.features import LOOKBACK_DAYS, add_funding_features
from lakehouse_assets_tests.harness import (
    NO_REST,
    RANGE_END,
    RANGE_START,
    automation_defs,
    daemon_workspace,
    execute_queued_run,
    iterate_backfills,
    launch_backfill,
    read_table,
    resources,
    run_funding,
    targeted_partitions,
    write_bar_keys,
)

SYMBOLS = "um:BTCUSDT"
BACKFILL = ["2026-04-10", "2026-04-11"]  # the backfilled range, inside the bundled funding month
LOOKBACK = [f"2026-04-{d:02d}" for d in range(2, 10)]  # its 8 lookback days, materialized before
FUNDING_CHAIN = [BRONZE_FUNDING, SILVER_FUNDING, GOLD_FUNDING]


@pytest.fixture
def workspace(queued_instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_mirror: Path):
    """The code location as the webserver and the daemons load it (a code server subprocess, which inherits
    these settings, as do the run workers it starts). REST on port 9: a published month never needs it."""
    monkeypatch.setenv("LAKEHOUSE_STORAGE", str(tmp_path / "lake"))
    monkeypatch.setenv("LAKEHOUSE_ARCHIVE_URL", sample_mirror.as_uri())
    monkeypatch.setenv("LAKEHOUSE_REST_URL", NO_REST)
    monkeypatch.setenv("LAKEHOUSE_SYMBOLS", SYMBOLS)
    with daemon_workspace(queued_instance) as context:
        yield context


def test_backfill_of_the_funding_tables_targets_the_range_and_its_run_reads_the_lookback(
    tmp_path, sample_mirror, instance, queued_instance, workspace
):
    from dagster._core.execution.backfill import BulkActionStatus

    assert DAYS_PER_RUN >= len(BACKFILL), "LAKEHOUSE_DAYS_PER_RUN cuts the two days into one run"
    lake = tmp_path / "lake"
    bars = write_bar_keys(lake, date(2026, 4, 10), date(2026, 4, 11))  # gold/features of the backfilled days
    # the reference: silver over the whole month in a lake of its own
    reference = tmp_path / "reference"
    assert run_funding(resources(reference, sample_mirror.as_uri(), SYMBOLS), "2026-04-01", "2026-04-30", instance).success
    # silver for the lookback days exists, so the backfilled gold days read their whole window
    assert run_funding(resources(lake, sample_mirror.as_uri(), SYMBOLS), LOOKBACK[0], LOOKBACK[-1], instance).success

    backfill_id = launch_backfill(workspace, FUNDING_CHAIN, BACKFILL)
    assert targeted_partitions(queued_instance, backfill_id) == {key.to_user_string(): BACKFILL for key in FUNDING_CHAIN}

    # one range run builds the three tables (they share the partitions and the backfill policy)
    for _ in range(2):  # a second iteration must not request anything twice
        iterate_backfills(workspace)
    (run,) = queued_instance.get_runs()
    assert run.asset_selection == set(FUNDING_CHAIN)
    assert (run.tags[RANGE_START], run.tags[RANGE_END]) == (BACKFILL[0], BACKFILL[-1])
    execute_queued_run(workspace, queued_instance, run)
    iterate_backfills(workspace)
    assert queued_instance.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
    assert len(queued_instance.get_runs()) == 1
    for key in FUNDING_CHAIN:
        assert queued_instance.get_materialized_partitions(key) == set(BACKFILL), key.to_user_string()

    # the lookback was read inside the run: all 8 days present, so the WARN check passed, and the features
    # equal one computation over the whole month of settlements
    records = queued_instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    assert all(e.passed for e in evaluations)  # silver's checks too
    evaluations = {e.check_name: e for e in evaluations if e.asset_key == GOLD_FUNDING}
    assert {name: e.passed for name, e in evaluations.items()} == {"funding_no_lookahead": True, "funding_coverage": True}
    assert evaluations["funding_coverage"].metadata["lookback_days_missing"].value == "none"
    written = queued_instance.get_latest_materialization_event(GOLD_FUNDING).asset_materialization.metadata
    assert written["days_read"].value == f"{LOOKBACK[0]}..{BACKFILL[-1]}"
    assert written["settlements_read"].value == 3 * (len(LOOKBACK) + len(BACKFILL))

    backfilled = read_table(lake, "gold/funding_features").drop("date").sort("interval", "open_time")
    month = read_table(reference, "silver/funding_rates").drop("date")
    expected = add_funding_features(bars.filter(pl.col("market") == "um"), month).sort("interval", "open_time")
    assert backfilled.height == 2 * (24 + 1)  # um 1h and 1d bars of two days; spot bars have no funding
    assert backfilled["funding_events_7d"].min() == 21  # a full week of settlements behind every bar
    assert_frame_equal(backfilled, expected.select(backfilled.columns))


def test_automation_treats_the_silver_lookback_days_as_inputs() -> None:
    """The graph maps a gold/funding_features day to that day of silver only; the automation condition still maps
    it through the window, as the TimeWindowPartitionMapping did: a day is not started while a silver day of its
    window is missing, and a changed silver day re-runs every day whose window holds it."""
    defs = automation_defs(resources("unused", "file:///unused", SYMBOLS))
    now = datetime(2020, 1, 20, 6, 5, tzinfo=UTC)  # partitions up to 2020-01-19, all in follow_upstream's window
    days = [f"2020-01-{d:02d}" for d in range(1, 20)]

    def span(first: int, last: int) -> list[str]:
        return [f"2020-01-{d:02d}" for d in range(first, last + 1)]

    with dg.instance_for_test() as instance:

        def tick(cursor: object) -> tuple[list[str], object]:
            result = dg.evaluate_automation_conditions(
                defs=defs, instance=instance, asset_selection=dg.AssetSelection.assets(GOLD_FUNDING),
                evaluation_time=now, cursor=cursor,
            )
            return sorted(result.get_requested_partitions(GOLD_FUNDING)), result.cursor

        def materialized(key: dg.AssetKey, keys: list[str]) -> None:
            for day in keys:
                instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day))

        requested, cursor = tick(None)
        assert requested == []
        materialized(GOLD_FEATURES, days)
        materialized(SILVER_FUNDING, [d for d in days if d != "2020-01-05"])
        requested, cursor = tick(cursor)
        # not 01-05 (its own day is missing) nor the 8 days after it (a lookback day is missing)
        assert requested == span(1, 4) + span(5 + LOOKBACK_DAYS + 1, 19)
        materialized(GOLD_FUNDING, requested)
        requested, cursor = tick(cursor)
        assert requested == []

        materialized(SILVER_FUNDING, ["2020-01-05"])  # the missing day lands
        requested, cursor = tick(cursor)
        assert requested == span(5, 5 + LOOKBACK_DAYS)
        materialized(GOLD_FUNDING, requested)
        requested, cursor = tick(cursor)
        assert requested == []

        materialized(SILVER_FUNDING, ["2020-01-10"])  # e.g. its month re-published: the days reading it re-run
        requested, cursor = tick(cursor)
        assert requested == span(10, 10 + LOOKBACK_DAYS)
        materialized(GOLD_FUNDING, requested)
        assert tick(cursor)[0] == []  # each refreshed once
