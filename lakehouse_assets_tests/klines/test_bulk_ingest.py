"""Bronze planned from the archive listing, through the project's klines_job, counting every request the
archive stand-in on 127.0.0.1 receives.

The sample has no real Binance monthly 1m file (PROVENANCE.md: the real monthly kline files are 1h and
5m). Each monthly zip here is built by ``build_monthly_from_daily`` from Binance's real daily 1m files of
the same month (2020-01-01..03 of spot BTCUSDT), with a CHECKSUM we computed; prices asserted below are
those of the real daily files. The clock (``sensors.utc_now``, frozen by the ``clock`` fixture) says
whether January 2020 is closed.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from lakehouse_assets.archive.download import listing_record_key
from lakehouse_assets_tests.harness import check_outcomes, failure_text, resources, run_klines, table
from lakehouse_assets_tests.samples import SPOT, SPOT_OPEN_CLOSE, rewrite_zip_csv, utc, write_checksum
from lakehouse_dev.fakes.archive_server import ArchiveServer
from lakehouse_dev.fixtures.monthly_from_daily import build_monthly_from_daily

MONTHLY = "data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01.zip"
DAILY = "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-{}.zip"
DAYS = ["2020-01-01", "2020-01-02", "2020-01-03"]
CLOSED = utc(2020, 2, 10, 6)  # January 2020 is over


def file_requests(server: ArchiveServer) -> list[tuple[str, str]]:
    """Every request but the listing's (the stand-in answers the S3 list API at /)."""
    return [(m, p) for m, p in server.requests if p != "/"]


def listing_calls(server: ArchiveServer) -> int:
    return sum(1 for request in server.requests if request == ("GET", "/"))


def manifest(lake: Path) -> pl.DataFrame:
    """Every stored row of bronze/klines_archive with its day (from the Hive path), by market and day."""
    files = sorted((lake / "bronze/klines_archive").glob("date=*/*.parquet"))
    frames = [pl.read_parquet(f).with_columns(date=pl.lit(date.fromisoformat(f.parent.name[5:]))) for f in files]
    return pl.concat(frames).sort("market", "date")


def noon(lake: Path) -> dict:
    day = table(lake, "silver/klines", "2020-01-02")
    return day.filter(pl.col("open_time") == utc(2020, 1, 2, 12)).row(0, named=True)


def first_and_last_close(lake: Path) -> dict[str, tuple[float, float]]:
    out = {}
    for day in DAYS:
        frame = table(lake, "silver/klines", day).sort("open_time")
        assert frame.height == 1440
        out[day] = (frame["open"][0], frame["close"][-1])
    return out


def test_a_closed_month_is_one_monthly_download_for_all_its_days(tmp_path, mirror, clock, instance):
    build_monthly_from_daily(mirror, SPOT, "2020-01")
    clock.set(CLOSED)
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as server:
        res = resources(str(lake), server.base_url, "spot:BTCUSDT")
        result = run_klines(res, DAYS[0], DAYS[-1], instance)
        assert result.success
        # the monthly directory is listed once; the month's CHECKSUM and zip are the only files asked for
        assert listing_calls(server) == 1
        assert file_requests(server) == [("GET", f"/{MONTHLY}.CHECKSUM"), ("GET", f"/{MONTHLY}")]

        stored = lake / "bronze/binance" / MONTHLY
        assert stored.read_bytes() == (mirror / MONTHLY).read_bytes()
        assert Path(f"{stored}.CHECKSUM").read_bytes() == (mirror / f"{MONTHLY}.CHECKSUM").read_bytes()
        record = json.loads((lake / listing_record_key(MONTHLY)).read_text())
        assert record["listing"]["zip"]["size"] == stored.stat().st_size
        assert record["listing"]["zip"]["etag"] == hashlib.md5(stored.read_bytes()).hexdigest()

        rows = manifest(lake)
        assert rows["date"].to_list() == [date(2020, 1, d) for d in (1, 2, 3)]  # one row per instrument-day
        assert set(rows["period"]) == {"monthly"} and set(rows["lake_path"]) == {f"bronze/binance/{MONTHLY}"}
        assert set(rows["sha256"]) == {hashlib.sha256(stored.read_bytes()).hexdigest()}
        assert set(rows["checksum_status"]) == {"verified"} and set(rows["downloaded"]) == {True}
        assert set(rows["listed_size"]) == {stored.stat().st_size} and rows["monthly_lake_path"].null_count() == 3
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        assert (meta["files"].value, meta["days_from_monthly_files"].value, meta["monthly_files"].value) == (1, 3, 1)

        # silver: each day cut from the month holds the real daily file's bars
        assert first_and_last_close(lake) == SPOT_OPEN_CLOSE
        bar = noon(lake)
        assert (bar["open"], bar["high"], bar["low"], bar["close"], bar["trade_count"]) == (
            7139.73, 7148.19, 7139.03, 7147.40, 338,
        )  # fmt: skip

        # a rerun with an unchanged listing asks for no file at all
        server.clear_requests()
        assert run_klines(res, DAYS[0], DAYS[-1], instance).success
        assert file_requests(server) == [] and listing_calls(server) == 1
        assert set(manifest(lake)["downloaded"]) == {False}
        assert noon(lake)["close"] == 7147.40


def test_the_running_month_takes_the_daily_files(tmp_path, mirror, clock, instance):
    build_monthly_from_daily(mirror, SPOT, "2020-01")  # even a listed monthly file is not used for a running month
    clock.set(utc(2020, 1, 4, 6))
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as server:
        assert run_klines(resources(str(lake), server.base_url, "spot:BTCUSDT"), DAYS[0], DAYS[-1], instance).success
        assert listing_calls(server) == 1  # January's daily files only
        assert sorted(file_requests(server)) == sorted(
            [("GET", f"/{DAILY.format(d)}") for d in DAYS] + [("GET", f"/{DAILY.format(d)}.CHECKSUM") for d in DAYS]
        )
    rows = manifest(lake)
    assert set(rows["period"]) == {"daily"}
    assert rows["lake_path"].to_list() == [f"bronze/binance/{DAILY.format(d)}" for d in DAYS]
    assert not (lake / "bronze/binance" / MONTHLY).exists()
    assert first_and_last_close(lake) == SPOT_OPEN_CLOSE


def test_days_the_listing_does_not_hold_are_never_requested(tmp_path, archive_server, clock, instance):
    clock.set(CLOSED)
    lake = tmp_path / "lake"
    res = resources(str(lake), archive_server.base_url, "spot:BTCUSDT,um:BTCUSDT")
    assert run_klines(res, DAYS[0], DAYS[-1], instance).success
    # um:BTCUSDT has no file of January 2020, spot no monthly one: only spot's daily files are asked for
    assert sorted(p for _, p in file_requests(archive_server)) == sorted(
        [f"/{DAILY.format(d)}" for d in DAYS] + [f"/{DAILY.format(d)}.CHECKSUM" for d in DAYS]
    )
    assert listing_calls(archive_server) == 4  # per instrument: its monthly directory, January's daily files
    um = manifest(lake).filter(pl.col("market") == "um")
    assert um.select("checksum_status", "upstream_status", "period").unique().rows() == [("missing", "not_listed", "daily")]
    assert um["source_url"][0] == f"{archive_server.base_url}/data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip"
    assert um["lake_path"].null_count() == 3


def test_a_listing_change_re_downloads_exactly_that_file(tmp_path, mirror, clock, instance):
    clock.set(CLOSED)
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as server:
        res = resources(str(lake), server.base_url, "spot:BTCUSDT")
        assert run_klines(res, DAYS[0], DAYS[-1], instance).success  # no monthly file yet: three daily files

        # Binance re-publishes 2020-01-02 (same rows, new zip bytes: new size and ETag in the listing)
        rewrite_zip_csv(mirror / DAILY.format(DAYS[1]), lambda csv: csv)
        server.clear_requests()
        assert run_klines(res, DAYS[0], DAYS[-1], instance).success
        assert file_requests(server) == [("GET", f"/{DAILY.format(DAYS[1])}.CHECKSUM"), ("GET", f"/{DAILY.format(DAYS[1])}")]
        rows = manifest(lake)
        assert rows["downloaded"].to_list() == [False, True, False]
        assert rows["sha256"][1] == hashlib.sha256((mirror / DAILY.format(DAYS[1])).read_bytes()).hexdigest()

        # the month's file is published: it is fetched once, the stored daily files stay and serve their days
        build_monthly_from_daily(mirror, SPOT, "2020-01")
        server.clear_requests()
        result = run_klines(res, DAYS[0], DAYS[-1], instance)
        assert result.success
        assert file_requests(server) == [("GET", f"/{MONTHLY}.CHECKSUM"), ("GET", f"/{MONTHLY}")]
        rows = manifest(lake)
        assert set(rows["period"]) == {"daily"} and set(rows["monthly_lake_path"]) == {f"bronze/binance/{MONTHLY}"}
        assert rows["monthly_agrees"].to_list() == [True, True, True]
        assert check_outcomes(result)["monthly_matches_daily"] is True

        # the monthly file is re-published: exactly it is fetched again; then nothing at all
        rewrite_zip_csv(mirror / MONTHLY, lambda csv: csv)
        server.clear_requests()
        assert run_klines(res, DAYS[0], DAYS[-1], instance).success
        assert file_requests(server) == [("GET", f"/{MONTHLY}.CHECKSUM"), ("GET", f"/{MONTHLY}")]
        server.clear_requests()
        assert run_klines(res, DAYS[0], DAYS[-1], instance).success
        assert file_requests(server) == []
    assert first_and_last_close(lake) == SPOT_OPEN_CLOSE


def test_a_monthly_file_that_disagrees_is_recorded_and_the_daily_file_wins(tmp_path, mirror, clock, instance):
    clock.set(CLOSED)
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as server:
        res = resources(str(lake), server.base_url, "spot:BTCUSDT")
        assert run_klines(res, DAYS[0], DAYS[-1], instance).success  # the daily files are stored first
        # the month's file lacks 2020-01-02 10:00-10:59 and has another close at 12:00 (7147.40 in the daily file)
        build_monthly_from_daily(mirror, SPOT, "2020-01")
        lo, hi = int(utc(2020, 1, 2, 10).timestamp() * 1000), int(utc(2020, 1, 2, 11).timestamp() * 1000)
        twelve = str(int(utc(2020, 1, 2, 12).timestamp() * 1000)).encode()

        def revise(csv: bytes) -> bytes:
            lines = [line for line in csv.split(b"\n") if not line or not lo <= int(line.split(b",")[0]) < hi]
            return b"\n".join(
                line.replace(b",7147.40000000,", b",7150.00000000,") if line.startswith(twelve + b",") else line
                for line in lines
            )

        rewrite_zip_csv(mirror / MONTHLY, revise)
        server.clear_requests()
        result = run_klines(res, DAYS[0], DAYS[-1], instance)
        assert result.success  # a WARN, not a failure
        assert file_requests(server) == [("GET", f"/{MONTHLY}.CHECKSUM"), ("GET", f"/{MONTHLY}")]  # no daily file

    rows = manifest(lake)
    assert rows["monthly_agrees"].to_list() == [True, False, True]
    assert rows["disagreement"][1] == (
        "the monthly file lacks 60 of the daily file's 1440 bars (first 2020-01-02 10:00 UTC); "
        "1 bars differ (first 2020-01-02 12:00 UTC: close 7147.4 daily vs 7150.0 monthly)"
    )
    assert rows["lake_path"][1] == f"bronze/binance/{DAILY.format(DAYS[1])}"  # the daily file serves the day
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "monthly_matches_daily")
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    assert "2020-01-02" in check.metadata["disagreements"].value
    assert check.metadata["compared_days"].value == 3
    meta = next(
        e.materialization.metadata for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey(["bronze", "klines_archive"])
    )  # fmt: skip
    assert meta["monthly_disagreements"].value == 1
    # silver holds the daily file's bars: all 1440 minutes, and the daily close at noon
    assert table(lake, "silver/klines", "2020-01-02").height == 1440
    assert noon(lake)["close"] == 7147.40


def test_a_listing_that_omits_a_stored_monthly_file_does_not_delete_it(tmp_path, mirror, clock, instance):
    build_monthly_from_daily(mirror, SPOT, "2020-01")
    clock.set(CLOSED)
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as server:
        res = resources(str(lake), server.base_url, "spot:BTCUSDT")
        assert run_klines(res, DAYS[0], DAYS[-1], instance).success
        before = table(lake, "silver/klines", DAYS[1])
        held = (lake / "bronze/binance" / MONTHLY).read_bytes()

        for suffix in ("", ".CHECKSUM"):
            (mirror / f"{MONTHLY}{suffix}").unlink()  # the listing no longer holds the month
        server.clear_requests()
        assert run_klines(res, DAYS[0], DAYS[-1], instance).success
        # nothing is asked for: the stored monthly copy serves the month (its daily files are not even listed)
        assert file_requests(server) == [] and listing_calls(server) == 1
    rows = manifest(lake)
    assert set(rows["upstream_status"]) == {"not_listed"} and set(rows["checksum_status"]) == {"verified"}
    assert set(rows["lake_path"]) == {f"bronze/binance/{MONTHLY}"}
    assert (lake / "bronze/binance" / MONTHLY).read_bytes() == held
    assert table(lake, "silver/klines", DAYS[1]).equals(before)


def test_a_malformed_listing_fails_naming_the_url_and_writes_nothing(tmp_path, archive_server, clock, instance):
    clock.set(CLOSED)
    archive_server.rewrite_listing = lambda body, query: b"<html><body>Index of /</body></html>"
    lake = tmp_path / "lake"
    result = run_klines(resources(str(lake), archive_server.base_url, "spot:BTCUSDT"), DAYS[0], DAYS[-1], instance,
                        raise_on_error=False)  # fmt: skip
    assert not result.success
    text = failure_text(result)
    assert (
        f"archive listing {archive_server.base_url}/?prefix=data%2Fspot%2Fmonthly%2Fklines%2FBTCUSDT%2F1m%2F"
        "&delimiter=%2F: expected an S3 ListBucketResult, got <html>"
    ) in text
    assert file_requests(archive_server) == []
    assert not lake.exists() or sorted(p for p in lake.rglob("*") if p.is_file()) == []


def test_a_listed_monthly_file_the_archive_does_not_serve_falls_back_to_the_daily_files(tmp_path, mirror, clock, instance):
    build_monthly_from_daily(mirror, SPOT, "2020-01")
    clock.set(CLOSED)
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as server:
        server.inject("BTCUSDT-1m-2020-01.zip", status=404, times=1000)  # the listing ran ahead of the CDN
        result = run_klines(resources(str(lake), server.base_url, "spot:BTCUSDT"), DAYS[0], DAYS[-1], instance)
        assert result.success
        assert listing_calls(server) == 2  # the monthly directory, then (after the 404) January's daily files
        assert sorted(p for _, p in file_requests(server) if "/daily/" in p) == sorted(
            [f"/{DAILY.format(d)}" for d in DAYS] + [f"/{DAILY.format(d)}.CHECKSUM" for d in DAYS]
        )
    rows = manifest(lake)
    assert set(rows["period"]) == {"daily"} and set(rows["checksum_status"]) == {"verified"}
    meta = next(
        e.materialization.metadata for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey(["bronze", "klines_archive"])
    )  # fmt: skip
    assert "spot:BTCUSDT 2020-01" in meta["monthly_fallbacks"].value
    assert first_and_last_close(lake) == SPOT_OPEN_CLOSE


def test_a_stale_monthly_checksum_is_retried_then_fails_naming_the_month(tmp_path, mirror, clock, instance):
    build_monthly_from_daily(mirror, SPOT, "2020-01")
    write_checksum(mirror / MONTHLY, "0" * 64)
    clock.set(CLOSED)
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as server:
        result = run_klines(resources(str(lake), server.base_url, "spot:BTCUSDT"), DAYS[0], DAYS[-1], instance,
                            raise_on_error=False)  # fmt: skip
        assert server.count("GET", f"/{MONTHLY}") == 4  # zip and CHECKSUM, twice
    assert not result.success
    assert "BTCUSDT-1m-2020-01.zip (spot:BTCUSDT, 2020-01): sha256" in failure_text(result)
    assert not (lake / "bronze/binance" / MONTHLY).exists()


def test_a_bad_line_in_a_monthly_file_fails_silver_naming_the_file_its_days_and_the_symbol(
    tmp_path, mirror, clock, instance
):
    build_monthly_from_daily(mirror, SPOT, "2020-01")

    def break_line(csv: bytes) -> bytes:
        lines = csv.split(b"\n")
        lines[9] = lines[9].replace(b",", b";", 3)
        return b"\n".join(lines)

    rewrite_zip_csv(mirror / MONTHLY, break_line)
    clock.set(CLOSED)
    lake = tmp_path / "lake"
    result = run_klines(resources(str(lake), mirror.as_uri(), "spot:BTCUSDT"), DAYS[0], DAYS[-1], instance,
                        raise_on_error=False)  # fmt: skip
    assert not result.success
    assert "BTCUSDT-1m-2020-01.zip (spot:BTCUSDT, 2020-01, serving 2020-01-01..2020-01-03): line 10" in failure_text(result)
    assert not (lake / "silver/klines").exists() or list((lake / "silver/klines").rglob("*.parquet")) == []
