"""Which days the archive covers per symbol, read from the listing over the real S3 list protocol (127.0.0.1).

The trees are SYNTHETIC (``lakehouse_dev/fixtures/listing_tree.py``): Binance's file names with a
placeholder line as content, because the listing reads names only. Symbol names and dates follow
real listings where it helps reading (USD-M AUDIOUSDT was onboarded 2021-08-18 per the real
2021-09-06 exchangeInfo answer), but no expected value below is a claim about Binance's archive:
each is a fact about the tree the test wrote.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from lakehouse_assets.archive.listing import ArchiveListing, ListingError
from lakehouse_assets.universe.archive_coverage import archive_coverage, months_to_list_daily
from lakehouse_dev.fakes.archive_server import ArchiveServer
from lakehouse_dev.fixtures.listing_tree import days, write_listing_tree

TODAY = date(2021, 9, 7)  # yesterday 2021-09-06: the day of the real USD-M answer


def _runs(frame: pl.DataFrame, symbol: str) -> list[tuple[date, date]]:
    rows = frame.filter(pl.col("symbol") == symbol).sort("first_day")
    return list(zip(rows["first_day"].to_list(), rows["last_day"].to_list()))


def _record_queries(server: ArchiveServer) -> list[dict[str, str]]:
    seen: list[dict[str, str]] = []

    def record(body: bytes, query: dict[str, str]) -> bytes:
        seen.append(dict(query))
        return body

    server.rewrite_listing = record
    return seen


def test_daily_files_are_listed_only_for_run_edges_short_holes_and_the_newest_months() -> None:
    monthly = [date(2020, m, 1) for m in (1, 2, 3, 4, 5, 6, 9, 10, 11, 12)] + [date(2021, 1, 1)]
    wanted = months_to_list_daily(monthly, yesterday=date(2021, 3, 15))
    assert wanted == [
        date(2020, 1, 1),  # a run starts
        date(2020, 6, 1),  # it ends
        date(2020, 7, 1), date(2020, 8, 1),  # a 2-month hole: a missed monthly file or a pause? the days say
        date(2020, 9, 1),  # the next run starts
        date(2021, 1, 1),  # it ends
        date(2021, 2, 1), date(2021, 3, 1),  # the newest months: daily files before any monthly one
    ]  # fmt: skip
    # a longer hole is a pause for sure: its months are not listed
    assert months_to_list_daily([date(2020, 1, 1), date(2020, 6, 1)], yesterday=date(2020, 6, 30)) == [
        date(2020, 1, 1), date(2020, 5, 1), date(2020, 6, 1),
    ]  # fmt: skip


def test_a_symbol_listed_mid_month_starts_on_its_first_daily_file(tmp_path: Path) -> None:
    write_listing_tree(
        tmp_path, "um", "AUDIOUSDT", daily=days(date(2021, 8, 18), date(2021, 9, 6)), monthly=[date(2021, 8, 1)]
    )
    with ArchiveServer(tmp_path) as server, ArchiveListing(server.base_url) as listing:
        queries = _record_queries(server)
        coverage = archive_coverage(listing, ["um"], today=TODAY)
    assert _runs(coverage.frame, "AUDIOUSDT") == [(date(2021, 8, 18), date(2021, 9, 6))]
    assert coverage.symbols == {"um": 1}
    # 2 symbol listings (daily, monthly) + the monthly directory + 2 month prefixes (2021-08, 2021-09)
    assert coverage.list_calls == 5
    assert sorted(q["prefix"] for q in queries if q["prefix"].endswith("-")) == [
        "data/futures/um/daily/klines/AUDIOUSDT/1m/AUDIOUSDT-1m-2021-08-",
        "data/futures/um/daily/klines/AUDIOUSDT/1m/AUDIOUSDT-1m-2021-09-",
    ]


def test_months_with_only_a_monthly_file_count_whole_and_inner_months_are_not_listed_day_by_day(tmp_path: Path) -> None:
    # 2019-01..2021-07 monthly; daily files only from 2021-03 (Binance's daily series can start later)
    monthly = [date(2019 + (m // 12), m % 12 + 1, 1) for m in range(31)]
    daily = days(date(2021, 3, 1), date(2021, 9, 6))
    write_listing_tree(tmp_path, "um", "BTCUSDT", daily=daily, monthly=monthly)
    with ArchiveServer(tmp_path) as server, ArchiveListing(server.base_url) as listing:
        queries = _record_queries(server)
        coverage = archive_coverage(listing, ["um"], today=TODAY)
    assert monthly[-1] == date(2021, 7, 1)
    assert _runs(coverage.frame, "BTCUSDT") == [(date(2019, 1, 1), date(2021, 9, 6))]
    month_prefixes = sorted(q["prefix"].rsplit("-1m-", 1)[1] for q in queries if q["prefix"].endswith("-"))
    assert month_prefixes == ["2019-01-", "2021-07-", "2021-08-", "2021-09-"]  # 4 of 33 months, not 190 daily files
    assert coverage.list_calls == 2 + 1 + 4


def test_a_missed_monthly_file_is_no_pause_but_a_long_hole_is(tmp_path: Path) -> None:
    # ETHUSDT: every day has a daily file, but Binance's monthly file for 2020-04 is missing
    write_listing_tree(
        tmp_path, "um", "ETHUSDT", daily=days(date(2020, 1, 1), date(2020, 6, 30)),
        monthly=[date(2020, m, 1) for m in (1, 2, 3, 5, 6)],
    )  # fmt: skip
    # LENDUSDT: files 2020-01-10..2020-02-20, nothing for five months, files again 2020-08-03..2020-08-31
    write_listing_tree(
        tmp_path, "um", "LENDUSDT", daily=days(date(2020, 1, 10), date(2020, 2, 20)) + days(date(2020, 8, 3), date(2020, 8, 31)),
        monthly=[date(2020, 1, 1), date(2020, 2, 1), date(2020, 8, 1)],
    )  # fmt: skip
    with ArchiveListing(tmp_path.as_uri()) as listing:  # a file:// mirror lists its tree
        coverage = archive_coverage(listing, ["um"], today=date(2020, 12, 1))
    assert _runs(coverage.frame, "ETHUSDT") == [(date(2020, 1, 1), date(2020, 6, 30))]
    assert _runs(coverage.frame, "LENDUSDT") == [
        (date(2020, 1, 10), date(2020, 2, 20)),
        (date(2020, 8, 3), date(2020, 8, 31)),
    ]


def test_listing_pages_beyond_1000_keys_and_matches_the_file_mirror(tmp_path: Path) -> None:
    # A daily-only directory of 520 days = 1040 keys (zip + CHECKSUM): two pages of S3's 1000 keys.
    listed = days(date(2020, 1, 1), date(2021, 6, 23))
    gap = set(days(date(2020, 7, 1), date(2020, 7, 20)))
    assert write_listing_tree(tmp_path, "um", "SRMUSDT", daily=[d for d in listed if d not in gap]) == 1040
    with ArchiveServer(tmp_path, page_size=1000) as server, ArchiveListing(server.base_url) as listing:
        queries = _record_queries(server)
        over_http = archive_coverage(listing, ["um"], today=date(2021, 7, 1))
    with ArchiveListing(tmp_path.as_uri()) as local:
        from_tree = archive_coverage(local, ["um"], today=date(2021, 7, 1))
    daily_dir = [q for q in queries if q["prefix"] == "data/futures/um/daily/klines/SRMUSDT/1m/"]
    assert [bool(q.get("marker")) for q in daily_dir] == [False, True]  # the second page continues after a marker
    assert _runs(over_http.frame, "SRMUSDT") == [
        (date(2020, 1, 1), date(2020, 6, 30)),
        (date(2020, 7, 21), date(2021, 6, 23)),
    ]
    assert over_http.frame.equals(from_tree.frame)


def test_a_malformed_listing_page_is_an_error_naming_the_url(tmp_path: Path) -> None:
    write_listing_tree(
        tmp_path, "um", "AUDIOUSDT", daily=days(date(2021, 8, 18), date(2021, 9, 6)), monthly=[date(2021, 8, 1)]
    )
    with ArchiveServer(tmp_path) as server, ArchiveListing(server.base_url) as listing:
        server.rewrite_listing = lambda body, query: (
            b"<html>busy</html>" if "monthly/klines/AUDIOUSDT" in query["prefix"] else body
        )
        with pytest.raises(ListingError) as raised:
            archive_coverage(listing, ["um"], today=TODAY)
        base_url = server.base_url
    assert raised.value.url.startswith(f"{base_url}/?prefix=data%2Ffutures%2Fum%2Fmonthly%2Fklines%2FAUDIOUSDT")
    assert "expected an S3 ListBucketResult, got <html>" in str(raised.value)
