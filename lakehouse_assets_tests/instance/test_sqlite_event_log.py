"""The local instance's event log (``PooledSqliteEventLogStorage``, named in the repo's dagster.yaml).

What must hold: a range run still records one materialization per day and its check results; the
files are Dagster's own (an instance can go back to the stock class and keep its history); events are
written over a few kept connections instead of new ones per event; and a live run view still hears
about new events while the writer's connection stays open (they sit in the WAL file until a checkpoint).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage
from sqlalchemy import event

import lakehouse_assets.instance.sqlite_event_log as module
from lakehouse_assets.defs.common.keys import BRONZE_KLINES, SILVER_KLINES
from lakehouse_assets.defs.common.partitions import daily_partitions
from lakehouse_assets.instance.sqlite_event_log import PooledSqliteEventLogStorage
from lakehouse_assets_tests.harness import resources, run_klines
from lakehouse_assets_tests.samples import REPO, rewrite_zip_csv

DAYS = {"2020-01-01", "2020-01-02", "2020-01-03"}
ZIP = "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-02.zip"


@pytest.fixture(autouse=True)
def _restore_batch_size(monkeypatch):
    """The class sets DAGSTER_EVENT_BATCH_SIZE for its process; keep that inside each test."""
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)


def _home(path: Path, *, stock: bool = False) -> Path:
    """A DAGSTER_HOME with the repo's dagster.yaml, or (``stock``) the same without our event log class."""
    path.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    if stock:
        del config["event_log_storage"]
    (path / "dagster.yaml").write_text(yaml.safe_dump(config))
    return path


def _log(run_id: str, message: str) -> EventLogEntry:
    return EventLogEntry(error_info=None, level=logging.INFO, user_message=message, run_id=run_id,
                         timestamp=time.time(), step_key=None, job_name=None, dagster_event=None)


def test_a_range_run_keeps_per_day_status_and_checks_in_dagsters_own_files(tmp_path, sample_mirror, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "some_other_home"))  # the instance's own home wins
    home = _home(tmp_path / "home")
    opened: list[str] = []
    real_create_engine = module.create_engine

    def counting_create_engine(url, **kw):
        engine = real_create_engine(url, **kw)
        event.listen(engine, "connect", lambda *_: opened.append(str(url)))
        return engine

    monkeypatch.setattr(module, "create_engine", counting_create_engine)
    batches: list[list[str]] = []
    real_batch = PooledSqliteEventLogStorage._store_asset_events

    def recording_batch(self, events):
        batches.append([e.dagster_event_type.value for e in events])
        return real_batch(self, events)

    monkeypatch.setattr(PooledSqliteEventLogStorage, "_store_asset_events", recording_batch)
    res = resources(tmp_path / "lake", sample_mirror.as_uri(), "spot:BTCUSDT")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is PooledSqliteEventLogStorage
        result = run_klines(res, "2020-01-01", "2020-01-03", instance)
        assert result.success
        stored = instance.all_logs(result.run_id)
        checks = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        assert {r.event_log_entry.dagster_event.event_specific_data.check_name for r in checks} >= {
            "schema", "ohlc_consistency", "volumes", "time_grid", "completeness"}
        for key in (BRONZE_KLINES, SILVER_KLINES):
            assert instance.get_materialized_partitions(key) == DAYS
            # the range's per-day events went in as one batch; the asset's latest is the range's last day
            assert instance.get_latest_materialization_event(key).dagster_event.partition == "2020-01-03"
        planned = instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
        assert sorted(r.event_log_entry.dagster_event.partition for r in planned) == sorted([*DAYS, *DAYS])
    # where Dagster's default puts them, under the instance's home
    assert (home / "history" / "runs" / "index.db").exists()
    assert (home / "history" / "runs" / f"{result.run_id}.db").exists()
    assert not (tmp_path / "some_other_home").exists()
    # Dagster handed the per-day events over as batches (planned events at the start, each asset's three
    # materializations at the end of its step), written in one transaction per shard
    assert batches.count(["ASSET_MATERIALIZATION"] * 3) == 2
    assert ["ASSET_MATERIALIZATION_PLANNED"] * 6 in batches
    # a handful of connections for the whole run (run shard + index), not one or more per stored event
    assert len(stored) >= 40
    assert len(opened) <= 6, opened

    # back to Dagster's stock class: the same history, per day
    _home(home, stock=True)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage
        for key in (BRONZE_KLINES, SILVER_KLINES):
            assert instance.get_materialized_partitions(key) == DAYS
        again = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        assert [r.storage_id for r in again] == [r.storage_id for r in checks]


def test_a_live_run_view_hears_events_that_are_still_in_the_wal(tmp_path):
    """Writer and watcher are separate storages, as the run worker and the webserver are."""
    writer, reader = PooledSqliteEventLogStorage(str(tmp_path)), PooledSqliteEventLogStorage(str(tmp_path))
    run_id = str(uuid.uuid4())
    writer.store_event(_log(run_id, "first"))
    heard: list[str] = []
    got_last = threading.Event()

    def callback(entry: EventLogEntry, _cursor: str) -> None:
        heard.append(entry.user_message)
        if entry.user_message == "fourth":
            got_last.set()

    try:
        reader.watch(run_id, None, callback)
        for message in ("second", "third", "fourth"):
            writer.store_event(_log(run_id, message))
        assert (tmp_path / f"{run_id}.db-wal").stat().st_size > 0  # the writer has not checkpointed
        assert got_last.wait(timeout=30), heard  # a wait for the file event, not a timing
        assert heard == ["first", "second", "third", "fourth"]
    finally:
        reader.end_watch(run_id, callback)
        reader.dispose()
        writer.dispose()


def test_wipe_closes_kept_connections_before_deleting_run_files(tmp_path):
    storage = PooledSqliteEventLogStorage(str(tmp_path), max_open_shards=2)
    runs = [str(uuid.uuid4()) for _ in range(3)]  # more run shards than engines kept: the oldest are closed
    for run_id in runs:
        storage.store_event(_log(run_id, f"before {run_id}"))
    assert [e.user_message for e in storage.get_logs_for_run(runs[0])] == [f"before {runs[0]}"]
    storage.wipe()
    assert not (tmp_path / f"{runs[-1]}.db").exists()
    storage.store_event(_log(runs[-1], "after"))
    assert [e.user_message for e in storage.get_logs_for_run(runs[-1])] == ["after"]
    assert (tmp_path / f"{runs[-1]}.db").exists()
    storage.dispose()


def _status(instance: dg.DagsterInstance, key: dg.AssetKey) -> tuple[set[str], set[str]]:
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    value = get_and_update_asset_status_cache_value(instance, key, daily_partitions)
    return (set(value.deserialize_materialized_partition_subsets(daily_partitions).get_partition_keys()),
            set(value.deserialize_failed_partition_subsets(daily_partitions).get_partition_keys()))


@pytest.mark.parametrize("stock", [False, True], ids=["pooled", "dagster_stock"])
def test_failed_and_recovered_days_show_per_day_as_with_dagsters_class(tmp_path, mirror, stock):
    """A range run whose silver step fails marks each of its days failed, and a good re-run clears them:
    the same per-day status with our class as with Dagster's own."""
    original = (mirror / ZIP).read_bytes()
    rewrite_zip_csv(mirror / ZIP, lambda csv: csv[: len(csv) * 2 // 3])  # a day cut off mid-line: silver fails
    res = resources(tmp_path / "lake", mirror.as_uri(), "spot:BTCUSDT")
    with dg.DagsterInstance.from_config(str(_home(tmp_path / "home", stock=stock))) as instance:
        assert (type(instance.event_log_storage) is SqliteEventLogStorage) == stock
        assert not run_klines(res, "2020-01-01", "2020-01-03", instance, raise_on_error=False).success
        assert _status(instance, BRONZE_KLINES) == (DAYS, set())
        assert _status(instance, SILVER_KLINES) == (set(), DAYS)
        (mirror / ZIP).write_bytes(original)
        (mirror / (ZIP + ".CHECKSUM")).unlink()  # the re-published day (its old CHECKSUM no longer applies)
        assert run_klines(res, "2020-01-02", "2020-01-03", instance).success
        assert _status(instance, SILVER_KLINES) == ({"2020-01-02", "2020-01-03"}, {"2020-01-01"})


def _index_rows(home: Path) -> dict[str, object]:
    """What the index shard holds that the UI reads: asset and run-status events by day, per-day check
    executions, the asset table's latest materialization."""
    from dagster._core.storage.event_log.base import EventLogRecord
    from dagster._serdes import deserialize_value

    with sqlite3.connect(home / "history" / "runs" / "index.db") as con:
        rows = {
            "events": Counter(con.execute(
                "select dagster_event_type, asset_key, partition from event_logs where dagster_event_type is not null")),
            "check_executions": Counter(con.execute(
                "select asset_key, check_name, partition, execution_status from asset_check_executions")),
            # values differ per run (dagster/data_version is derived from the run): compare which are stored
            "tags": Counter(con.execute("select asset_key, key from asset_event_tags")),
        }
        latest = {}
        for key, record in con.execute("select asset_key, last_materialization from asset_keys"):
            if record:
                latest[key] = deserialize_value(record, EventLogRecord).event_log_entry.dagster_event.partition
        rows["latest_materialization"] = latest
    return rows


def test_the_index_holds_the_same_rows_as_with_dagsters_class(tmp_path, sample_mirror):
    seen = {}
    for stock in (True, False):
        home = _home(tmp_path / f"home-{stock}", stock=stock)
        res = resources(tmp_path / f"lake-{stock}", sample_mirror.as_uri(), "spot:BTCUSDT")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert (type(instance.event_log_storage) is SqliteEventLogStorage) == stock
            assert run_klines(res, "2020-01-01", "2020-01-03", instance).success
        seen[stock] = _index_rows(home)
    assert seen[False] == seen[True]
    executions = seen[False]["check_executions"]
    # one PLANNED row per check and day of the range (written once per check here), and the run's evaluation
    assert executions[('["silver", "klines"]', "schema", "2020-01-02", "PLANNED")] == 1
    assert executions[('["silver", "klines"]', "schema", None, "SUCCEEDED")] == 1
    assert seen[False]["latest_materialization"]['["silver", "klines"]'] == "2020-01-03"
