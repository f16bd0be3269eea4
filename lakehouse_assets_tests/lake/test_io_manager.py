"""The Hive Parquet IO manager's file semantics: exact replacement, scoped writes, empty days, clear misses."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse_assets.lake.layout import EMPTY_FILE, MissingPartitionsError, scan_partitions, write_partitions
from lakehouse_assets.lake.store import LocalStore
from lakehouse_assets_tests.harness import resources, run_klines
from lakehouse_assets_tests.samples import real_rows


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


def test_a_data_table_is_never_replaced_by_nothing(tmp_path):
    """keep mode: a re-run whose output lacks an instrument (source down, or left the universe) keeps its file."""
    store = LocalStore(tmp_path)
    frame = real_rows("2020-01-01")
    write_partitions(store, "silver/t", frame, days=["2020-01-01"], partition_column="open_time")
    stats = write_partitions(store, "silver/t", frame.clear(), days=["2020-01-01"], partition_column="open_time")
    assert files(tmp_path) == ["silver/t/date=2020-01-01/spot-BTCUSDT.parquet"]
    assert stats["kept"] == ["2020-01-01 spot:BTCUSDT"] and stats["files_deleted"] == 0
    assert scan_partitions(store, "silver/t", ["2020-01-01"]).collect()["close"].to_list() == frame["close"].to_list()
    # New rows for the instrument-day do replace it (fewer rows here: the asset decides what a replacement drops).
    write_partitions(store, "silver/t", frame.head(2), days=["2020-01-01"], partition_column="open_time")
    assert scan_partitions(store, "silver/t", ["2020-01-01"]).collect().height == 2


def test_exact_mode_removes_what_the_run_no_longer_has_and_keeps_the_schema(tmp_path):
    """exact mode (report tables such as kline_gaps): a resolved row must disappear."""
    store = LocalStore(tmp_path)
    frame = real_rows("2020-01-01")
    write_partitions(store, "silver/t", frame, days=["2020-01-01"], partition_column="open_time", mode="exact")
    write_partitions(store, "silver/t", frame.clear(), days=["2020-01-01"], partition_column="open_time", mode="exact")
    assert files(tmp_path) == [f"silver/t/date=2020-01-01/{EMPTY_FILE}"]
    empty = scan_partitions(store, "silver/t", ["2020-01-01"]).collect()
    assert empty.height == 0 and empty.schema["close"] == pl.Float64
    # Data arriving later replaces the placeholder (in either mode).
    write_partitions(store, "silver/t", frame, days=["2020-01-01"], partition_column="open_time")
    assert files(tmp_path) == ["silver/t/date=2020-01-01/spot-BTCUSDT.parquet"]


def test_a_lake_path_with_glob_characters_reads_exactly_that_lake(tmp_path):
    """'lake[1]' is a path, not a pattern: neither Polars loads nor DuckDB SQL may read a sibling 'lake1'."""
    from lakehouse_assets.lake.sql import query

    for name, rows in (("lake[1]", 3), ("lake1", 5), ("lake*x", 2), ("lakeAx", 4)):
        write_partitions(LocalStore(tmp_path / name), "silver/t", real_rows("2020-01-01", rows),
                         days=["2020-01-01"], partition_column="open_time")  # fmt: skip
    for name, rows in (("lake[1]", 3), ("lake*x", 2)):
        store = LocalStore(tmp_path / name)
        assert scan_partitions(store, "silver/t", ["2020-01-01"]).collect().height == rows
        assert query("select count(*) as n from silver.t", store=store)["n"].to_list() == [rows]


def test_a_killed_writers_temp_file_is_swept_on_the_next_write(tmp_path):
    """A real writer process killed with SIGKILL between write and rename leaves a hidden temp file;
    the next write into that day removes it, while a live writer's temp file is left alone."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    day_dir = tmp_path / "silver/t/date=2020-01-01"
    child = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        import lakehouse_assets.lake.store as ls
        real_replace = os.replace
        def die_before_rename(src, dst):
            print("written", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        ls.os.replace = die_before_rename
        ls.LocalStore(Path({str(tmp_path)!r})).put_bytes("silver/t/date=2020-01-01/spot-BTCUSDT.parquet", b"x" * 100)
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL and proc.stdout.strip() == "written"
    leftovers = [p.name for p in day_dir.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".spot-BTCUSDT.parquet.") and leftovers[0].endswith(".tmp")
    live = day_dir / f".um-BTCUSDT.parquet.{os.uname().nodename.replace('.', '_').replace('-', '_')}-{os.getpid()}.x.tmp"
    live.write_bytes(b"in progress")  # this process is alive: its temp file must survive the sweep
    write_partitions(LocalStore(tmp_path), "silver/t", real_rows("2020-01-01"), days=["2020-01-01"], partition_column="open_time")
    assert sorted(p.name for p in day_dir.iterdir()) == [live.name, "spot-BTCUSDT.parquet"]


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
    with pytest.raises(MissingPartitionsError, match="2020-01-03"):  # a lake error; the IO manager makes it a dg.Failure
        scan_partitions(store, "silver/t", ["2020-01-01", "2020-01-03"])


def test_every_missing_day_is_named_at_once_as_ranges(tmp_path):
    store = LocalStore(tmp_path)
    write_partitions(store, "silver/t", real_rows("2020-01-01"), days=["2020-01-01"], partition_column="open_time")
    wanted = [f"2019-12-{d:02d}" for d in range(1, 32)] + ["2020-01-01", "2020-01-03", "2020-01-05", "2020-01-06"]
    with pytest.raises(MissingPartitionsError) as caught:
        scan_partitions(store, "silver/t", wanted)
    assert caught.value.missing == [d for d in wanted if d != "2020-01-01"]
    assert "has no data for 34 requested day(s): 2019-12-01..2019-12-31 (31 days), 2020-01-03, 2020-01-05, 2020-01-06 " in str(
        caught.value
    )
    import pickle

    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)  # survives the multiprocess executor


def test_symbol_scoped_run_through_dagster_rewrites_only_that_symbol(tmp_path, archive_server):
    lake = tmp_path / "lake"
    res = resources(str(lake), archive_server.base_url, "spot:BTCUSDT,um:BTCUSDT")
    with dg.instance_for_test() as instance:
        assert run_klines(res, "2020-01-01", "2020-01-01", instance).success
        spot_silver = lake / "silver/klines/date=2020-01-01/spot-BTCUSDT.parquet"
        spot_bronze = lake / "bronze/klines_archive/date=2020-01-01/spot-BTCUSDT.parquet"
        stamps = (spot_silver.stat().st_mtime_ns, spot_bronze.stat().st_mtime_ns)
        archive_server.requests.clear()
        result = run_klines(res, "2020-01-01", "2020-01-01", instance, tags={"lakehouse/symbols": "um:BTCUSDT"})
        assert result.success
    assert all("/spot/" not in path for _, path in archive_server.requests)
    assert (spot_silver.stat().st_mtime_ns, spot_bronze.stat().st_mtime_ns) == stamps
    manifest = pl.read_parquet(sorted((lake / "bronze/klines_archive/date=2020-01-01").glob("*.parquet")))
    assert sorted(manifest["market"]) == ["spot", "um"]
