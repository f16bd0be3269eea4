"""PartitionWriter: a run written chunk by chunk leaves exactly the files one write of the whole run leaves.

Frames are real Binance days (spot BTCUSDT 2020-01-01..03, USD-M BTCUSDT 2022-05-04..06), parsed from the
bundled sample files; the lake is a temp directory.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse_assets.lake.io_manager import HiveParquetIOManager, LakeResource
from lakehouse_assets.lake.layout import EMPTY_FILE, WRITE_EXACT, WRITE_KEEP, PartitionWriter, write_partitions
from lakehouse_assets.lake.store import LakeStorageError, LocalStore
from lakehouse_assets_tests.samples import SPOT, UM, real_days

SPOT_DAYS = [date(2020, 1, 1) + timedelta(days=i) for i in range(3)]
UM_DAYS = [date(2022, 5, 4) + timedelta(days=i) for i in range(3)]
EMPTY_DAY = "2020-01-04"  # in the run, no rows: gets the empty-day marker
DAYS = [d.isoformat() for d in SPOT_DAYS] + [EMPTY_DAY] + [d.isoformat() for d in UM_DAYS]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    return real_days(SPOT, SPOT_DAYS), real_days(UM, UM_DAYS)


def _seed(store: LocalStore, spot: pl.DataFrame) -> None:
    """What an earlier run left: spot's first day, a file of an instrument no longer in the run, an empty marker."""
    write_partitions(store, "t", spot.head(10), days=DAYS[:1], partition_column="open_time")
    write_partitions(store, "t", spot.head(5).with_columns(symbol=pl.lit("ETHUSDT")), days=DAYS[:1],
                     partition_column="open_time")
    write_partitions(store, "t", spot.clear(), days=[DAYS[4]], partition_column="open_time")


@pytest.mark.parametrize("mode, scope", [(WRITE_KEEP, "all"), (WRITE_EXACT, "all"), (WRITE_EXACT, "spot:BTCUSDT,um:BTCUSDT")])
def test_chunked_write_is_byte_identical_to_one_write(tmp_path, frames, mode, scope) -> None:
    spot, um = frames
    whole, chunked = LocalStore(tmp_path / "whole"), LocalStore(tmp_path / "chunked")
    for store in (whole, chunked):
        _seed(store, spot)

    expected = write_partitions(whole, "t", pl.concat([spot, um]), days=DAYS, partition_column="open_time",
                                scope=scope, mode=mode)
    writer = PartitionWriter(chunked, "t", days=DAYS, partition_column="open_time")
    for chunk in (spot.slice(0, 1440), spot.slice(1440), um):  # one day, then two, then another instrument
        writer.write(chunk)
    stats = writer.finish(scope=scope, mode=mode)

    assert _files(tmp_path / "chunked") == _files(tmp_path / "whole")
    assert stats == expected
    assert stats["rows_by_day"] == {**dict.fromkeys(DAYS, 1440), EMPTY_DAY: 0}
    assert writer.rows == 6 * 1440 and writer.chunks == 3
    names = set(_files(tmp_path / "chunked"))
    assert f"t/date={EMPTY_DAY}/{EMPTY_FILE}" in names
    # keep: the other instrument's stored file stays; exact with scope 'all': it goes
    assert ("t/date=2020-01-01/spot-ETHUSDT.parquet" in names) == (mode == WRITE_KEEP or scope != "all")
    assert f"t/date={DAYS[4]}/{EMPTY_FILE}" not in names  # replaced by rows


def test_nothing_is_deleted_before_finish(tmp_path, frames) -> None:
    """A run stopped between chunks (a blocked check, a crash) keeps every stored file."""
    spot, _ = frames
    store = LocalStore(tmp_path)
    _seed(store, spot)
    before = set(_files(tmp_path))
    writer = PartitionWriter(store, "t", days=DAYS, partition_column="open_time")
    writer.write(spot.slice(1440, 1440))  # 2020-01-02 only
    after = set(_files(tmp_path))
    assert after == before | {"t/date=2020-01-02/spot-BTCUSDT.parquet"}


def test_chunks_must_share_columns_and_stay_in_the_run(tmp_path, frames) -> None:
    spot, um = frames
    writer = PartitionWriter(LocalStore(tmp_path), "t", days=DAYS, partition_column="open_time")
    with pytest.raises(ValueError, match="no chunk was written"):
        writer.finish()
    writer.write(spot.slice(0, 10))
    with pytest.raises(ValueError, match="differ from the first chunk"):
        writer.write(um.drop("source"))
    with pytest.raises(ValueError, match="outside the partitions"):
        PartitionWriter(LocalStore(tmp_path), "t", days=DAYS[:1], partition_column="open_time").write(um)
    writer.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        writer.write(spot)


def test_the_io_manager_finishes_a_writer_only_on_its_own_lake_and_days(tmp_path, frames) -> None:
    """A chunked output is settled by the IO manager; one written to another lake or other days is refused."""
    spot, _ = frames
    days = DAYS[:3]
    mine, other = LakeResource(storage=str(tmp_path / "mine")), LakeResource(storage=str(tmp_path / "other"))

    def context(keys: list[str]) -> dg.OutputContext:
        return dg.build_output_context(
            asset_key=dg.AssetKey(["t"]),
            definition_metadata={"partition_expr": "open_time"},
            asset_partitions_def=dg.DailyPartitionsDefinition(start_date="2020-01-01"),
            asset_partition_key_range=dg.PartitionKeyRange(keys[0], keys[-1]),
        )

    for writer, keys, why in (
        (other.partition_writer(dg.AssetKey(["t"]), days, partition_column="open_time"), days, "this IO manager's lake"),
        (mine.partition_writer(dg.AssetKey(["t"]), days[:2], partition_column="open_time"), days, "partitions"),
    ):
        writer.write(spot.slice(0, 1440))
        with pytest.raises(dg.DagsterInvariantViolationError, match=why):
            HiveParquetIOManager(lake=mine).handle_output(context(keys), writer)

    writer = mine.partition_writer(dg.AssetKey(["t"]), days, partition_column="open_time")
    writer.write(spot)
    HiveParquetIOManager(lake=mine).handle_output(context(days), writer)
    assert sorted(_files(tmp_path / "mine")) == [f"t/date={d}/spot-BTCUSDT.parquet" for d in days]


def test_put_many_stores_in_order_and_a_failure_keeps_the_items_before_it(tmp_path) -> None:
    """Local batches fsync in parallel, yet keep put_bytes' contract: whole files, in order, stop at the failure."""
    store = LocalStore(tmp_path)
    items = [(f"t/date=2024-01-0{i}/spot-S{i}.parquet", bytes([i]) * (1000 + i)) for i in range(1, 6)]
    store.put_many(items)
    assert [(k, store.get_bytes(k)) for k, _ in items] == items
    # a key whose directory is a file cannot be written: the items before it are, the ones after it are not tried
    (tmp_path / "blocked").write_bytes(b"a file, not a directory")
    batch = [("u/a.parquet", b"first"), ("u/b.parquet", b"second"), ("blocked/c.parquet", b"third"), ("u/d.parquet", b"x")]
    with pytest.raises(LakeStorageError, match="blocked"):
        store.put_many(batch)
    assert sorted(p.name for p in (tmp_path / "u").iterdir()) == ["a.parquet", "b.parquet"]  # no temp left behind
    assert store.get_bytes("u/b.parquet") == b"second"


def test_a_failing_put_stops_the_chunk_at_that_file(tmp_path, frames) -> None:
    """The writer stores its files in batches; the first file the disk refuses stops it, the files before it stay
    whole and nothing after it is written (here a file sits where the third day's directory must go)."""
    store = LocalStore(tmp_path)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / f"date={DAYS[2]}").write_bytes(b"not a directory")
    with pytest.raises(LakeStorageError, match=f"date={DAYS[2]}"):
        write_partitions(store, "t", pl.concat(frames), days=DAYS, partition_column="open_time")
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
    assert written == [f"t/date={DAYS[0]}/spot-BTCUSDT.parquet", f"t/date={DAYS[1]}/spot-BTCUSDT.parquet"]
    assert pl.read_parquet(tmp_path / written[1]).height == 1440
    assert not [p for p in tmp_path.rglob(".*.tmp")]
