"""A local Spark reads the lake through the DDL ``lakehouse ddl --engine spark`` prints, and its aggregates equal
DuckDB's (``lake.sql.query``) on the same files: silver/klines, gold/klines_resampled, gold/features, and a
whole (unpartitioned) table.

The lake is built by the project's own jobs (``harness.run_klines`` / ``run_gapfill`` / ``run_gold``) from the
bundled real spot BTCUSDT days. One Spark session serves the module (a JVM start costs ~8 s). Without ``java``
(CI installs a JRE in ``.ci/run``) or ``pyspark`` the module skips, saying which is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lakehouse_assets.lake import ddl
from lakehouse_assets.lake.layout import frame_to_parquet, read_days, table_file
from lakehouse_assets.lake.sql import query
from lakehouse_assets.lake.store import LocalStore
from lakehouse_assets_tests.harness import resources, run_gapfill, run_gold, run_klines
from lakehouse_assets_tests.samples import SAMPLE_DATA, SPOT_OPEN_CLOSE
from lakehouse_dev.fakes.rest_server import BinanceRestServer

if shutil.which("java") is None:
    pytest.skip(
        "no `java` on PATH: Spark needs a JRE 17+ (.ci/run installs openjdk-17-jre-headless as root)",
        allow_module_level=True,
    )
pyspark_sql = pytest.importorskip("pyspark.sql", reason="pyspark is not installed (it is in the `test` extra)")

SYMBOLS = "spot:BTCUSDT"
DAYS = ["2020-01-01", "2020-01-03"]  # the bundled real spot BTCUSDT days, as one range run
WHOLE = "silver/spark_whole"  # an unpartitioned table (the layout of silver/instruments) made by the test

#: Sums of the same doubles in another order may differ in the last bits (floating-point addition is not
#: associative, and Spark and DuckDB add in their own orders); 1e-12 relative is far below any real difference.
SUM_TOLERANCE = 1e-12


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, sample_mirror: Path) -> LocalStore:
    path = tmp_path_factory.mktemp("spark_lake")
    with dg.instance_for_test() as instance, BinanceRestServer(SAMPLE_DATA) as rest:
        res = resources(path, sample_mirror.as_uri(), SYMBOLS, rest_url=rest.base_url)
        assert run_klines(res, *DAYS, instance).success
        assert run_gapfill(res, *DAYS, instance).success
        assert run_gold(res, *DAYS, instance).success
    store = LocalStore(path)
    first_day = read_days(store, "silver/klines", ["2020-01-01"]).frame.drop("date").collect()
    store.put_bytes(table_file(WHOLE), frame_to_parquet(first_day))
    return store


@pytest.fixture(scope="module")
def spark(lake: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One small local session with the lake's tables defined by the generated DDL."""
    work = tmp_path_factory.mktemp("spark")
    session = (
        pyspark_sql.SparkSession.builder.master("local[1]")
        .appName("lakehouse-test")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.warehouse.dir", str(work / "warehouse"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={work / 'derby'}")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        for statement in ddl.ddl_statements(ddl.lake_tables(lake), "spark"):
            session.sql(statement)
        yield session
    finally:
        session.stop()


def both(spark: Any, lake: LocalStore, sql: str) -> tuple[list[tuple], list[tuple]]:
    """``sql`` on Spark and on DuckDB, rows as tuples in the query's own order."""
    return [tuple(row) for row in spark.sql(sql).collect()], query(sql, store=lake).rows()


def assert_same(spark_rows: list[tuple], duck_rows: list[tuple], sum_columns: set[int]) -> None:
    assert len(spark_rows) == len(duck_rows)
    for spark_row, duck_row in zip(spark_rows, duck_rows, strict=True):
        for i, (s, d) in enumerate(zip(spark_row, duck_row, strict=True)):
            if i in sum_columns:
                assert s == pytest.approx(d, rel=SUM_TOLERANCE), (spark_row, duck_row)
            else:  # counts, keys, min/max and first/last pick stored values: exactly equal
                assert s == d, (spark_row, duck_row)


BAR_AGGREGATES = """
    select date, market, symbol, {extra} count(*) as n, sum(volume) as volume, sum(quote_volume) as quote_volume,
           min(low) as low, max(high) as high, min_by(open, open_time) as first_open, max_by(close, open_time) as last_close,
           min(unix_millis(open_time)) as first_ms, max(unix_millis(open_time)) as last_ms
    from {table} group by all order by all
"""


def _bars(table: str, extra: str = "") -> str:
    # unix_millis is Spark's; DuckDB spells it epoch_ms. The views differ only in that name.
    return BAR_AGGREGATES.format(table=table, extra=extra)


def _duck(sql: str) -> str:
    return sql.replace("unix_millis(", "epoch_ms(")


def test_spark_reads_silver_klines_as_duckdb_does(spark: Any, lake: LocalStore) -> None:
    sql = _bars("silver.klines")
    spark_rows = [tuple(row) for row in spark.sql(sql).collect()]
    duck_rows = query(_duck(sql), store=lake).rows()
    assert_same(spark_rows, duck_rows, sum_columns={4, 5})
    assert [(str(r[0]), r[1], r[2], r[3]) for r in spark_rows] == [
        (day, "spot", "BTCUSDT", 1440) for day in ("2020-01-01", "2020-01-02", "2020-01-03")
    ]
    # Binance's own first open and last close of each day, and whole UTC days of 1m bars (not shifted by a zone)
    assert {str(r[0]): (r[8], r[9]) for r in spark_rows} == SPOT_OPEN_CLOSE
    assert (spark_rows[0][10], spark_rows[0][11]) == (1577836800000, 1577836800000 + 1439 * 60_000)


def test_spark_reads_gold_as_duckdb_does(spark: Any, lake: LocalStore) -> None:
    sql = _bars("gold.klines_resampled", extra="interval,")
    spark_rows = [tuple(row) for row in spark.sql(sql).collect()]
    assert_same(spark_rows, query(_duck(sql), store=lake).rows(), sum_columns={5, 6})
    bars_per_day = {"5m": 288, "15m": 96, "1h": 24, "4h": 6, "1d": 1}
    assert {(str(r[0]), r[3]): r[4] for r in spark_rows} == {
        (day, interval): n for day in ("2020-01-01", "2020-01-02", "2020-01-03") for interval, n in bars_per_day.items()
    }

    features = """
        select date, market, symbol, interval, count(*) as n, count(rsi_14) as with_rsi, count_if(lookback_complete) as warm
        from gold.features group by all order by all
    """
    spark_rows, duck_rows = both(spark, lake, features)
    assert spark_rows == duck_rows
    per_interval = {}
    for row in spark_rows:
        per_interval[row[3]] = per_interval.get(row[3], 0) + row[4]
    assert per_interval == {"1m": 3 * 1440, "1h": 3 * 24, "1d": 3}


def test_spark_reads_a_whole_table_and_an_empty_day_as_duckdb_does(spark: Any, lake: LocalStore) -> None:
    sql = "select count(*), sum(volume), max(close), min(unix_millis(open_time)) from silver.spark_whole"
    spark_rows = [tuple(row) for row in spark.sql(sql).collect()]
    assert_same(spark_rows, query(_duck(sql), store=lake).rows(), sum_columns={1})
    assert spark_rows[0][0] == 1440
    assert spark_rows[0][3] == 1577836800000
    # silver/kline_gaps: three complete days, each stored as the schema-only ``_empty.parquet`` marker
    gaps = "select count(*) from silver.kline_gaps"
    assert both(spark, lake, gaps) == ([(0,)], [(0,)])
    assert [r[0] for r in spark.sql("show partitions silver.kline_gaps").collect()] == [
        f"date={day}" for day in ("2020-01-01", "2020-01-02", "2020-01-03")
    ]
