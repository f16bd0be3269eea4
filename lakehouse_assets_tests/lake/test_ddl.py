"""``lakehouse ddl``: the statements for Spark, Trino and Athena from a known schema, and the tables and columns
found in a lake (daily, empty-day-only and whole tables). Spark running the Spark DDL: test_spark.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from lakehouse_assets.cli import main
from lakehouse_assets.lake.ddl import LakeTable, ddl_statements, lake_tables
from lakehouse_assets.lake.layout import frame_to_parquet, table_file, write_partitions
from lakehouse_assets.lake.store import LocalStore

COLUMNS = (
    ("market", pa.large_string()),
    ("open_time", pa.timestamp("ms", tz="UTC")),
    ("close", pa.float64()),
    ("trade_count", pa.int64()),
    ("is_complete", pa.bool_()),
)
DAILY = LakeTable("silver", "klines", "s3://lake/data/silver/klines/", COLUMNS, partitioned=True)
WHOLE = LakeTable("silver", "instruments", "s3://lake/data/silver/instruments/", COLUMNS[:1], partitioned=False)


def test_spark_ddl() -> None:
    assert ddl_statements([DAILY, WHOLE], "spark") == [
        "CREATE DATABASE IF NOT EXISTS `silver`",
        "CREATE TABLE IF NOT EXISTS `silver`.`klines` (\n"
        "  `market` STRING,\n  `open_time` TIMESTAMP,\n  `close` DOUBLE,\n  `trade_count` BIGINT,\n"
        "  `is_complete` BOOLEAN,\n  `date` DATE\n)\n"
        "USING PARQUET\nPARTITIONED BY (`date`)\nLOCATION 's3://lake/data/silver/klines/'",
        "ALTER TABLE `silver`.`klines` RECOVER PARTITIONS",
        "CREATE TABLE IF NOT EXISTS `silver`.`instruments` (\n  `market` STRING\n)\n"
        "USING PARQUET\nLOCATION 's3://lake/data/silver/instruments/'",
    ]


def test_athena_ddl() -> None:
    assert ddl_statements([DAILY, WHOLE], "athena") == [
        "CREATE DATABASE IF NOT EXISTS `silver`",
        "CREATE EXTERNAL TABLE IF NOT EXISTS `silver`.`klines` (\n"
        "  `market` STRING,\n  `open_time` TIMESTAMP,\n  `close` DOUBLE,\n  `trade_count` BIGINT,\n"
        "  `is_complete` BOOLEAN\n)\n"
        "PARTITIONED BY (`date` DATE)\nSTORED AS PARQUET\nLOCATION 's3://lake/data/silver/klines/'",
        "MSCK REPAIR TABLE `silver`.`klines`",
        "CREATE EXTERNAL TABLE IF NOT EXISTS `silver`.`instruments` (\n  `market` STRING\n)\n"
        "STORED AS PARQUET\nLOCATION 's3://lake/data/silver/instruments/'",
    ]


def test_trino_ddl() -> None:
    assert ddl_statements([DAILY, WHOLE], "trino", catalog="lake") == [
        'CREATE SCHEMA IF NOT EXISTS "lake"."silver"',
        'CREATE TABLE IF NOT EXISTS "lake"."silver"."klines" (\n'
        '  "market" VARCHAR,\n  "open_time" TIMESTAMP(3),\n  "close" DOUBLE,\n  "trade_count" BIGINT,\n'
        '  "is_complete" BOOLEAN,\n  "date" DATE\n)\n'
        "WITH (\n  external_location = 's3://lake/data/silver/klines/',\n  format = 'PARQUET',\n"
        "  partitioned_by = ARRAY['date']\n)",
        "CALL \"lake\".system.sync_partition_metadata(schema_name => 'silver', table_name => 'klines', mode => 'FULL')",
        'CREATE TABLE IF NOT EXISTS "lake"."silver"."instruments" (\n  "market" VARCHAR\n)\n'
        "WITH (\n  external_location = 's3://lake/data/silver/instruments/',\n  format = 'PARQUET'\n)",
    ]


def test_a_type_the_lake_never_writes_is_refused_and_quotes_are_escaped() -> None:
    odd = LakeTable("gold", "x", "file:///it's/", (("l", pa.list_(pa.int64())),), partitioned=False)
    with pytest.raises(ValueError, match=r"no spark type for the Parquet column type list<item: int64>"):
        ddl_statements([odd], "spark")
    quoted = LakeTable("gold", "x", "file:///it's/", (("a`b", pa.int64()),), partitioned=False)
    assert "LOCATION 'file:///it\\'s/'" in ddl_statements([quoted], "spark")[1]
    assert "`a``b` BIGINT" in ddl_statements([quoted], "spark")[1]
    assert "external_location = 'file:///it''s/'" in ddl_statements([quoted], "trino")[1]
    with pytest.raises(ValueError, match="unknown engine 'hive'"):
        ddl_statements([quoted], "hive")


def _bars(day: int, closes: list[float]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "market": ["spot"] * len(closes),
            "symbol": ["BTCUSDT"] * len(closes),
            "open_time": [datetime(2020, 1, day, i, tzinfo=UTC) for i in range(len(closes))],
            "close": closes,
        },
        schema={"market": pl.String, "symbol": pl.String, "open_time": pl.Datetime("ms", "UTC"), "close": pl.Float64},
    )


def test_lake_tables_reads_columns_from_the_newest_file(tmp_path: Path, monkeypatch, capsys) -> None:
    store = LocalStore(tmp_path)
    write_partitions(store, "silver/klines", _bars(1, [7195.24]), days=["2020-01-01"], partition_column="open_time")
    # a newer day carries a column added later: the DDL names it (older files read it as NULL)
    newer = _bars(2, [7200.77]).with_columns(trade_count=pl.lit(5, pl.Int64))
    write_partitions(store, "silver/klines", newer, days=["2020-01-02"], partition_column="open_time")
    # a table holding only empty-day markers still has its columns
    write_partitions(store, "silver/kline_gaps", _bars(1, []), days=["2020-01-01"], partition_column="open_time")
    store.put_bytes(table_file("silver/whole"), frame_to_parquet(_bars(1, [1.0]).drop("open_time")))

    found = {f"{t.layer}.{t.name}": t for t in lake_tables(store)}
    assert sorted(found) == ["silver.kline_gaps", "silver.klines", "silver.whole"]
    klines = found["silver.klines"]
    assert [name for name, _ in klines.columns] == ["market", "symbol", "open_time", "close", "trade_count"]
    assert klines.partitioned and klines.location == f"{tmp_path.as_uri()}/silver/klines/"
    assert found["silver.kline_gaps"].partitioned
    assert [name for name, _ in found["silver.kline_gaps"].columns] == ["market", "symbol", "open_time", "close"]
    assert not found["silver.whole"].partitioned
    assert lake_tables(store, location="s3a://b/p/")[0].location == "s3a://b/p/silver/kline_gaps/"

    monkeypatch.setenv("LAKEHOUSE_STORAGE", str(tmp_path))
    assert main(["ddl", "--engine", "trino", "--location", "s3://bucket/lake"]) == 0
    out = capsys.readouterr().out
    assert "external_location = 's3://bucket/lake/silver/klines/'" in out
    assert '  "trade_count" BIGINT,\n  "date" DATE\n)' in out
    assert out.count("CREATE TABLE IF NOT EXISTS") == 3

    monkeypatch.setenv("LAKEHOUSE_STORAGE", str(tmp_path / "empty"))
    assert main(["ddl", "--engine", "spark"]) == 1
    assert "holds no tables yet" in capsys.readouterr().err
