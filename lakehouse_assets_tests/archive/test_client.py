"""ArchiveClient against a real socket (ArchiveServer on 127.0.0.1) and a file:// mirror.

The zips are real Binance files; BTCUSDT-1m-2020-01-01 has a publisher CHECKSUM whose digest is
pinned here, so "fetch + verify" checks real bytes, not a fixture we made ourselves.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lakehouse_assets.archive.client import ArchiveClient, ArchiveFetchError, ArchiveNotFound, parse_checksum
from lakehouse_dev.fakes.archive_server import ArchiveServer

ZIP = "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip"
ZIP_SHA256 = "dd579c62368ded93d3f01a1904575b932279e32936e181c062763e605793c1c2"
MISSING = "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2031-01-01.zip"


class RecordingSleep:
    """Replaces time.sleep so backoff is asserted, not waited for."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_client(base_url: str, **kwargs: float) -> tuple[ArchiveClient, RecordingSleep]:
    options: dict[str, float] = {"timeout": 5.0, "max_attempts": 5, "backoff_seconds": 0.01}
    options.update(kwargs)
    client = ArchiveClient(
        base_url,
        timeout=options["timeout"],
        max_attempts=int(options["max_attempts"]),
        backoff_seconds=options["backoff_seconds"],
    )
    sleep = RecordingSleep()
    client.sleep = sleep
    client.rng = random.Random(0)
    return client, sleep


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- happy path


def test_fetch_real_zip_over_http_matches_published_checksum(archive_server: ArchiveServer) -> None:
    client, sleep = make_client(archive_server.base_url)
    with client:
        data = client.fetch(ZIP)
        published = parse_checksum(client.fetch(ZIP + ".CHECKSUM"), expected_name=ZIP)
    assert published == ZIP_SHA256
    assert sha256(data) == published
    assert len(data) == 69497
    assert archive_server.count("GET", ZIP) == 2  # the zip and its CHECKSUM, nothing retried
    assert sleep.calls == []


def test_fetch_real_zip_from_file_mirror(sample_mirror: Path) -> None:
    client, _ = make_client(sample_mirror.as_uri())
    assert client.url_for(ZIP) == (sample_mirror / ZIP).as_uri()
    data = client.fetch(ZIP)
    assert sha256(data) == parse_checksum(client.fetch(ZIP + ".CHECKSUM")) == ZIP_SHA256


def test_url_for_encodes_segments_and_rejects_traversal() -> None:
    client = ArchiveClient("https://data.binance.vision/")
    assert client.url_for("/" + ZIP) == f"https://data.binance.vision/{ZIP}"
    assert client.url_for("data/spot/daily/klines/币安USDT/1m/x.zip").endswith("/%E5%B8%81%E5%AE%89USDT/1m/x.zip")
    with pytest.raises(ValueError):
        client.url_for("data/../../etc/passwd")
    with pytest.raises(ValueError):
        ArchiveClient("ftp://example.org")


def test_exists_via_head(archive_server: ArchiveServer, sample_mirror: Path) -> None:
    client, _ = make_client(archive_server.base_url)
    assert client.exists(ZIP) is True
    assert client.exists(MISSING) is False
    assert archive_server.count("HEAD") == 2
    assert archive_server.count("GET") == 0
    file_client, _ = make_client(sample_mirror.as_uri())
    assert file_client.exists(ZIP) and not file_client.exists(MISSING)


# --------------------------------------------------------------------------- not found


def test_404_is_archive_not_found_without_retry(archive_server: ArchiveServer) -> None:
    client, sleep = make_client(archive_server.base_url)
    with pytest.raises(ArchiveNotFound) as info:
        client.fetch(MISSING)
    assert info.value.url == f"{archive_server.base_url}/{MISSING}"
    assert client.fetch_optional(MISSING) is None
    assert archive_server.count("GET", MISSING) == 2  # one per call: a 404 is an answer, not a failure
    assert sleep.calls == []


def test_missing_file_in_file_mirror_is_archive_not_found(sample_mirror: Path) -> None:
    client, _ = make_client(sample_mirror.as_uri())
    with pytest.raises(ArchiveNotFound):
        client.fetch(MISSING)
    with pytest.raises(ArchiveNotFound):
        client.fetch("data/spot/daily/klines/BTCUSDT/1m")  # a directory is not a file
    assert client.fetch_optional(MISSING) is None
    # real zip whose publisher CHECKSUM was never obtained: no fabricated CHECKSUM in the mirror
    assert client.fetch_optional("data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2022-09-07.zip.CHECKSUM") is None


# --------------------------------------------------------------------------- transient faults


def test_503_twice_then_success(archive_server: ArchiveServer, caplog: pytest.LogCaptureFixture) -> None:
    archive_server.inject("BTCUSDT-1m-2020-01-01.zip", status=503, times=2, methods=("GET",))
    client, sleep = make_client(archive_server.base_url)
    with caplog.at_level(logging.WARNING, logger="lakehouse.archive"):
        data = client.fetch(ZIP)
    assert sha256(data) == ZIP_SHA256
    assert archive_server.count("GET", ZIP) == 3
    assert len(sleep.calls) == 2
    assert 0.005 <= sleep.calls[0] <= 0.01 <= sleep.calls[1] <= 0.02  # exponential with equal jitter
    retries = [r for r in caplog.records if r.name == "lakehouse.archive"]
    assert len(retries) == 2 and "HTTP 503" in retries[0].getMessage() and "attempt 1/5" in retries[0].getMessage()


def test_429_retry_after_is_honoured(archive_server: ArchiveServer) -> None:
    archive_server.inject(ZIP, status=429, retry_after=7, methods=("GET",))
    client, sleep = make_client(archive_server.base_url)
    assert sha256(client.fetch(ZIP)) == ZIP_SHA256
    assert archive_server.count("GET", ZIP) == 2
    assert len(sleep.calls) == 1 and 7.0 <= sleep.calls[0] < 8.0  # the server's delay, not our 0.01 s


def test_418_with_retry_after_beyond_limit_gives_up_instead_of_retrying_early(archive_server: ArchiveServer) -> None:
    archive_server.inject(ZIP, status=418, retry_after=3600, methods=("GET",))
    client, sleep = make_client(archive_server.base_url)
    with pytest.raises(ArchiveFetchError) as info:
        client.fetch(ZIP)
    assert "3600" in str(info.value) and "HTTP 418" in str(info.value)
    assert sleep.calls == [] and archive_server.count("GET", ZIP) == 1


def test_connection_reset_then_success(archive_server: ArchiveServer) -> None:
    archive_server.inject(ZIP, reset=True)
    client, sleep = make_client(archive_server.base_url)
    assert sha256(client.fetch(ZIP)) == ZIP_SHA256
    assert archive_server.count("GET", ZIP) == 2
    assert len(sleep.calls) == 1


def test_truncated_body_is_never_returned(archive_server: ArchiveServer) -> None:
    archive_server.inject(ZIP, truncate=True, times=2)
    client, sleep = make_client(archive_server.base_url)
    data = client.fetch(ZIP)
    assert len(data) == 69497 and sha256(data) == ZIP_SHA256
    assert archive_server.count("GET", ZIP) == 3
    assert len(sleep.calls) == 2


def test_truncated_body_every_time_fails_loudly(archive_server: ArchiveServer) -> None:
    archive_server.inject(ZIP, truncate=True, times=10)
    client, _ = make_client(archive_server.base_url, max_attempts=2)
    with pytest.raises(ArchiveFetchError) as info:
        client.fetch(ZIP)
    assert info.value.attempts == 2 and ZIP in str(info.value)


def test_slow_response_beyond_timeout_is_retried(archive_server: ArchiveServer) -> None:
    archive_server.inject(ZIP, delay=2.0, methods=("GET",))
    client, sleep = make_client(archive_server.base_url, timeout=0.3)
    assert sha256(client.fetch(ZIP)) == ZIP_SHA256
    assert archive_server.count("GET", ZIP) == 2
    assert len(sleep.calls) == 1


def test_permanent_500_raises_fetch_error_naming_url_and_attempts(archive_server: ArchiveServer) -> None:
    archive_server.inject(ZIP, status=500, times=100)
    client, sleep = make_client(archive_server.base_url, max_attempts=3)
    with pytest.raises(ArchiveFetchError) as info:
        client.fetch(ZIP)
    message = str(info.value)
    assert f"{archive_server.base_url}/{ZIP}" in message
    assert "3 attempts" in message and "HTTP 500" in message
    assert info.value.attempts == 3 and info.value.status == 500
    assert archive_server.count("GET", ZIP) == 3
    assert len(sleep.calls) == 2  # no pointless sleep after the last attempt


def test_403_fails_immediately(archive_server: ArchiveServer) -> None:
    archive_server.inject(ZIP, status=403, times=100)
    client, sleep = make_client(archive_server.base_url)
    with pytest.raises(ArchiveFetchError) as info:
        client.fetch(ZIP)
    assert "HTTP 403" in str(info.value) and f"{archive_server.base_url}/{ZIP}" in str(info.value)
    assert info.value.attempts == 1 and info.value.status == 403
    assert archive_server.count("GET", ZIP) == 1 and sleep.calls == []
    with pytest.raises(ArchiveFetchError):
        client.exists(ZIP)  # a HEAD 403 is not "missing" either


def test_backoff_is_capped() -> None:
    client = ArchiveClient("http://127.0.0.1:9", backoff_seconds=1.0, max_backoff_seconds=4.0)
    client.rng = random.Random(1)
    delays = [client._backoff(attempt) for attempt in range(1, 10)]
    assert all(0.5 <= d <= 4.0 for d in delays)
    assert max(delays[5:]) <= 4.0 and min(delays[5:]) >= 2.0


def test_parallel_fetches_share_one_client(archive_server: ArchiveServer, sample_mirror: Path) -> None:
    """bronze fetches from a ThreadPoolExecutor: one client, many threads, some faults on the way."""
    paths = sorted(p.relative_to(sample_mirror).as_posix() for p in sample_mirror.rglob("*.zip"))
    archive_server.inject("2020-01-02", status=503, times=3, methods=("GET",))
    archive_server.inject("2022-05-05", reset=True, times=2)
    client, _ = make_client(archive_server.base_url)
    with client, ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(client.fetch, paths * 3))
    for path, data in zip(paths * 3, results, strict=True):
        assert data == (sample_mirror / path).read_bytes()


# --------------------------------------------------------------------------- parse_checksum


def test_parse_checksum_with_and_without_trailing_newline() -> None:
    line = f"{ZIP_SHA256}  BTCUSDT-1m-2020-01-01.zip"
    assert parse_checksum(line.encode()) == ZIP_SHA256
    assert parse_checksum((line + "\n").encode(), expected_name="BTCUSDT-1m-2020-01-01.zip") == ZIP_SHA256
    assert parse_checksum((line + "\r\n").encode(), expected_name=ZIP) == ZIP_SHA256
    assert parse_checksum(f"{ZIP_SHA256.upper()} *BTCUSDT-1m-2020-01-01.zip".encode(), expected_name=ZIP) == ZIP_SHA256


def test_parse_checksum_real_files(sample_mirror: Path) -> None:
    for checksum_file in sample_mirror.rglob("*.CHECKSUM"):
        zip_file = checksum_file.with_name(checksum_file.name[: -len(".CHECKSUM")])
        digest = parse_checksum(checksum_file.read_bytes(), expected_name=zip_file.name)
        assert digest == sha256(zip_file.read_bytes()), checksum_file


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (b"", "exactly one"),
        (b"\n\n", "exactly one"),
        (b"dd579c62  BTCUSDT-1m-2020-01-01.zip", "64-hex"),
        (("z" * 64 + "  BTCUSDT-1m-2020-01-01.zip").encode(), "64-hex"),
        (f"{ZIP_SHA256}  a.zip\n{ZIP_SHA256}  b.zip\n".encode(), "exactly one"),
        (b"<html>404 Not Found</html>", "64-hex"),
        (b"\xff\xfe\x00", "UTF-8"),
    ],
)
def test_parse_checksum_rejects_malformed(text: bytes, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_checksum(text)


def test_parse_checksum_rejects_wrong_name() -> None:
    text = f"{ZIP_SHA256}  BTCUSDT-1m-2020-01-01.zip".encode()
    with pytest.raises(ValueError, match=re.escape("expected 'BTCUSDT-1m-2020-01-02.zip'")):
        parse_checksum(text, expected_name="BTCUSDT-1m-2020-01-02.zip")
    with pytest.raises(ValueError, match="names no file"):
        parse_checksum(ZIP_SHA256.encode(), expected_name="BTCUSDT-1m-2020-01-01.zip")
