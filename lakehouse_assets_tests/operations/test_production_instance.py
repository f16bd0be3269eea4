"""A production-like Dagster deployment on this machine: PostgreSQL instance storage, the queued run
coordinator, a gRPC code server, the real dagster-daemon, one process per run, S3 compute logs, and the
lake on the S3 test server. A multi-day backfill is launched with the UI's GraphQL mutation and must
complete through the daemon.

Needs a PostgreSQL server: set LAKEHOUSE_TEST_POSTGRES_URL=postgresql://user:pass@127.0.0.1:5432/postgres
(a role allowed to CREATE DATABASE). `.ci/run` installs and starts one; without it this test is skipped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import pytest
import yaml

from lakehouse_assets.defs.common.keys import BRONZE_KLINES as BRONZE
from lakehouse_assets.defs.common.keys import SILVER_KLINES as SILVER
from lakehouse_assets.lake.sql import query
from lakehouse_assets.lake.store import open_store
from lakehouse_assets_tests.samples import REPO
from lakehouse_dev.fakes.archive_server import ArchiveServer

BIN = Path(sys.executable).parent
POSTGRES_URL = os.environ.get("LAKEHOUSE_TEST_POSTGRES_URL")

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="no PostgreSQL for the production-instance test: set LAKEHOUSE_TEST_POSTGRES_URL "
    "(postgresql://user:pass@127.0.0.1:5432/postgres); .ci/run starts one",
)

LAUNCH_BACKFILL = """
mutation($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
  }
}
"""


@pytest.fixture
def postgres_db() -> Iterator[dict[str, str]]:
    """A fresh database for this test (dropped afterwards), as DAGSTER_POSTGRES_* variables."""
    import psycopg2

    url = urllib.parse.urlsplit(POSTGRES_URL)
    admin = dict(host=url.hostname, port=url.port or 5432, user=url.username, password=url.password or "",
                 dbname=url.path.lstrip("/") or "postgres")
    try:
        conn = psycopg2.connect(connect_timeout=5, **admin)
    except psycopg2.OperationalError as exc:  # configured but unreachable: a real failure, not a skip
        pytest.fail(f"LAKEHOUSE_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {exc}")
    conn.autocommit = True
    name = f"lakehouse_test_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "DAGSTER_POSTGRES_HOST": admin["host"], "DAGSTER_POSTGRES_PORT": str(admin["port"]),
            "DAGSTER_POSTGRES_USER": admin["user"], "DAGSTER_POSTGRES_PASSWORD": admin["password"],
            "DAGSTER_POSTGRES_DB": name,
        }
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def production_home(home: Path, code_port: int) -> None:
    """deploy/dagster.yaml as is (Postgres, queued coordinator, limits, S3 compute logs, monitoring), except
    that runs are subprocesses of the code server instead of Docker containers (no Docker engine here)."""
    config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    config["run_launcher"] = {"module": "dagster._core.launcher", "class": "DefaultRunLauncher"}
    config["run_coordinator"]["config"] = {"dequeue_interval_seconds": 1}
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    (home / "workspace.yaml").write_text(yaml.safe_dump(
        {"load_from": [{"grpc_server": {"host": "127.0.0.1", "port": code_port, "location_name": "lakehouse"}}]}
    ))


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_backfill_through_daemon_on_postgres_in_separate_run_processes(
    tmp_path, postgres_db, s3_endpoint, sample_mirror, monkeypatch
):
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_graphql.test.utils import execute_dagster_graphql
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    lake_bucket, log_bucket = f"lake-{uuid.uuid4().hex[:8]}", f"logs-{uuid.uuid4().hex[:8]}"
    for bucket in (lake_bucket, log_bucket):
        s3.create_bucket(Bucket=bucket)
    home = tmp_path / "dagster_home"
    code_port = free_port()
    production_home(home, code_port)

    with ArchiveServer(sample_mirror) as archive:
        env = {
            **postgres_db,
            "DAGSTER_HOME": str(home),
            "DAGSTER_COMPUTE_LOG_BUCKET": log_bucket,
            "LAKEHOUSE_S3_ENDPOINT_URL": s3_endpoint,
            "AWS_REGION": "us-east-1",
            "LAKEHOUSE_STORAGE": f"s3://{lake_bucket}/lake",
            "LAKEHOUSE_ARCHIVE_URL": archive.base_url,
            "LAKEHOUSE_SYMBOLS": "spot:BTCUSDT",
            "LAKEHOUSE_START_DATE": "2020-01-01",
            "LAKEHOUSE_DAYS_PER_RUN": "2",  # 3 days -> 2 runs
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        child_env = {**os.environ, **env}
        logs = tmp_path / "logs"
        logs.mkdir()
        code = subprocess.Popen(
            [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(code_port),
             "-m", "lakehouse_assets.definitions", "--location-name", "lakehouse"],
            cwd=REPO, env=child_env, stdout=open(logs / "code.log", "w"), stderr=subprocess.STDOUT,
        )
        daemon = None
        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                assert isinstance(instance.run_storage, PostgresRunStorage)
                assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
                target = WorkspaceFileTarget(paths=[str(home / "workspace.yaml")])
                deadline = time.monotonic() + 90
                while True:  # wait for the code server to serve the definitions
                    with WorkspaceProcessContext(instance, target) as workspace:
                        request = workspace.create_request_context()
                        entry = request.get_code_location_entries()["lakehouse"]
                        if entry.code_location is not None:
                            launched = execute_dagster_graphql(request, LAUNCH_BACKFILL, {"backfillParams": {
                                "partitionNames": ["2020-01-01", "2020-01-02", "2020-01-03"],
                                "assetSelection": [{"path": BRONZE.path}, {"path": SILVER.path}],
                            }})
                            break
                    assert time.monotonic() < deadline and code.poll() is None, (logs / "code.log").read_text()
                    time.sleep(1)
                result = launched.data["launchPartitionBackfill"]
                assert result["__typename"] == "LaunchBackfillSuccess", launched
                backfill_id = result["backfillId"]

                daemon = subprocess.Popen(
                    [str(BIN / "dagster-daemon"), "run", "-w", str(home / "workspace.yaml")],
                    cwd=home, env=child_env, stdout=open(logs / "daemon.log", "w"), stderr=subprocess.STDOUT,
                )
                deadline = time.monotonic() + 300
                while instance.get_backfill(backfill_id).status.value in ("REQUESTED",):
                    assert time.monotonic() < deadline, (logs / "daemon.log").read_text()[-5000:]
                    assert daemon.poll() is None, (logs / "daemon.log").read_text()[-5000:]
                    time.sleep(2)
                backfill = instance.get_backfill(backfill_id)
                runs = sorted(
                    instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id})),
                    key=lambda r: r.tags["dagster/asset_partition_range_start"],
                )
                detail = {r.run_id: r.status for r in runs}
                assert backfill.status.value == "COMPLETED_SUCCESS", (detail, (logs / "daemon.log").read_text()[-3000:])
                assert [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                        for r in runs] == [("2020-01-01", "2020-01-02"), ("2020-01-03", "2020-01-03")]
                assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
                pids = set()
                for run in runs:
                    events = instance.all_logs(run.run_id)
                    assert any(e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_ENQUEUED"
                               for e in events)  # went through the queued run coordinator
                    started = [e.message for e in events if e.message and "Started process for run" in e.message]
                    assert started, [e.message for e in events][:20]
                    pids.add(started[0])
                assert len(pids) == 2  # each run in its own process
                for key in (BRONZE, SILVER):
                    assert instance.get_materialized_partitions(key) == {"2020-01-01", "2020-01-02", "2020-01-03"}
        finally:
            if daemon is not None:
                stop(daemon)
            stop(code)

    store = open_store(f"s3://{lake_bucket}/lake", s3_endpoint)
    summary = query(
        "select cast(date as varchar), count(*), arg_max(close, open_time) from silver.klines group by 1 order by 1",
        store=store,
    ).rows()
    assert summary == [("2020-01-01", 1440, 7200.85), ("2020-01-02", 1440, 6965.71), ("2020-01-03", 1440, 7344.96)]
    logs_written = s3.list_objects_v2(Bucket=log_bucket, Prefix="dagster-compute-logs/").get("KeyCount", 0)
    assert logs_written > 0  # S3ComputeLogManager uploaded the runs' stdout/stderr
