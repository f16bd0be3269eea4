"""Shared fixtures. Tests never touch the internet: archives come from a local mirror."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehouse_dev.fixtures.sample_mirror import build_sample_mirror
from lakehouse_dev.fakes.archive_server import ArchiveServer
from lakehouse_dev.fakes.rest_server import BinanceRestServer

SAMPLE_DATA = Path(__file__).parent / "data" / "binance"


@pytest.fixture(scope="session")
def sample_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Binance-layout mirror of the bundled real samples (CSV-only samples wrapped in local zips)."""
    mirror = tmp_path_factory.mktemp("sample_mirror")
    build_sample_mirror(SAMPLE_DATA, mirror)
    return mirror


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


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-protocol server (moto) on 127.0.0.1: Polars and DuckDB/pyarrow talk to it over HTTP.

    ``mock_aws`` would not do: it patches botocore only, not Polars' or pyarrow's native S3 clients.
    Dummy credentials and AWS_ENDPOINT_URL make sure nothing can reach real AWS.
    """
    import os

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
