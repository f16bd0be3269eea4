"""Planning a run's files from the archive listing: monthly for a closed month, daily for the running one.

The listings are real S3 list answers of the stand-in on 127.0.0.1 over the bundled real files. The
monthly 1m zip of January 2020 is NOT a Binance file: ``build_monthly_from_daily`` builds it from the
three real daily files of that month (self-computed CHECKSUM), since the sample has no monthly 1m file.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from lakehouse_assets.archive.listing import ArchiveListing
from lakehouse_assets.archive.plan import (
    ListingSnapshot,
    list_for_plan,
    month_is_closed,
    monthly_klines_path,
    plan_klines,
)
from lakehouse_assets_tests.samples import SPOT, UM
from lakehouse_dev.fakes.archive_server import ArchiveServer
from lakehouse_dev.fixtures.monthly_from_daily import build_monthly_from_daily

JANUARY = [date(2020, 1, 1), date(2020, 1, 2), date(2020, 1, 3)]
MONTHLY = "data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01.zip"
FEBRUARY = date(2020, 2, 10)  # January 2020 is closed
IN_JANUARY = date(2020, 1, 20)  # January 2020 is running


def daily(day: date) -> str:
    return SPOT.daily_klines_path("1m", day)


def listing_requests(server: ArchiveServer) -> int:
    return sum(1 for request in server.requests if request == ("GET", "/"))


def test_months_close_on_their_last_day_utc() -> None:
    assert month_is_closed(date(2020, 1, 31), date(2020, 2, 1))
    assert not month_is_closed(date(2020, 1, 31), date(2020, 1, 31))
    assert month_is_closed(date(2019, 12, 5), date(2020, 1, 1))
    assert monthly_klines_path(UM, "1m", date(2022, 5, 1)) == "data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2022-05.zip"


def test_a_closed_month_with_a_monthly_file_plans_that_one_file_for_every_day(mirror: Path) -> None:
    build_monthly_from_daily(mirror, SPOT, "2020-01")
    needs = [(SPOT, d) for d in JANUARY]
    with ArchiveServer(mirror) as server, ArchiveListing(server.base_url) as listing:
        snapshot = list_for_plan(listing, needs, today=FEBRUARY)
        assert listing_requests(server) == snapshot.requests == 1  # the monthly directory only
    plan = plan_klines(needs, snapshot, today=FEBRUARY)
    assert [(d.day, d.daily, d.monthly.path if d.monthly else None) for d in plan.days] == [
        (day, None, MONTHLY) for day in JANUARY
    ]
    (only,) = plan.files()
    assert (only.period, only.label, only.name) == ("monthly", "2020-01", "BTCUSDT-1m-2020-01.zip")
    assert only.listed is not None and only.listed.has_checksum
    assert only.listed.file.size == (mirror / MONTHLY).stat().st_size


def test_the_running_month_plans_daily_files_even_beside_a_monthly_one(mirror: Path) -> None:
    build_monthly_from_daily(mirror, SPOT, "2020-01")
    needs = [(SPOT, d) for d in JANUARY]
    with ArchiveServer(mirror) as server, ArchiveListing(server.base_url) as listing:
        snapshot = list_for_plan(listing, needs, today=IN_JANUARY)
        assert listing_requests(server) == 1  # January's daily files; no monthly directory
    plan = plan_klines(needs, snapshot, today=IN_JANUARY)
    assert [f.path for f in plan.files()] == [daily(d) for d in JANUARY]
    assert all(d.monthly is None for d in plan.days)


def test_a_closed_month_without_a_monthly_file_takes_the_daily_ones_and_unlisted_days_nothing(
    sample_mirror: Path, archive_server: ArchiveServer
) -> None:
    needs = [(SPOT, d) for d in [*JANUARY, date(2020, 1, 4)]] + [(UM, JANUARY[0])]
    with ArchiveListing(archive_server.base_url) as listing:
        snapshot = list_for_plan(listing, needs, today=FEBRUARY)
    # per instrument: its monthly directory, then January's daily files
    assert listing_requests(archive_server) == snapshot.requests == 4
    plan = plan_klines(needs, snapshot, today=FEBRUARY)
    planned = {(d.instrument.key, d.day): (d.daily.path if d.daily else None, d.monthly) for d in plan.days}
    assert planned == {
        **{("spot:BTCUSDT", day): (daily(day), None) for day in JANUARY},
        ("spot:BTCUSDT", date(2020, 1, 4)): (None, None),  # not listed: never requested
        ("um:BTCUSDT", JANUARY[0]): (None, None),
    }
    assert all(f.listed is not None for f in plan.files())


def test_stored_files_are_kept_in_the_plan_whether_listed_or_not(mirror: Path) -> None:
    build_monthly_from_daily(mirror, SPOT, "2020-01")
    needs = [(SPOT, d) for d in JANUARY]
    stored = {daily(JANUARY[1]), daily(date(2020, 1, 3))}
    (mirror / daily(date(2020, 1, 3))).unlink()  # the listing forgot 01-03; bronze still holds it
    with ArchiveServer(mirror) as server, ArchiveListing(server.base_url) as listing:
        snapshot = list_for_plan(listing, needs, today=FEBRUARY, stored=stored)
        assert listing_requests(server) == 2  # the monthly directory, and January's daily files (two are stored)
    plan = plan_klines(needs, snapshot, today=FEBRUARY, stored=stored)
    days = {d.day: d for d in plan.days}
    assert days[JANUARY[0]].daily is None and days[JANUARY[0]].monthly is not None  # zero daily requests
    both = days[JANUARY[1]]
    assert both.daily is not None and both.daily.listed is not None and both.monthly is not None
    kept = days[JANUARY[2]]
    assert kept.daily is not None and kept.daily.listed is None  # kept in use, never asked for

    (mirror / MONTHLY).unlink()  # the monthly file leaves the listing too: the stored copy still serves
    with ArchiveServer(mirror) as server, ArchiveListing(server.base_url) as listing:
        snapshot = list_for_plan(listing, needs, today=FEBRUARY, stored={MONTHLY})
    plan = plan_klines(needs, snapshot, today=FEBRUARY, stored={MONTHLY})
    assert {(d.daily, d.monthly.path, d.monthly.listed) for d in plan.days if d.monthly} == {(None, MONTHLY, None)}


def test_a_monthly_file_that_was_not_served_falls_back_to_the_daily_files(mirror: Path) -> None:
    build_monthly_from_daily(mirror, SPOT, "2020-01")
    needs = [(SPOT, d) for d in JANUARY]
    with ArchiveServer(mirror) as server, ArchiveListing(server.base_url) as listing:
        snapshot = list_for_plan(listing, needs, today=FEBRUARY)
        list_for_plan(listing, needs, today=FEBRUARY, monthly_unavailable={(SPOT, "2020-01")}, snapshot=snapshot)
        list_for_plan(listing, needs, today=FEBRUARY, monthly_unavailable={(SPOT, "2020-01")}, snapshot=snapshot)
        assert listing_requests(server) == snapshot.requests == 2  # the cache: nothing is listed twice
    plan = plan_klines(needs, snapshot, today=FEBRUARY, monthly_unavailable={(SPOT, "2020-01")})
    assert [f.path for f in plan.files()] == [daily(d) for d in JANUARY]


def test_several_months_of_daily_files_are_one_directory_listing_over_every_page(mirror: Path) -> None:
    """More than 1000 keys: placeholder names (empty files, never requested) pad the symbol's daily directory."""
    directory = mirror / daily(JANUARY[0]).rsplit("/", 1)[0]
    for n in range(1100):  # 2021-01-01 .. 2024-01-04
        (directory / f"BTCUSDT-1m-{date(2021, 1, 1) + timedelta(days=n)}.zip").touch()
    needs = [(SPOT, JANUARY[2]), (SPOT, date(2020, 2, 1))]
    with ArchiveServer(mirror) as server, ArchiveListing(server.base_url) as listing:
        snapshot = list_for_plan(listing, needs, today=date(2020, 3, 1))
        # the monthly directory (1 page), then the whole daily directory: 8 real keys + 1100 names = 2 pages
        assert listing_requests(server) == 3 and snapshot.requests == 2
    plan = plan_klines(needs, snapshot, today=date(2020, 3, 1))
    assert [f.path for f in plan.files()] == [daily(JANUARY[2])]  # 2020-02-01 is not listed
    assert sum(1 for path in snapshot.files if "/BTCUSDT-1m-202" in path) == 1100 + 4  # every page was read


def test_a_malformed_listing_fails_before_any_plan(archive_server: ArchiveServer) -> None:
    archive_server.rewrite_listing = lambda body, query: b"<html>Service Unavailable</html>"
    with ArchiveListing(archive_server.base_url) as listing, pytest.raises(Exception) as raised:
        list_for_plan(listing, [(SPOT, JANUARY[0])], today=FEBRUARY, snapshot=ListingSnapshot())
    assert f"archive listing {archive_server.base_url}/?prefix=data%2Fspot%2Fmonthly%2Fklines%2FBTCUSDT%2F1m%2F" in str(
        raised.value
    )
    assert "expected an S3 ListBucketResult, got <html>" in str(raised.value)
