"""The same pipeline on an S3-compatible store: a real S3-protocol server (moto) on 127.0.0.1."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import boto3
import dagster as dg
import polars as pl
import pytest

from lakehouse_assets.lake.sql import query
from lakehouse_assets.lake.store import S3Store, open_store
from lakehouse_assets_tests.harness import project_defs, resources, run_klines


@pytest.fixture
def bucket(s3_endpoint):
    name = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def test_bronze_silver_on_s3_with_duckdb_and_load_asset_value(s3_endpoint, bucket, archive_server):
    storage = f"s3://{bucket}/lake"
    res = resources(storage, archive_server.base_url, "spot:BTCUSDT", s3_endpoint_url=s3_endpoint)
    with dg.instance_for_test() as instance:
        assert run_klines(res, "2020-01-01", "2020-01-02", instance).success
        assert run_klines(res, "2020-01-02", "2020-01-02", instance).success  # re-materialize one day

        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="lake/silver/")["Contents"])
        assert keys == [
            "lake/silver/klines/date=2020-01-01/spot-BTCUSDT.parquet",
            "lake/silver/klines/date=2020-01-02/spot-BTCUSDT.parquet",
        ]
        raw = s3.get_object(
            Bucket=bucket, Key="lake/bronze/binance/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip"
        )["Body"].read()
        assert hashlib.sha256(raw).hexdigest() == "dd579c62368ded93d3f01a1904575b932279e32936e181c062763e605793c1c2"

        frame = project_defs(res).load_asset_value(["silver", "klines"], partition_key="2020-01-01", instance=instance)
        first = frame.filter(pl.col("open_time") == datetime(2020, 1, 1, tzinfo=UTC)).row(0, named=True)
        assert (first["open"], first["close"], first["trade_count"]) == (7195.24, 7186.68, 493)

    # DuckDB reads S3 through pyarrow: no httpfs extension download, partition pruning on `date`.
    store = open_store(storage, s3_endpoint)
    assert isinstance(store, S3Store)
    result = query(
        "select date, count(*) n, max(high) hi from silver.klines where date = '2020-01-02' group by date",
        store=store,
    )
    assert result.rows() == [(datetime(2020, 1, 2).date(), 1440, 7212.5)]
    assert query("select count(*) from bronze.klines_archive", store=store).item() == 2


def test_s3_put_is_atomic_and_errors_name_the_object(s3_endpoint):
    store = open_store("s3://no-such-bucket-here/lake", s3_endpoint)
    with pytest.raises(Exception) as err:
        store.put_bytes("silver/klines/date=2020-01-01/spot-BTCUSDT.parquet", b"x")
    assert "s3://no-such-bucket-here/lake/silver/klines/date=2020-01-01/spot-BTCUSDT.parquet" in str(err.value)
