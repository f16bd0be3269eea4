"""bronze -> silver end to end, in-process on a temporary Dagster instance, against real Binance files."""

from __future__ import annotations

import hashlib
from datetime import date

import dagster as dg
import polars as pl

from lakehouse_assets.lake.sql import query
from lakehouse_assets.lake.store import LocalStore
from lakehouse_assets_tests.harness import check_outcomes, project_defs, resources, run_klines
from lakehouse_assets_tests.samples import utc

SPOT = "data/spot/daily/klines/BTCUSDT/1m"
PUBLISHED = {
    "2020-01-01": "dd579c62368ded93d3f01a1904575b932279e32936e181c062763e605793c1c2",
    "2020-01-02": "66c701b381d5c2482343ba1c7f600e55d3f5c18f0117ff0789d043a21b62bab6",
    "2020-01-03": "9623b3d0c487715f410caee51fbce2474375ece85c854a0682c90b3dad0bf8be",
}


def test_range_run_over_http_stores_verified_zips_and_typed_klines(tmp_path, archive_server, instance):
    lake = tmp_path / "lake"
    res = resources(str(lake), archive_server.base_url, "spot:BTCUSDT")
    result = run_klines(res, "2020-01-01", "2020-01-03", instance)
    assert result.success

    # bronze: the zips byte for byte, at their archive path, with a manifest row each
    for day, digest in PUBLISHED.items():
        stored = lake / "bronze/binance" / SPOT / f"BTCUSDT-1m-{day}.zip"
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    manifest = pl.read_parquet(sorted((lake / "bronze/klines_archive").glob("date=*/*.parquet")))
    assert manifest.height == 3
    assert set(manifest["checksum_status"]) == {"verified"}
    assert sorted(manifest["sha256"]) == sorted(PUBLISHED.values())
    assert manifest["source_url"][0].startswith(archive_server.base_url)

    # silver: one Hive file per day and instrument, typed, exact values from the real files
    files = sorted(p.relative_to(lake).as_posix() for p in (lake / "silver/klines").rglob("*.parquet"))
    assert files == [f"silver/klines/date={d}/spot-BTCUSDT.parquet" for d in PUBLISHED]
    silver = pl.read_parquet(lake / "silver/klines/date=2020-01-02/spot-BTCUSDT.parquet")
    assert silver.height == 1440
    assert silver.schema["open_time"] == pl.Datetime("ms", "UTC")
    assert silver.schema["trade_count"] == pl.Int64
    noon = silver.filter(pl.col("open_time") == utc(2020, 1, 2, 12, 0)).row(0, named=True)
    assert (noon["open"], noon["high"], noon["low"], noon["close"]) == (7139.73, 7148.19, 7139.03, 7147.40)
    assert noon["trade_count"] == 338
    assert noon["close_time"] == utc(2020, 1, 2, 12, 0, 59, 999000)
    assert noon["source"] == "archive" and noon["market"] == "spot"

    # checks: all four blocking checks and completeness passed (and bronze's monthly/daily agreement: no day is
    # held twice); klines_job also runs the WARN freshness check, which fails for candles from 2020 (see
    # operations/test_automation.py for it on a frozen clock)
    assert check_outcomes(result) == {
        "schema": True, "ohlc_consistency": True, "volumes": True, "time_grid": True, "completeness": True,
        "freshness": False, "monthly_matches_daily": True,
    }

    # DuckDB over the lake sees the same rows
    store = LocalStore(lake)
    summary = query(
        "select date, count(*) n, arg_min(open, open_time) first_open, arg_max(close, open_time) last_close "
        "from silver.klines group by date order by date",
        store=store,
    )
    assert summary.rows() == [
        (date(2020, 1, 1), 1440, 7195.24, 7200.85),
        (date(2020, 1, 2), 1440, 7200.77, 6965.71),
        (date(2020, 1, 3), 1440, 6965.49, 7344.96),
    ]
    assert query("select count(*) from bronze.klines_archive", store=store).item() == 3


def test_rerun_is_idempotent_and_does_not_download_again(tmp_path, archive_server, instance):
    lake = tmp_path / "lake"
    res = resources(str(lake), archive_server.base_url, "spot:BTCUSDT")
    run_klines(res, "2020-01-01", "2020-01-02", instance)
    first = pl.read_parquet(sorted((lake / "silver/klines").rglob("*.parquet")))
    zip_gets = [p for m, p in archive_server.requests if m == "GET" and p.endswith(".zip")]
    assert len(zip_gets) == 2

    archive_server.requests.clear()
    result = run_klines(res, "2020-01-01", "2020-01-02", instance)
    assert result.success
    # the listing is unchanged, so no file is asked for at all (not even a CHECKSUM): two listing calls, the
    # symbol's monthly directory (no 2020-01 file) and January's daily files
    assert archive_server.requests == [("GET", "/"), ("GET", "/")]
    second = pl.read_parquet(sorted((lake / "silver/klines").rglob("*.parquet")))
    assert first.equals(second)
    assert len(list((lake / "silver/klines").rglob("*"))) == 4  # 2 date dirs + 2 files, no leftovers
    manifest = pl.read_parquet(sorted((lake / "bronze/klines_archive").rglob("*.parquet")))
    assert manifest["downloaded"].to_list() == [False, False]


def test_file_url_mirror_and_load_asset_value(tmp_path, sample_mirror, instance):
    lake = tmp_path / "lake"
    res = resources(str(lake), sample_mirror.as_uri(), "spot:BTCUSDT,um:BTCUSDT")
    assert run_klines(res, "2020-01-01", "2020-01-03", instance).success
    defs = project_defs(res)

    one_day = defs.load_asset_value(["silver", "klines"], partition_key="2020-01-03", instance=instance)
    assert isinstance(one_day, pl.DataFrame) and one_day.height == 1440
    last = one_day.filter(pl.col("open_time") == utc(2020, 1, 3, 23, 59)).row(0, named=True)
    assert last["close"] == 7344.96 and last["volume"] == 162.222127

    with defs.get_asset_value_loader(instance=instance) as loader:
        lazy = loader.load_asset_value(
            ["silver", "klines"],
            python_type=pl.LazyFrame,
            partition_key_range=dg.PartitionKeyRange("2020-01-01", "2020-01-03"),
        )
    assert isinstance(lazy, pl.LazyFrame)
    frame = lazy.collect()
    assert frame.height == 3 * 1440
    assert frame["date"].unique().sort().to_list() == [date(2020, 1, d) for d in (1, 2, 3)]


def test_404_is_recorded_as_missing_and_does_not_fail_other_symbols(tmp_path, archive_server, instance):
    lake = tmp_path / "lake"
    res = resources(str(lake), archive_server.base_url, "spot:BTCUSDT,um:BTCUSDT")
    result = run_klines(res, "2020-01-01", "2020-01-01", instance)
    assert result.success
    manifest = pl.read_parquet(sorted((lake / "bronze/klines_archive").rglob("*.parquet")))
    status = dict(zip(manifest["market"], manifest["checksum_status"]))
    assert status == {"spot": "verified", "um": "missing"}
    missing = manifest.filter(pl.col("market") == "um").row(0, named=True)
    assert missing["source_url"].endswith("/data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip")
    assert missing["lake_path"] is None
    completeness = [e for e in result.get_asset_check_evaluations() if e.check_name == "completeness"][0]
    assert completeness.passed is False
    assert completeness.severity == dg.AssetCheckSeverity.WARN
    assert "um" in completeness.metadata["incomplete_days"].value
    assert sorted(p.name for p in (lake / "silver/klines/date=2020-01-01").iterdir()) == ["spot-BTCUSDT.parquet"]


def test_header_and_coinm_files_through_the_pipeline(tmp_path, sample_mirror, instance):
    lake = tmp_path / "lake"
    res = resources(str(lake), sample_mirror.as_uri(), "um:BTCUSDT,cm:BTCUSD_PERP")
    assert run_klines(res, "2022-10-24", "2022-10-24", instance).success
    assert run_klines(res, "2023-04-15", "2023-04-15", instance).success
    frame = query("select * from silver.klines order by market, open_time", store=LocalStore(lake))
    assert frame.group_by("market").len().sort("market").rows() == [("cm", 1440), ("um", 1440)]
    cm = frame.filter(pl.col("market") == "cm").row(0, named=True)
    # COIN-M: the file's 'volume' is contracts and its 'quote_volume' is BTC; silver names them for what they are.
    assert cm["contract_volume"] == 19431
    assert cm["volume"] == 99.33183109
    assert cm["quote_volume"] == 19431 * 100.0
    um = frame.filter(pl.col("market") == "um").row(0, named=True)  # the header row was skipped
    assert (um["open"], um["close"], um["trade_count"]) == (30453.0, 30452.4, 1884)
    assert um["contract_volume"] is None
