"""Shared fixtures, each defined once. Tests never touch the internet: archives come from a local mirror.

* ``sample_mirror`` (session): a Binance-layout mirror of the bundled real files; ``mirror``: a private
  copy of it a test may damage.
* ``archive_server`` / ``rest_server``: the Binance stand-ins (``lakehouse_dev/fakes``) on 127.0.0.1.
* ``s3_endpoint`` (session): a real S3-protocol server (moto); ``s3_lake``: a fresh bucket on it behind the
  fault-injecting proxy.
* ``instance``: a temporary Dagster instance; ``clock``: the sensors' clock, frozen.

Plain helpers (data paths, ``utc``, loaders) are in ``samples.py``; running the project's jobs is
``harness.py``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import boto3
import dagster as dg
import pytest

from lakehouse_assets_tests.s3_fault_proxy import S3FaultProxy
from lakehouse_assets_tests.samples import SAMPLE_DATA, copy_mirror, utc
from lakehouse_dev.fakes.archive_server import ArchiveServer
from lakehouse_dev.fakes.rest_server import BinanceRestServer
from lakehouse_dev.fixtures.sample_mirror import build_sample_mirror


@pytest.fixture(scope="session")
def sample_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Binance-layout mirror of the bundled real samples (CSV-only samples wrapped in local zips)."""
    mirror = tmp_path_factory.mktemp("sample_mirror")
    build_sample_mirror(SAMPLE_DATA, mirror)
    return mirror


@pytest.fixture
def mirror(tmp_path: Path, sample_mirror: Path) -> Path:
    """A private copy of the sample mirror (``tmp_path / "mirror"``) whose files a test may damage."""
    return copy_mirror(sample_mirror, tmp_path / "mirror")


@pytest.fixture
def archive_server(sample_mirror: Path) -> Iterator[ArchiveServer]:
    """A fresh 127.0.0.1 HTTP server over the sample mirror (clean request log, no faults)."""
    with ArchiveServer(sample_mirror) as server:
        yield server


@pytest.fixture
def rest_server() -> Iterator[BinanceRestServer]:
    """A fresh Binance-compatible REST API on 127.0.0.1 serving the real sample klines (no faults, empty log)."""
    with BinanceRestServer(SAMPLE_DATA) as server:
        yield server


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A temporary Dagster instance (in-process runs, its own event log), removed afterwards."""
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def queued_instance() -> Iterator[dg.DagsterInstance]:
    """A test instance with the queued run coordinator: runs wait in the queue, nothing executes by itself."""
    with dg.instance_for_test(
        overrides={"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}}
    ) as instance:
        yield instance


class Clock:
    """The sensors' frozen clock: ``clock.set(datetime)``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def set(self, when: datetime) -> None:
        self.now = when


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Freeze ``sensors.utc_now`` (what every sensor, schedule and the freshness check read), at
    2020-01-04 06:00 UTC unless a test sets it: then the bundled 2020-01-01..03 files are "the last few days"."""
    from lakehouse_assets.defs.common import sensors

    c = Clock(utc(2020, 1, 4, 6, 0))
    monkeypatch.setattr(sensors, "utc_now", lambda: c.now)
    return c


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-protocol server (moto) on 127.0.0.1: Polars and DuckDB/pyarrow talk to it over HTTP.

    ``mock_aws`` would not do: it patches botocore only, not Polars' or pyarrow's native S3 clients.
    Dummy credentials and AWS_ENDPOINT_URL make sure nothing can reach real AWS.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=url,
    )
    try:
        yield url
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_lake(s3_endpoint: str) -> Iterator[tuple[str, S3FaultProxy]]:
    """A fresh bucket on the S3 server and a fault-injecting proxy in front of it: ``(s3://bucket/lake, proxy)``.
    Point the lake's S3 client at ``proxy.url`` to have faults injected."""
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    with S3FaultProxy(s3_endpoint) as proxy:
        yield f"s3://{bucket}/lake", proxy
