"""The archive client's pooled keep-alive connections and its configurable concurrency, over a real socket.

The stand-in counts accepted TCP connections, so "N downloads over few connections" is observed on
the server side, not inferred from the client's internals. The files are the real sample zips.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest

from lakehouse_assets.archive.client import ArchiveClient
from lakehouse_assets.defs.resources import BinanceArchiveResource
from lakehouse_dev.fakes.archive_server import ArchiveServer


def zip_paths(server: ArchiveServer) -> list[str]:
    return [key for key in server.keys() if key.endswith(".zip")]


def download_all(client: ArchiveClient, paths: list[str], threads: int) -> list[bytes]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(client.fetch, paths))


def test_many_downloads_from_many_threads_share_a_few_keep_alive_connections(
    archive_server: ArchiveServer, sample_mirror: Path
) -> None:
    paths = zip_paths(archive_server)
    assert len(paths) >= 10  # the real sample: daily spot, USD-M and COIN-M zips
    jobs = paths * 4
    with ArchiveClient(archive_server.base_url, concurrency=4) as client:
        first = download_all(client, jobs, threads=16)  # more threads than connections: they wait, not connect
        second = download_all(client, jobs, threads=16)  # a new thread pool reuses the same connections
    assert first == second == [(sample_mirror / p).read_bytes() for p in jobs]
    assert archive_server.count("GET", ".zip") == 2 * len(jobs)
    # 2 x 4 x len(paths) GETs over at most `concurrency` TCP connections (one per request without keep-alive).
    assert 1 <= archive_server.connections <= 4


def test_one_connection_when_concurrency_is_one(archive_server: ArchiveServer, sample_mirror: Path) -> None:
    paths = zip_paths(archive_server)[:5]
    with ArchiveClient(archive_server.base_url, concurrency=1) as client:
        bodies = download_all(client, paths, threads=4)
        assert client.head(paths[0]) is not None  # a HEAD probe rides the same connection
    assert bodies == [(sample_mirror / p).read_bytes() for p in paths]
    assert archive_server.connections == 1


def test_a_connection_the_server_closed_is_replaced_not_fatal(archive_server: ArchiveServer, sample_mirror: Path) -> None:
    path = zip_paths(archive_server)[0]
    with ArchiveClient(archive_server.base_url, concurrency=2, backoff_seconds=0.01) as client:
        client.sleep = lambda seconds: None
        assert client.fetch(path) == (sample_mirror / path).read_bytes()
        archive_server.inject(path, truncate=True)  # half a body, then "Connection: close"
        assert client.fetch(path) == (sample_mirror / path).read_bytes()  # retried on a fresh connection
        assert client.fetch(path) == (sample_mirror / path).read_bytes()
    assert archive_server.count("GET", path) == 4
    assert archive_server.connections == 2  # the first one, then its replacement, kept alive afterwards


@pytest.mark.parametrize("bad", [0, 65, -1])
def test_concurrency_is_bounded(bad: int) -> None:
    with pytest.raises(ValueError, match=r"archive concurrency must be an integer between 1 and 64, got"):
        ArchiveClient("http://127.0.0.1:1", concurrency=bad)


def test_the_resource_takes_concurrency_from_LAKEHOUSE_ARCHIVE_CONCURRENCY(monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse_assets.defs.resources import default_resources

    monkeypatch.setenv("LAKEHOUSE_ARCHIVE_CONCURRENCY", "3")
    resource = default_resources()["archive"].process_config_and_initialize()  # resolves the EnvVar as a run would
    assert resource.max_workers == 3
    with resource.client() as client:
        assert client.concurrency == 3


def test_a_bad_concurrency_fails_naming_the_setting() -> None:
    with pytest.raises(dg.Failure, match=r"LAKEHOUSE_ARCHIVE_CONCURRENCY='100': expected an integer between 1 and 64"):
        BinanceArchiveResource(max_workers=100).client()
