"""bronze/funding_archive -> silver/funding_rates end to end on the real USD-M BTCUSDT 2026-04 month.

The archive path goes over HTTP (local archive server) with the real zip and CHECKSUM; the REST path
goes through ccxt against the local Binance-compatible server, which serves the same real rows.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from lakehouse_assets.lake.sql import query
from lakehouse_assets.lake.store import LocalStore
from lakehouse_assets_tests.harness import check_outcomes, read_table, resources, run_funding
from lakehouse_assets_tests.samples import FUNDING_DIR, MONTH_ZIP, mirror_without_funding, publish_month, utc
from lakehouse_dev.fakes.funding_routes import add_funding_routes

PUBLISHED_SHA256 = "51cdeb4de7d5ef1d4eece80b6115e391bdf7a2d0803bf9ad8371ab23340b22d3"
STORED = f"bronze/binance/{FUNDING_DIR}/{MONTH_ZIP}"


def test_month_archive_is_downloaded_once_verified_and_serves_every_day(tmp_path, archive_server, rest_server, instance):
    routes = add_funding_routes(rest_server)
    lake = tmp_path / "lake"
    res = resources(str(lake), archive_server.base_url, "spot:BTCUSDT,um:BTCUSDT", rest_url=rest_server.base_url)
    result = run_funding(res, "2026-04-01", "2026-04-30", instance)
    assert result.success

    # bronze: the month's zip byte for byte at its archive path, fetched once for all 30 days
    assert hashlib.sha256((lake / STORED).read_bytes()).hexdigest() == PUBLISHED_SHA256
    assert (lake / (STORED + ".CHECKSUM")).read_bytes() == (Path(archive_server.root) / FUNDING_DIR / (MONTH_ZIP + ".CHECKSUM")).read_bytes()
    assert archive_server.count("GET", MONTH_ZIP + ".CHECKSUM") == 1
    assert archive_server.count("GET", MONTH_ZIP) - archive_server.count("GET", ".CHECKSUM") == 1
    manifest = read_table(lake, "bronze/funding_archive")
    assert manifest.height == 30  # spot:BTCUSDT has no funding: skipped
    assert set(manifest["market"]) == {"um"}
    assert set(manifest["source"]) == {"archive"} and set(manifest["checksum_status"]) == {"verified"}
    assert set(manifest["lake_path"]) == {STORED} and set(manifest["sha256"]) == {PUBLISHED_SHA256}
    assert routes.requests() == []  # a published month never touches REST

    # silver: 90 settlements, one file per day, each on its 8 h slot, exact rates from the file
    files = sorted(p.relative_to(lake).as_posix() for p in (lake / "silver/funding_rates").rglob("*.parquet"))
    assert files == [f"silver/funding_rates/date=2026-04-{d:02d}/um-BTCUSDT.parquet" for d in range(1, 31)]
    silver = query("select * from silver.funding_rates order by funding_time", store=LocalStore(lake))
    assert silver.height == 90
    assert silver["funding_time"].to_list() == [utc(2026, 4, 1) + k * timedelta(hours=8) for k in range(90)]
    assert set(silver["funding_interval_hours"]) == {8} and set(silver["source"]) == {"archive"}
    assert silver["mark_price"].null_count() == 90
    assert int((silver["calc_time"] != silver["funding_time"]).sum()) == 49
    day2 = silver.filter(pl.col("date") == date(2026, 4, 2))
    assert day2["funding_rate"].to_list() == [0.00003521, 0.00000845, -0.00007398]
    assert day2["calc_time"].to_list() == [
        utc(2026, 4, 2) + timedelta(milliseconds=3), utc(2026, 4, 2, 8) + timedelta(milliseconds=1),
        utc(2026, 4, 2, 16) + timedelta(milliseconds=1),
    ]  # fmt: skip
    (materialization,) = result.asset_materializations_for_node("silver__funding_rates")[:1]
    meta = materialization.metadata
    assert meta["settlements"].value == 90 and meta["snapped_to_slot"].value == 49
    assert meta["chart um:BTCUSDT"].value.startswith("![um:BTCUSDT funding rate per settlement](data:image/svg+xml;base64,")
    assert "| um | BTCUSDT | 90 | 8 | 90 | 0 |" in meta["by_symbol"].value
    assert check_outcomes(result) == {
        "funding_schema": True, "funding_unique_slots": True, "funding_interval_grid": True,
        "funding_rate_within_cap": True, "funding_count_per_day": True,
    }  # fmt: skip


def test_later_days_of_the_month_reuse_the_stored_archive_and_reruns_are_idempotent(tmp_path, archive_server, instance):
    lake = tmp_path / "lake"
    res = resources(str(lake), archive_server.base_url, "um:BTCUSDT")
    assert run_funding(res, "2026-04-10", "2026-04-10", instance).success
    first = read_table(lake, "silver/funding_rates")
    archive_server.clear_requests()

    assert run_funding(res, "2026-04-11", "2026-04-11", instance).success
    assert run_funding(res, "2026-04-10", "2026-04-10", instance).success  # rerun of the first day
    # Only the ~100-byte CHECKSUM was fetched again (to notice a re-published month); the zip never.
    assert archive_server.count("GET", ".CHECKSUM") == 2
    assert archive_server.count("GET", MONTH_ZIP) == 2
    manifest = read_table(lake, "bronze/funding_archive").sort("date")
    assert manifest["downloaded"].to_list() == [False, False]
    silver = read_table(lake, "silver/funding_rates")
    assert silver.filter(pl.col("date") == "2026-04-10").drop("date").equals(first.drop("date"))
    assert silver.height == 6  # no duplicate rows after the rerun
    assert first["funding_rate"].to_list() == [0.00000411, 0.00002458, -0.00002187]


def test_unpublished_month_comes_from_rest_then_the_archive_replaces_it(tmp_path, sample_mirror, rest_server, instance):
    routes = add_funding_routes(rest_server)
    mirror = mirror_without_funding(sample_mirror, tmp_path / "mirror")
    lake = tmp_path / "lake"
    res = resources(str(lake), mirror.as_uri(), "um:BTCUSDT,cm:BTCUSD_PERP", rest_url=rest_server.base_url)
    assert run_funding(res, "2026-04-01", "2026-04-07", instance).success

    manifest = read_table(lake, "bronze/funding_archive")
    assert manifest.height == 14
    assert set(manifest["source"]) == {"rest"} and set(manifest["checksum_status"]) == {"rest"}
    # COIN-M goes through binancecoinm (/dapi); the sample has no COIN-M funding, so its days are empty
    (cm_call,) = routes.requests("cm")
    assert cm_call.params["symbol"] == "BTCUSD_PERP"
    info_calls = [r.path for r in rest_server.requests if r.path.endswith("/fundingInfo")]
    assert sorted(info_calls) == ["/dapi/v1/fundingInfo", "/fapi/v1/fundingInfo"]  # once per market and run
    assert not list((lake / "silver/funding_rates").rglob("cm-*.parquet"))
    manifest = manifest.filter(pl.col("market") == "um")
    assert set(manifest["note"]) == {"archive not published yet (404)"}
    # one fundingRate call covers the 7 days (plus the settlement before the first midnight)
    (call,) = routes.requests("um")
    assert (call.params["symbol"], call.params["limit"]) == ("BTCUSDT", "1000")
    assert int(call.params["startTime"]) == int(utc(2026, 3, 31, 15, 30).timestamp() * 1000)
    stored = json.loads((lake / manifest.filter(pl.col("date") == "2026-04-01")["lake_path"][0]).read_bytes())
    assert stored["exchange"] == "binanceusdm" and stored["funding_info_checked"] is True
    assert [r["fundingTime"] for r in stored["rows"]] == [1775001600000, 1775030400000, 1775059200000]
    assert stored["rows"][0]["fundingRate"] == "-0.00003449"  # Binance's decimal text, untouched

    rest_silver = query("select * from silver.funding_rates order by funding_time", store=LocalStore(lake))
    assert rest_silver.height == 21 and set(rest_silver["source"]) == {"rest"}
    assert rest_silver["funding_rate"].to_list()[:4] == [-0.00003449, -0.00000461, 0.00000577, 0.00003521]
    # REST rows state no interval: read from the spacing, it equals what the archive says (8 h)
    assert set(rest_silver["funding_interval_hours"]) == {8}

    publish_month(sample_mirror, mirror)
    rest_server.clear_requests()
    assert run_funding(res, "2026-04-01", "2026-04-07", instance).success
    archive_silver = query("select * from silver.funding_rates order by funding_time", store=LocalStore(lake))
    assert archive_silver.height == 21 and set(archive_silver["source"]) == {"archive"}
    same = ["funding_time", "calc_time", "funding_interval_hours", "funding_rate"]
    assert archive_silver.select(same).equals(rest_silver.select(same))
    sources = read_table(lake, "bronze/funding_archive").group_by("market", "source").len().sort("market").rows()
    assert sources == [("cm", "rest", 7), ("um", "archive", 7)]  # COIN-M still has no archive: REST again
    assert routes.requests("um") == []


def test_a_run_across_a_month_end_mixes_archive_and_rest_and_lists_the_missing_slots(tmp_path, archive_server, rest_server, instance):
    # 2026-05 has no archive in the sample, and the REST stand-in has no May settlements either:
    # the days are REST-sourced, empty, and the WARN check lists the slots the 8 h schedule expected.
    add_funding_routes(rest_server)
    lake = tmp_path / "lake"
    res = resources(str(lake), archive_server.base_url, "um:BTCUSDT", rest_url=rest_server.base_url)
    result = run_funding(res, "2026-04-30", "2026-05-01", instance)
    assert result.success
    manifest = read_table(lake, "bronze/funding_archive").sort("date")
    assert manifest.select("date", "source").rows() == [("2026-04-30", "archive"), ("2026-05-01", "rest")]
    silver = read_table(lake, "silver/funding_rates")
    assert silver["date"].to_list() == ["2026-04-30"] * 3
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "funding_count_per_day"]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "| um | BTCUSDT | 2026-05-01 | 0 | 3 | 3 |  | 00:00, 08:00, 16:00 |" in evaluation.metadata["incomplete_days"].value
    assert (lake / "silver/funding_rates/date=2026-05-01/_empty.parquet").exists()


def test_rest_disabled_records_days_without_a_source(tmp_path, sample_mirror, instance):
    mirror = mirror_without_funding(sample_mirror, tmp_path / "mirror")
    lake = tmp_path / "lake"
    res = resources(str(lake), mirror.as_uri(), "um:BTCUSDT,cm:BTCUSD_PERP", rest_enabled=False)
    result = run_funding(res, "2026-04-03", "2026-04-04", instance)
    assert result.success
    manifest = read_table(lake, "bronze/funding_archive")
    assert manifest.height == 4 and set(manifest["source"]) == {"none"}
    assert set(manifest["note"]) == {"archive not published yet (404); REST disabled (LAKEHOUSE_REST_FILL)"}
    assert check_outcomes(result)["funding_count_per_day"] is False
    assert not list((lake / "silver/funding_rates").rglob("*-BTCUSDT.parquet"))
