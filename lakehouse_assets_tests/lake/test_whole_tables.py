"""Unpartitioned (whole) tables: one file per table, written by the IO manager, read back and by DuckDB,
on disk and on S3 (moto on 127.0.0.1); and a read of years of a daily table lists it once, not once per day.

The rows are real spot BTCUSDT 1m bars (``samples.real_rows``) standing in for any whole table.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path

import boto3
import dagster as dg
import polars as pl

from lakehouse_assets.lake.io_manager import HiveParquetIOManager, LakeResource, LakeS3Resource
from lakehouse_assets.lake.layout import LIST_TABLE_ABOVE_DAYS, read_days, read_table_file, table_file, write_partitions
from lakehouse_assets.lake.sql import query, tables
from lakehouse_assets.lake.store import LocalStore, open_store
from lakehouse_assets_tests.samples import real_rows

WHOLE = dg.AssetKey(["silver", "whole"])


@dg.asset(key=WHOLE)
def whole() -> pl.DataFrame:
    return real_rows("2020-01-01", n=3)


@dg.asset(ins={"rows": dg.AssetIn(key=WHOLE)})
def reader(rows: pl.DataFrame) -> None:
    assert rows["close"].to_list() == [7186.68, 7184.03, 7182.43]


def _materialize(lake: LakeResource) -> dg.ExecuteInProcessResult:
    return dg.materialize([whole, reader], resources={"io_manager": HiveParquetIOManager(lake=lake)})


def test_a_whole_table_is_one_file_read_back_by_the_io_manager_and_duckdb(tmp_path: Path) -> None:
    result = _materialize(LakeResource(storage=str(tmp_path)))
    assert result.success
    assert table_file("silver/whole") == "silver/whole/whole.parquet"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "silver/whole/whole.parquet"
    ]
    (event,) = result.asset_materializations_for_node("silver__whole")
    assert event.metadata["dagster/uri"].value == str(tmp_path / "silver/whole/whole.parquet")
    assert event.metadata["dagster/row_count"].value == 3
    store = LocalStore(tmp_path)
    assert read_table_file(store, "silver/whole", columns=["close"])["close"].to_list() == [7186.68, 7184.03, 7182.43]
    assert read_table_file(store, "silver/never") is None
    assert tables(store) == ["silver.whole"]
    assert query("select count(*) n, max(close) hi from silver.whole", store=store).rows() == [(3, 7186.68)]


def test_a_whole_table_on_s3(s3_endpoint: str) -> None:
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    storage = f"s3://{bucket}/lake"
    assert _materialize(LakeResource(storage=storage, s3=LakeS3Resource(endpoint_url=s3_endpoint))).success
    store = open_store(storage, s3_endpoint)
    assert store.list_keys("silver") == ["silver/whole/whole.parquet"]
    assert query("select count(*) n, min(close) lo from silver.whole", store=store).rows() == [(3, 7182.43)]


class _CountingStore(LocalStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.listed: list[str] = []

    def list_keys(self, prefix: str) -> list[str]:
        self.listed.append(prefix)
        return super().list_keys(prefix)


def test_reading_years_of_a_daily_table_lists_it_once(tmp_path: Path) -> None:
    store = _CountingStore(tmp_path)
    write_partitions(store, "bronze/t", real_rows("2020-01-01", n=2), days=["2020-01-01"], partition_column="open_time")
    days = [(date(2019, 1, 1) + timedelta(days=n)).isoformat() for n in range(800)]
    store.listed.clear()
    stored = read_days(store, "bronze/t", days)
    assert store.listed == ["bronze/t"]  # one listing for 800 days
    assert stored.present == ("2020-01-01",) and len(stored.missing) == 799
    assert stored.frame is not None and stored.frame.collect()["date"].to_list() == [date(2020, 1, 1)] * 2
    store.listed.clear()
    few = read_days(store, "bronze/t", days[365 : 365 + LIST_TABLE_ABOVE_DAYS])  # a month or two: a listing per day
    assert len(store.listed) == LIST_TABLE_ABOVE_DAYS and few.present == ("2020-01-01",)
