"""The archive listing over the real S3 list protocol, served by the local stand-in from the bundled real mirror.

Offline: the stand-in on 127.0.0.1 builds its ``ListBucketResult`` pages from the files it serves, so
every expected value below is a fact about the sample mirror on disk.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from lakehouse_assets.archive.listing import ArchiveListing, KlineFile, ListedFile, ListingError
from lakehouse_dev.fakes.archive_server import S3_NAMESPACE, ArchiveServer

KLINES_1M = "data/spot/daily/klines/BTCUSDT/1m/"
#: The spot BTCUSDT 1m days of the sample: three real zips, one zip the fixture builder wrapped around a real CSV.
DAYS = [date(2020, 1, 1), date(2020, 1, 2), date(2020, 1, 3), date(2024, 9, 21)]
#: Byte sizes of the three real Binance zips (as published).
REAL_ZIP_SIZES = {date(2020, 1, 1): 69497, date(2020, 1, 2): 70593, date(2020, 1, 3): 72881}


def _modified(path: Path) -> datetime:
    ms = path.stat().st_mtime_ns // 1_000_000
    return datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)


def _without_etags(files: list[ListedFile]) -> list[ListedFile]:
    return [dataclasses.replace(f, etag=None) for f in files]


def _list_requests(server: ArchiveServer) -> int:
    return sum(1 for method, path in server.requests if (method, path) == ("GET", "/"))


def test_symbols_of_each_market(archive_server: ArchiveServer) -> None:
    with ArchiveListing(archive_server.base_url) as listing:
        assert listing.symbols("spot") == ["ADABTC", "BTCUSDT"]
        assert listing.symbols("um") == ["BTCUSDT"]
        assert listing.symbols("cm") == ["BTCUSD_PERP"]
        assert listing.symbols("spot", period="monthly") == ["BTCUSDT"]
        assert listing.symbols("um", data_type="fundingRate", period="monthly") == ["BTCUSDT"]
        assert listing.symbols("cm", period="monthly") == []
        with pytest.raises(ValueError, match="unknown market 'usdm'"):
            listing.symbols("usdm")


def test_btcusdt_daily_files_have_the_sizes_and_times_on_disk(
    archive_server: ArchiveServer, sample_mirror: Path
) -> None:
    with ArchiveListing(archive_server.base_url) as listing:
        files = listing.kline_files("spot", "BTCUSDT", "1m", "daily")
    assert [f.day for f in files] == DAYS
    assert [f.period for f in files] == ["daily"] * 4
    assert [f.month for f in files] == ["2020-01", "2020-01", "2020-01", "2024-09"]
    assert all(f.has_checksum for f in files)
    for f in files:
        zip_path = sample_mirror / f.key
        assert f.key == f"{KLINES_1M}BTCUSDT-1m-{f.day.isoformat()}.zip"
        assert f.file.size == zip_path.stat().st_size
        assert f.file.last_modified == _modified(zip_path)
        assert f.checksum is not None
        assert f.checksum.key == f.key + ".CHECKSUM"
        assert f.checksum.size == (sample_mirror / f.checksum.key).stat().st_size == 91
    assert {f.day: f.file.size for f in files if f.day in REAL_ZIP_SIZES} == REAL_ZIP_SIZES
    # The stand-in's ETag is the MD5 of the body, as S3 gives for a single-part upload (quotes removed).
    assert files[0].file.etag == "09931edc26715d4c78379146fcc58e9f"


def test_monthly_files_and_a_zip_without_checksum(mirror: Path) -> None:
    (mirror / "data/futures/um/monthly/klines/BTCUSDT/5m/BTCUSDT-5m-2022-04.zip.CHECKSUM").unlink()
    (mirror / "data/futures/um/monthly/klines/BTCUSDT/5m/README.txt").write_text("not an archive file")
    with ArchiveServer(mirror) as server, ArchiveListing(server.base_url) as listing:
        (month,) = listing.kline_files("um", "BTCUSDT", "5m", "monthly")
    assert month == KlineFile(
        ListedFile(
            "data/futures/um/monthly/klines/BTCUSDT/5m/BTCUSDT-5m-2022-04.zip",
            395464,
            _modified(mirror / month.key),
            month.file.etag,
        ),
        "monthly",
        date(2022, 4, 1),
        None,
    )
    assert (month.month, month.has_checksum) == ("2022-04", False)


def test_small_pages_give_the_same_listing_as_one_page(sample_mirror: Path, archive_server: ArchiveServer) -> None:
    with ArchiveListing(archive_server.base_url) as listing:
        one_page = (listing.list_dirs("data/spot/daily/klines/"), listing.list_files(KLINES_1M))
    assert _list_requests(archive_server) == 2
    with ArchiveServer(sample_mirror, page_size=2) as small, ArchiveListing(small.base_url) as listing:
        paged = (listing.list_dirs("data/spot/daily/klines/"), listing.list_files(KLINES_1M))
        # 2 symbol prefixes = 1 page; 4 zips + 4 CHECKSUMs = 4 pages
        assert _list_requests(small) == 5
    assert paged == one_page
    assert len(one_page[1]) == 8


def test_a_page_without_next_marker_continues_from_its_last_key(sample_mirror: Path) -> None:
    with ArchiveServer(sample_mirror, page_size=3) as server, ArchiveListing(server.base_url) as listing:
        expected = listing.list_files(KLINES_1M)
        server.rewrite_listing = lambda body, query: re.sub(rb"<NextMarker>.*?</NextMarker>", b"", body)
        server.clear_requests()
        assert listing.list_files(KLINES_1M) == expected
        assert _list_requests(server) == 3


def test_more_than_1000_keys_are_all_listed(mirror: Path) -> None:
    directory = mirror / "data/futures/um/daily/klines/ZEROUSDT/1m"
    directory.mkdir(parents=True)
    days = [date(2020, 1, 1) + timedelta(days=i) for i in range(1205)]
    for day in days:
        (directory / f"ZEROUSDT-1m-{day.isoformat()}.zip").touch()  # empty: the listing only needs names
    with ArchiveServer(mirror) as server, ArchiveListing(server.base_url) as listing:
        files = listing.kline_files("um", "ZEROUSDT")
        assert _list_requests(server) == 2  # 1000 + 205
        assert listing.symbols("um") == ["BTCUSDT", "ZEROUSDT"]
    assert len(files) == 1205
    assert [f.day for f in files] == days
    assert (files[0].day, files[-1].day) == (date(2020, 1, 1), date(2023, 4, 19))
    assert {f.file.size for f in files} == {0}
    assert {f.file.etag for f in files} == {"d41d8cd98f00b204e9800998ecf8427e"}  # MD5 of nothing
    assert not any(f.has_checksum for f in files)


def test_file_mirror_lists_its_directory_tree_like_the_http_listing(
    sample_mirror: Path, archive_server: ArchiveServer
) -> None:
    prefixes = ["", "data/", "data/spot/daily/klines/", "data/spot/daily/klines/B", KLINES_1M, "data/nowhere/"]
    with ArchiveListing(archive_server.base_url) as http, ArchiveListing(sample_mirror.as_uri()) as local:
        for prefix in prefixes:
            assert local.list_dirs(prefix) == http.list_dirs(prefix), prefix
            assert local.list_files(prefix) == _without_etags(http.list_files(prefix)), prefix
        assert local.list_dirs("data/spot/daily/klines/B") == ["data/spot/daily/klines/BTCUSDT/"]
        assert local.list_dirs("data/nowhere/") == local.list_files("data/nowhere/") == []
        for market in ("spot", "um", "cm"):
            assert local.symbols(market) == http.symbols(market)
        assert [f.day for f in local.kline_files("spot", "BTCUSDT")] == DAYS
        assert [(f.day, f.file.size, f.has_checksum) for f in local.kline_files("spot", "BTCUSDT")] == [
            (f.day, f.file.size, f.has_checksum) for f in http.kline_files("spot", "BTCUSDT")
        ]
    assert archive_server.count("GET", "/data/") == 0  # a listing downloads nothing


def test_path_style_listing_url_and_a_retried_503(sample_mirror: Path) -> None:
    with ArchiveServer(sample_mirror, listing_path="/data.binance.vision") as server:
        port = server.port
        with ArchiveListing(server.base_url + "/data.binance.vision", backoff_seconds=0.01) as listing:
            server.inject("/data.binance.vision", status=503, times=1)
            assert listing.symbols("spot") == ["ADABTC", "BTCUSDT"]
        assert server.count("GET", "/data.binance.vision") == 2
        with ArchiveListing(server.base_url) as wrong, pytest.raises(ListingError) as raised:
            wrong.symbols("spot")
    assert str(raised.value) == (
        f"archive listing http://127.0.0.1:{port}/?prefix=data%2Fspot%2Fdaily%2Fklines%2F&delimiter=%2F: "
        "HTTP 404: no list API at this URL (check LAKEHOUSE_ARCHIVE_LISTING_URL)"
    )


_FIRST_ZIP = f"{KLINES_1M}BTCUSDT-1m-2020-01-01.zip"
_TRUNCATE_FOREVER = f"<IsTruncated>true</IsTruncated><NextMarker>{_FIRST_ZIP}</NextMarker>".encode()
_QUOTED_PREFIX = "prefix=data%2Fspot%2Fdaily%2Fklines%2FBTCUSDT%2F1m%2F&delimiter=%2F"


@pytest.mark.parametrize(
    ("rewrite", "marker", "reason"),
    [
        (lambda body: b"Service Unavailable", "",
         "answer is not XML (syntax error: line 1, column 0): b'Service Unavailable'"),
        (lambda body: b"<html><body>Index of /</body></html>", "", "expected an S3 ListBucketResult, got <html>"),
        (lambda body: b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY big "boom">]><x>&big;</x>', "",
         "refusing an answer with a DTD or entity declaration"),
        (lambda body: re.sub(rb"<Key>[^<]*</Key>", b"", body), "", "ListBucketResult: missing <Key>"),
        (lambda body: re.sub(rb"<IsTruncated>[^<]*</IsTruncated>", b"", body), "",
         "ListBucketResult: missing <IsTruncated>"),
        (lambda body: f'<ListBucketResult xmlns="{S3_NAMESPACE}"><IsTruncated>true</IsTruncated></ListBucketResult>'
         .encode(), "", "page is truncated but gives no NextMarker and no key to continue from"),
        (lambda body: re.sub(rb"<IsTruncated>false</IsTruncated>", _TRUNCATE_FOREVER, body),
         "&marker=data%2Fspot%2Fdaily%2Fklines%2FBTCUSDT%2F1m%2FBTCUSDT-1m-2020-01-01.zip",
         f"marker does not advance: {_FIRST_ZIP!r} after {_FIRST_ZIP!r}"),
    ],
    ids=["not-xml", "wrong-root", "dtd", "entry-without-key", "no-is-truncated", "truncated-no-marker",
         "marker-stuck"],
)  # fmt: skip
def test_a_malformed_listing_is_an_error_naming_the_redacted_url(
    archive_server: ArchiveServer, rewrite: object, marker: str, reason: str
) -> None:
    archive_server.rewrite_listing = lambda body, query: rewrite(body)  # type: ignore[operator]
    port = archive_server.port
    with ArchiveListing(f"http://user:pw@127.0.0.1:{port}") as listing, pytest.raises(ListingError) as raised:
        listing.list_files(KLINES_1M)
    url = f"http://***@127.0.0.1:{port}/?{_QUOTED_PREFIX}{marker}"
    assert str(raised.value) == f"archive listing {url}: {reason}"
    assert (raised.value.url, raised.value.transient) == (url, False)
    assert "pw" not in str(raised.value)
    assert archive_server.authorizations[-1] == "Basic dXNlcjpwdw=="  # the real URL was used for the request
