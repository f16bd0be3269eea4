"""Fault tolerance: kill -9 mid-write, concurrent runs, S3 and archive faults, step retries.

Writers are real separate processes (``run_child``) where the fault is a process dying or racing;
S3 faults come from a fault-injecting proxy in front of the real S3-protocol test server (moto).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3
import dagster as dg
import polars as pl
import pytest

from lakehouse_assets.defs.resources import BinanceArchiveResource
from lakehouse_assets.lake.sql import query
from lakehouse_assets.lake.store import LocalStore, open_store
from lakehouse_assets_tests.harness import failure_text, resources, run_klines, s3_resources
from lakehouse_assets_tests.s3_fault_proxy import S3FaultProxy
from lakehouse_assets_tests.samples import REPO, SPOT_OPEN_CLOSE
from lakehouse_dev.fakes.archive_server import ArchiveServer

DAYS = ["2020-01-01", "2020-01-02", "2020-01-03"]


def child(home: Path, lake: str, archive_url: str, start: str, end: str, **env: str) -> subprocess.Popen:
    if not home.exists():
        home.mkdir(parents=True)
        with dg.DagsterInstance.from_config(str(home)) as inst:  # create the sqlite storages once, up front
            inst.get_runs()
            inst.get_materialized_partitions(dg.AssetKey(["silver", "klines"]))
    full_env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "lakehouse_assets_tests.run_child", lake, archive_url, "spot:BTCUSDT", start, end],
        cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early ({proc.returncode}):\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("child never reached the controlled point")
        time.sleep(0.05)


def kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def day_summary(store) -> list[tuple]:
    return query(
        "select cast(date as varchar) d, count(*) n, count(distinct open_time) u, "
        "arg_min(open, open_time) first_open, arg_max(close, open_time) last_close "
        "from silver.klines group by date order by date",
        store=store,
    ).rows()


def assert_exact(store, days=DAYS) -> None:
    assert day_summary(store) == [(d, 1440, 1440, *SPOT_OPEN_CLOSE[d]) for d in days]


# --------------------------------------------------------------------------- kill -9


@pytest.mark.parametrize("batch", ["1", "256"])
def test_kill_9_mid_write_leaves_old_or_new_files_never_torn_and_rerun_is_exact(
    tmp_path, sample_mirror, instance, batch
):
    """Files are stored in batches (``put_many``: temps written and fsynced together, then renamed in order). With
    one file per batch the killed run has already replaced 2020-01-01; with the default batch the three days are
    one batch and none of them is replaced. Either way every file is the old one or the new one."""
    lake = tmp_path / "lake"
    url = sample_mirror.as_uri()
    assert run_klines(resources(str(lake), url, "spot:BTCUSDT"), DAYS[0], DAYS[-1], instance).success
    files = {d: lake / f"silver/klines/date={d}/spot-BTCUSDT.parquet" for d in DAYS}
    inodes = {d: files[d].stat().st_ino for d in DAYS}

    marker = tmp_path / "hanging"
    proc = child(tmp_path / "home", str(lake), url, DAYS[0], DAYS[-1],
                 LAKEHOUSE_TEST_HANG_AT_PUT="2", LAKEHOUSE_TEST_MARKER=str(marker), LAKEHOUSE_TEST_PUT_BATCH=batch)
    wait_for(marker.exists, proc)
    kill9(proc)  # killed while writing 2020-01-02: its temp file is written, not yet fsynced nor renamed

    assert marker.read_text() == "silver/klines/date=2020-01-02/spot-BTCUSDT.parquet"
    replaced_first = files["2020-01-01"].stat().st_ino != inodes["2020-01-01"]
    assert replaced_first == (batch == "1")  # an earlier batch is visible, the current one is not
    assert files["2020-01-02"].stat().st_ino == inodes["2020-01-02"]  # the previous file, untouched
    assert files["2020-01-03"].stat().st_ino == inodes["2020-01-03"]
    leftovers = [p.name for p in files["2020-01-02"].parent.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".spot-BTCUSDT.parquet.")  # hidden from readers
    store = LocalStore(lake)
    assert store.list_keys("silver/klines/date=2020-01-02") == ["silver/klines/date=2020-01-02/spot-BTCUSDT.parquet"]
    assert_exact(store)  # every reader sees complete files: no torn file, no duplicate rows

    # Dagster never recorded the killed run's silver materialization; the run monitor marks it failed
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as killed:
        (run,) = killed.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED
        assert killed.get_materialized_partitions(dg.AssetKey(["silver", "klines"])) == set()

    assert run_klines(resources(str(lake), url, "spot:BTCUSDT"), DAYS[0], DAYS[-1], instance).success
    assert_exact(store)


def test_kill_9_mid_upload_to_s3_leaves_no_partial_object_and_rerun_is_exact(
    tmp_path, sample_mirror, s3_endpoint, instance
):
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    storage = f"s3://{bucket}/lake"
    url = sample_mirror.as_uri()
    with S3FaultProxy(s3_endpoint) as proxy:
        proxy.inject("PUT", "/silver/klines/date=2020-01-01/", stall=True)  # a first upload: nothing before it
        proc = child(tmp_path / "home", storage, url, DAYS[0], DAYS[-1], LAKEHOUSE_S3_ENDPOINT_URL=proxy.url)
        wait_for(proxy.stalled.is_set, proc)
        kill9(proc)  # half of the Parquet body was sent when the writer died
        proxy.clear()

    store = open_store(storage, s3_endpoint)
    assert store.list_keys("silver") == []  # S3 shows an object only after a complete PUT
    assert len(store.list_keys("bronze/binance")) == 6  # bronze (written before) is complete: zips + CHECKSUMs

    res = resources(storage, url, "spot:BTCUSDT", s3_endpoint_url=s3_endpoint)
    assert run_klines(res, DAYS[0], DAYS[-1], instance).success
    assert_exact(store)


# --------------------------------------------------------------------------- concurrent runs


def test_two_runs_writing_different_days_at_the_same_time_both_succeed(tmp_path, sample_mirror):
    lake = tmp_path / "lake"
    url = sample_mirror.as_uri()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {"LAKEHOUSE_TEST_BARRIER": f"{barrier}:2"}
    home = tmp_path / "home"  # one shared sqlite instance, like two runs of one deployment
    first = child(home, str(lake), url, "2020-01-01", "2020-01-02", **env)
    second = child(home, str(lake), url, "2020-01-03", "2020-01-03", **env)
    out = [p.communicate(timeout=180)[0] for p in (first, second)]
    assert (first.returncode, second.returncode) == (0, 0), out
    assert len(list(barrier.iterdir())) == 2  # both were writing silver at the same moment
    assert_exact(LocalStore(lake))
    with dg.DagsterInstance.from_config(str(home)) as inst:
        assert {r.status for r in inst.get_runs()} == {dg.DagsterRunStatus.SUCCESS}
        assert inst.get_materialized_partitions(dg.AssetKey(["silver", "klines"])) == set(DAYS)
        assert inst.get_materialized_partitions(dg.AssetKey(["bronze", "klines_archive"])) == set(DAYS)


# --------------------------------------------------------------------------- S3 faults


def test_transient_s3_faults_are_retried(s3_lake, s3_endpoint, sample_mirror, instance):
    storage, proxy = s3_lake
    proxy.inject("PUT", "/silver/klines/date=2020-01-01/", status=503, times=2)       # SlowDown twice
    proxy.inject("PUT", "/silver/klines/date=2020-01-02/", status=500)                # InternalError
    proxy.inject("PUT", "/silver/klines/date=2020-01-03/", delay=4)                   # > 2 s read timeout
    proxy.inject("GET", "/bronze/binance/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-02.zip", reset=True)
    proxy.inject("GET", "/bronze/klines_archive/date=2020-01-03/", status=503)        # Polars' own reader
    res = s3_resources(storage, proxy.url, sample_mirror.as_uri(), attempts=5, timeout=2)
    result = run_klines(res, DAYS[0], DAYS[-1], instance)
    assert result.success
    assert proxy.count("PUT", "/silver/klines/date=2020-01-01/") == 3
    assert proxy.count("PUT", "/silver/klines/date=2020-01-02/") == 2
    assert proxy.count("PUT", "/silver/klines/date=2020-01-03/") == 2
    assert proxy.count("GET", "BTCUSDT-1m-2020-01-02.zip") >= 2
    assert proxy.count("GET", "/bronze/klines_archive/date=2020-01-03/") >= 2
    assert_exact(open_store(storage, s3_endpoint))


@pytest.mark.parametrize(
    ("status", "code", "attempts"),
    # 5xx: 3 botocore attempts in each of 2 step attempts (LAKEHOUSE_RETRY_MAX=1), then given up; 403: never retried
    [(500, "InternalError", 3 * 2), (403, "AccessDenied", 1)],
)
def test_permanent_s3_fault_fails_clearly_and_leaves_no_partial_data(
    s3_lake, s3_endpoint, sample_mirror, instance, status, code, attempts, monkeypatch
):
    monkeypatch.setenv("LAKEHOUSE_RETRY_MAX", "1")
    monkeypatch.setenv("LAKEHOUSE_RETRY_DELAY_SECONDS", "0.05")
    storage, proxy = s3_lake
    proxy.inject("PUT", "/silver/klines/", status=status, times=1000)
    res = s3_resources(storage, proxy.url, sample_mirror.as_uri(), attempts=3)
    result = run_klines(res, DAYS[0], DAYS[-1], instance, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert f"S3 PUT of {storage}/silver/klines/date=2020-01-01/spot-BTCUSDT.parquet failed" in text
    assert code in text
    assert proxy.count("PUT", "/silver/klines/") == attempts  # the first file failed; nothing else was tried
    store = open_store(storage, s3_endpoint)
    assert store.list_keys("silver") == []
    assert instance.get_materialized_partitions(dg.AssetKey(["silver", "klines"])) == set()
    # the fault clears: a plain rerun completes the same days exactly
    proxy.clear()
    assert run_klines(res, DAYS[0], DAYS[-1], instance).success
    assert_exact(store)


# --------------------------------------------------------------------------- archive faults


def test_archive_faults_through_the_pipeline_are_absorbed(tmp_path, sample_mirror, instance):
    with ArchiveServer(sample_mirror) as server:
        server.inject("BTCUSDT-1m-2020-01-01.zip", status=503, times=2, methods=("GET",))
        server.inject("BTCUSDT-1m-2020-01-02.zip.CHECKSUM", reset=True)
        server.inject("BTCUSDT-1m-2020-01-02.zip", truncate=True, methods=("GET",))
        server.inject("BTCUSDT-1m-2020-01-03.zip", delay=2.5, methods=("GET",))
        res = resources(str(tmp_path / "lake"), server.base_url, "spot:BTCUSDT")
        res["archive"] = BinanceArchiveResource(base_url=server.base_url, backoff_seconds=0.01, max_attempts=3,
                                                timeout_seconds=1.0)
        result = run_klines(res, DAYS[0], DAYS[-1], instance)
        assert result.success
        # each day is one CHECKSUM + one zip GET when healthy; every injected fault cost exactly one retry
        # (the faults match by substring, so the CHECKSUM request, fetched first, absorbs them)
        assert [server.count("GET", f"BTCUSDT-1m-{d}.zip") for d in DAYS] == [2 + 2, 2 + 2, 2 + 1]
    manifest = pl.read_parquet(sorted((tmp_path / "lake/bronze/klines_archive").glob("date=*/*.parquet")))
    assert manifest["checksum_status"].to_list() == ["verified"] * 3
    assert_exact(LocalStore(tmp_path / "lake"))


def test_archive_outage_longer_than_the_client_retries_is_retried_by_the_step_policy(tmp_path, sample_mirror):
    """The client gives up after 3 attempts; Dagster's RetryPolicy re-runs the step, which then succeeds."""
    home = tmp_path / "home"
    with ArchiveServer(sample_mirror) as server:
        server.inject("BTCUSDT-1m-2020-01-02.zip", status=503, times=3, methods=("GET",))
        proc = child(home, str(tmp_path / "lake"), server.base_url, DAYS[0], DAYS[-1],
                     LAKEHOUSE_RETRY_DELAY_SECONDS="0.5")
        out = proc.communicate(timeout=180)[0]
        assert proc.returncode == 0, out
    with dg.DagsterInstance.from_config(str(home)) as inst:
        (run,) = inst.get_runs()
        retried = inst.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
        assert [e.step_key for e in retried] == ["bronze__klines_archive"]
        assert "giving up on" in retried[0].dagster_event.event_specific_data.error.to_string()
        assert run.status == dg.DagsterRunStatus.SUCCESS
    assert_exact(LocalStore(tmp_path / "lake"))


def test_network_steps_have_an_exponential_retry_policy():
    from lakehouse_assets.defs.klines.bronze import klines_archive

    policy = klines_archive.op.retry_policy
    assert policy.backoff == dg.Backoff.EXPONENTIAL and policy.max_retries >= 2 and policy.delay >= 1
    assert datetime.now(UTC).year >= 2020
