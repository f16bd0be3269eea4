"""The Hive Parquet IO manager's file semantics: exact replacement, scoped writes, empty days, clear misses."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse_assets.io_manager import EMPTY_FILE, scan_partitions, write_partitions
from lakehouse_assets.lake_store import LocalStore
from lakehouse_assets_tests.pipeline_helpers import resources, run_range

DATA = Path(__file__).parent / "data" / "binance"


def real_rows(day: str, n: int = 5) -> pl.DataFrame:
    """The first minutes of the real spot BTCUSDT file for ``day``, read without the product's parser."""
    zpath = DATA / f"data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-{day}.zip"
    with zipfile.ZipFile(zpath) as zf:
        csv = zf.read(zf.namelist()[0])
    raw = pl.read_csv(io.BytesIO(csv), has_header=False, n_rows=n, new_columns=[f"c{i}" for i in range(12)])
    return raw.select(
        market=pl.lit("spot"),
        symbol=pl.lit("BTCUSDT"),
        open_time=pl.from_epoch(pl.col("c0"), time_unit="ms").dt.replace_time_zone("UTC"),
        close=pl.col("c4").cast(pl.Float64),
    )


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_write_is_exact_replacement_and_load_adds_date(tmp_path):
    store = LocalStore(tmp_path)
    frame = pl.concat([real_rows("2020-01-01"), real_rows("2020-01-02")])
    stats = write_partitions(store, "silver/t", frame, days=["2020-01-01", "2020-01-02"], partition_column="open_time")
    assert stats["rows_by_day"] == {"2020-01-01": 5, "2020-01-02": 5}
    assert files(tmp_path) == [
        "silver/t/date=2020-01-01/spot-BTCUSDT.parquet",
        "silver/t/date=2020-01-02/spot-BTCUSDT.parquet",
    ]
    # Rewriting the same day twice leaves one file with the same rows: no duplicates, no temp leftovers.
    write_partitions(store, "silver/t", real_rows("2020-01-02"), days=["2020-01-02"], partition_column="open_time")
    write_partitions(store, "silver/t", real_rows("2020-01-02"), days=["2020-01-02"], partition_column="open_time")
    assert len(files(tmp_path)) == 2
    loaded = scan_partitions(store, "silver/t", ["2020-01-01", "2020-01-02"]).collect()
    assert loaded.height == 10
    assert loaded["close"].to_list()[:2] == [7186.68, 7184.03]
    assert loaded["date"].unique().sort().to_list() == [date(2020, 1, 1), date(2020, 1, 2)]


def test_full_scope_write_of_an_empty_day_removes_stale_files_and_keeps_the_schema(tmp_path):
    store = LocalStore(tmp_path)
    frame = real_rows("2020-01-01")
    write_partitions(store, "silver/t", frame, days=["2020-01-01"], partition_column="open_time")
    write_partitions(store, "silver/t", frame.clear(), days=["2020-01-01"], partition_column="open_time")
    assert files(tmp_path) == [f"silver/t/date=2020-01-01/{EMPTY_FILE}"]
    empty = scan_partitions(store, "silver/t", ["2020-01-01"]).collect()
    assert empty.height == 0 and empty.schema["close"] == pl.Float64
    # Data arriving later replaces the placeholder.
    write_partitions(store, "silver/t", frame, days=["2020-01-01"], partition_column="open_time")
    assert files(tmp_path) == ["silver/t/date=2020-01-01/spot-BTCUSDT.parquet"]


def test_scoped_write_leaves_other_instruments_untouched(tmp_path):
    store = LocalStore(tmp_path)
    day = ["2020-01-01"]
    write_partitions(store, "silver/t", real_rows("2020-01-01"), days=day, partition_column="open_time")
    spot = tmp_path / "silver/t/date=2020-01-01/spot-BTCUSDT.parquet"
    before = spot.stat().st_mtime_ns
    # A run limited to um:BTCUSDT that produced no rows must not delete or rewrite the spot file.
    write_partitions(store, "silver/t", real_rows("2020-01-01").clear(), days=day, partition_column="open_time", scope="um:BTCUSDT")
    assert spot.stat().st_mtime_ns == before
    assert files(tmp_path) == ["silver/t/date=2020-01-01/spot-BTCUSDT.parquet"]


def test_rows_outside_the_partition_are_refused(tmp_path):
    with pytest.raises(ValueError, match="outside the partitions"):
        write_partitions(LocalStore(tmp_path), "silver/t", real_rows("2020-01-02"), days=["2020-01-01"], partition_column="open_time")


def test_loading_a_day_never_materialized_names_it(tmp_path):
    store = LocalStore(tmp_path)
    write_partitions(store, "silver/t", real_rows("2020-01-01"), days=["2020-01-01"], partition_column="open_time")
    with pytest.raises(dg.Failure, match="2020-01-03"):
        scan_partitions(store, "silver/t", ["2020-01-01", "2020-01-03"])


def test_symbol_scoped_run_through_dagster_rewrites_only_that_symbol(tmp_path, archive_server):
    lake = tmp_path / "lake"
    res = resources(str(lake), archive_server.base_url, "spot:BTCUSDT,um:BTCUSDT")
    with dg.instance_for_test() as instance:
        assert run_range(res, "2020-01-01", "2020-01-01", instance).success
        spot_silver = lake / "silver/klines/date=2020-01-01/spot-BTCUSDT.parquet"
        spot_bronze = lake / "bronze/klines_archive/date=2020-01-01/spot-BTCUSDT.parquet"
        stamps = (spot_silver.stat().st_mtime_ns, spot_bronze.stat().st_mtime_ns)
        archive_server.requests.clear()
        result = run_range(res, "2020-01-01", "2020-01-01", instance, tags={"lakehouse/symbols": "um:BTCUSDT"})
        assert result.success
    assert all("/spot/" not in path for _, path in archive_server.requests)
    assert (spot_silver.stat().st_mtime_ns, spot_bronze.stat().st_mtime_ns) == stamps
    manifest = pl.read_parquet(sorted((lake / "bronze/klines_archive/date=2020-01-01").glob("*.parquet")))
    assert sorted(manifest["market"]) == ["spot", "um"]
