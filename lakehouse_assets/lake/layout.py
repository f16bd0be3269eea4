"""How tables are laid out in the lake: Hive-style Parquet, one file per (day, instrument). No Dagster.

Layout: ``<lake>/<layer>/<table>/date=YYYY-MM-DD/<market>-<SYMBOL>.parquet`` (zstd). The ``date``
column lives only in the path, as Hive, Trino, Spark and Athena expect; loads add it back.

Why one file per instrument and not one per day: a run limited to one newly added symbol must
be able to write that symbol's history without rewriting (or racing with) the others. Each file
is written atomically (see ``lake/store.py``), so a crash never leaves a torn file or a duplicate.

What a re-run may remove (the lake's "never lose data" rule, README "What the lake guarantees"):

* ``keep`` (every data table): an instrument's file for a day is only ever *replaced* by new rows
  for that instrument-day. An instrument the new output has no rows for (its source was briefly
  unavailable, or it left the universe) keeps its file. Which rows a replacement may drop is the
  asset's decision, made from sources that answered (e.g. gap-fill keeps stored rows wherever a
  REST fetch failed), never the storage layer's.
* ``exact`` (report tables such as silver/kline_gaps, where a missing row *means* "resolved"): the
  instrument-days in the run's scope are replaced exactly, so a gap that was filled disappears.

Reading: ``scan_partitions`` needs every requested day (a day never written raises
``MissingPartitionsError`` naming all of them at once); ``read_days`` takes what is there and says
what was not. The Dagster adapter (``lake/io_manager.py``) turns these errors into step failures.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from lakehouse_assets.lake.store import LakeError, LakeStore

EMPTY_FILE = "_empty.parquet"
SCOPE_ALL = "all"
# How a re-run treats instrument files the new output has no rows for (module docstring).
WRITE_KEEP = "keep"
WRITE_EXACT = "exact"
INSTRUMENT_COLUMNS = ("market", "symbol")
WRITE_THREADS = 4  # instrument-day files one writer encodes at once
TINY_FRAME_ROWS = 16  # frames shorter than this are written uncompressed (frame_to_parquet)
PUT_BATCH = 256  # instrument-day files stored by one ``put_many`` (their fsyncs overlap; they appear in order)


class MissingPartitionsError(LakeError):
    """Days a read needs that the table never stored; names every one of them (as ranges)."""

    def __init__(self, table: str, missing: Sequence[str], location: str) -> None:
        self.table = table
        self.missing = list(missing)
        self.location = location
        super().__init__(
            f"{table} has no data for {len(self.missing)} requested day(s): {day_ranges(self.missing)} "
            f"(looked under {location}); materialize those partitions first"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # survives the multiprocess executor's pickling
        return (type(self), (self.table, self.missing, self.location))


def day_ranges(days: Sequence[str]) -> str:
    """``2020-01-01, 2020-01-02, 2020-01-05..2020-03-01`` - every day named, runs of 3+ days as one range."""
    ordered = sorted(set(days))
    runs: list[list[str]] = []
    for day in ordered:
        if runs and date.fromisoformat(day) - date.fromisoformat(runs[-1][-1]) == timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{run[0]}..{run[-1]} ({len(run)} days)")
        else:
            parts.extend(run)
    return ", ".join(parts)


@dataclass(frozen=True)
class StoredDays:
    """What a table holds for some requested days: a lazy frame over the ``present`` ones (with a
    ``date`` column), or None when none is; ``missing`` lists the days never written."""

    frame: pl.LazyFrame | None
    present: tuple[str, ...]
    missing: tuple[str, ...]


def partition_dir(table: str, day: str) -> str:
    return f"{table}/date={day}"


def instrument_file(market: str, symbol: str) -> str:
    return f"{market}-{symbol}.parquet"


def frame_to_parquet(frame: pl.DataFrame) -> bytes:
    """zstd Parquet tuned for market data, so silver stays smaller than Binance's own zips.

    Timestamps and counts rise steadily, so DELTA_BINARY_PACKED shrinks them to a few bits per row;
    dictionaries are kept for the constant string columns only (price dictionaries cost more than
    they save). Data page v1 keeps the files readable by older Hive/Trino/Athena readers. A frame of a
    few rows (a manifest row per archive file, an empty-day marker) is stored uncompressed: compressing
    19 one-value columns saved nothing and cost ~1 ms per file, 36,500 files in a universe year.
    """
    table = frame.to_arrow()
    delta = [
        name for name, dtype in frame.schema.items()
        if dtype in (pl.Int64, pl.Int32, pl.Date) or isinstance(dtype, pl.Datetime)
    ]
    strings = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression="zstd" if frame.height >= TINY_FRAME_ROWS else "none",
        compression_level=6 if frame.height >= TINY_FRAME_ROWS else None,
        use_dictionary=strings or False,
        column_encoding={name: "DELTA_BINARY_PACKED" for name in delta} or None,
        data_page_version="1.0",
        write_statistics=True,
    )
    return buf.getvalue()


def _day_expr(frame: pl.DataFrame, column: str) -> pl.Expr:
    dtype = frame.schema[column]
    if dtype == pl.Date:
        return pl.col(column)
    if isinstance(dtype, pl.Datetime):
        return pl.col(column).dt.convert_time_zone("UTC").dt.date() if dtype.time_zone else pl.col(column).dt.date()
    raise TypeError(f"partition column {column!r} must be a Date or Datetime, got {dtype}")


def write_partitions(
    store: LakeStore,
    table: str,
    frame: pl.DataFrame,
    *,
    days: list[str],
    partition_column: str,
    scope: str = SCOPE_ALL,
    mode: str = WRITE_KEEP,
) -> dict[str, Any]:
    """Persist ``frame`` as the given daily partitions of ``table``; returns per-day write stats.

    ``mode`` is ``keep`` or ``exact`` (module docstring); ``scope`` (``all`` or ``market:SYMBOL,…``)
    limits what ``exact`` may delete to the instruments the run was asked about. One frame is one
    chunk of a ``PartitionWriter``.
    """
    writer = PartitionWriter(store, table, days=days, partition_column=partition_column)
    writer.write(frame)
    return writer.finish(scope=scope, mode=mode)


class PartitionWriter:
    """Writes a run's daily partitions chunk by chunk, so the run's whole range never sits in memory.

    ``write`` persists one chunk's instrument-day files as it comes (each file atomically, as
    ``write_partitions`` always did); ``finish`` then does what only the whole run can decide, per
    day: the empty-day marker, and under ``exact`` the deletion of in-scope files no chunk wrote.
    The files are those of one ``write_partitions`` call over the concatenated chunks, byte for byte,
    because every file is one instrument-day and a chunk holds whole instrument-days.

    A run that stops between chunks (a blocked check, a crash) leaves the chunks already written:
    each is a complete, checked instrument-day file, as a re-run would write it. Nothing is deleted
    before ``finish``, so a stopped run never loses stored data.
    """

    def __init__(self, store: LakeStore, table: str, *, days: Sequence[str], partition_column: str) -> None:
        self.store = store
        self.table = table
        self.days = list(days)
        self.partition_column = partition_column
        self.rows = 0
        self.schema: pl.Schema | None = None  # the data columns, from the first chunk
        self.chunks = 0
        self._written: dict[str, set[str]] = {day: set() for day in self.days}
        self._stats: dict[str, Any] = {
            "files_written": 0, "bytes_written": 0, "files_deleted": 0,
            "rows_by_day": dict.fromkeys(self.days, 0), "kept": [],
        }
        self._finished = False

    def write(self, frame: pl.DataFrame) -> None:
        """Persist one chunk: a file per (day, instrument) it holds rows for."""
        if self._finished:
            raise RuntimeError(f"{self.table}: chunk written after finish()")
        table, days = self.table, self.days
        missing = [c for c in (*INSTRUMENT_COLUMNS, self.partition_column) if c not in frame.columns]
        if missing:
            raise ValueError(f"{table}: output frame lacks column(s) {missing}; every table row carries market and symbol")
        frame = frame.with_columns(__day=_day_expr(frame, self.partition_column).cast(pl.String))
        stray = frame.filter(~pl.col("__day").is_in(days))
        if stray.height:
            sample = stray.select("__day").unique().head(5).to_series().to_list()
            raise ValueError(f"{table}: {stray.height} rows fall outside the partitions being written {days[:3]}…: days {sample}")
        data_cols = [c for c in frame.columns if c not in ("__day", "date")]
        schema = frame.select(data_cols).schema
        if self.schema is None:
            self.schema = schema
        elif schema != self.schema:
            raise ValueError(f"{table}: chunk columns {dict(schema)} differ from the first chunk's {dict(self.schema)}")
        self.chunks += 1
        self.rows += frame.height
        frame, groups = _instrument_days(frame)
        files: list[tuple[str, str, pl.DataFrame]] = []
        for day, market, symbol, first, rows in groups.iter_rows():
            self._stats["rows_by_day"][day] += rows
            files.append((day, instrument_file(market, symbol), frame.slice(first, rows).select(data_cols)))

        # A universe run writes thousands of small files. They are encoded on threads (pyarrow releases the GIL),
        # one batch ahead of the batch being stored; ``put_many`` stores a batch in order with its fsyncs
        # overlapping, so the first failing put stops the chunk (nothing after it is tried) and a killed writer
        # leaves the files before it, never a torn one.
        batches = [files[i : i + PUT_BATCH] for i in range(0, len(files), PUT_BATCH)]
        with ThreadPoolExecutor(max_workers=max(1, min(WRITE_THREADS, len(files)))) as pool:

            def encode(batch: list[tuple[str, str, pl.DataFrame]]) -> list[Future[bytes]]:
                return [pool.submit(frame_to_parquet, part) for _, _, part in batch]

            ahead = encode(batches[0]) if batches else []
            for index, batch in enumerate(batches):
                payloads = [future.result() for future in ahead]
                ahead = encode(batches[index + 1]) if index + 1 < len(batches) else []
                self.store.put_many(
                    [(f"{partition_dir(table, day)}/{name}", payload) for (day, name, _), payload in zip(batch, payloads, strict=True)]
                )
                for (day, name, _), payload in zip(batch, payloads, strict=True):
                    self._written[day].add(name)
                    self._stats["files_written"] += 1
                    self._stats["bytes_written"] += len(payload)

    def finish(self, *, scope: str = SCOPE_ALL, mode: str = WRITE_KEEP) -> dict[str, Any]:
        """Settle every day of the run (empty-day markers, ``exact`` deletions); returns the run's write stats."""
        if mode not in (WRITE_KEEP, WRITE_EXACT):
            raise ValueError(f"{self.table}: unknown write mode {mode!r}; expected {WRITE_KEEP!r} or {WRITE_EXACT!r}")
        if self.schema is None:
            raise ValueError(f"{self.table}: no chunk was written, so an empty day has no columns; write an empty frame")
        self._finished = True
        store, stats = self.store, self._stats
        scoped_files = None if scope == SCOPE_ALL else {
            instrument_file(*key.split(":", 1)) for key in scope.split(",") if key
        }
        for day in self.days:
            prefix = partition_dir(self.table, day)
            written = self._written[day]
            existing = {k.rsplit("/", 1)[-1] for k in store.list_keys(prefix) if k.endswith(".parquet")}
            if mode == WRITE_KEEP:
                # Never replaced by nothing: only the empty-day marker may go.
                stale = {EMPTY_FILE} if written else set()
                stats["kept"].extend(
                    f"{day} {name.removesuffix('.parquet').replace('-', ':', 1)}"
                    for name in sorted(existing - written - {EMPTY_FILE})
                    if scoped_files is None or name in scoped_files
                )
            else:
                stale = {
                    name for name in existing - written
                    if scoped_files is None or name in scoped_files or name == EMPTY_FILE
                }
            if written:
                stale.add(EMPTY_FILE)
            stale &= existing
            if not written and not (existing - stale):
                # A day with no rows still gets a schema-carrying file, so loads and SQL see an empty day, not a hole.
                store.put_bytes(f"{prefix}/{EMPTY_FILE}", frame_to_parquet(pl.DataFrame(schema=self.schema)))
                stale.discard(EMPTY_FILE)
            if stale:
                store.delete_keys([f"{prefix}/{name}" for name in sorted(stale)])
                stats["files_deleted"] += len(stale)
            store.sweep_temporaries(prefix)
        return stats


#: Above this many days, a read lists the whole table once instead of once per day: an unpartitioned asset
#: reading every partition of a daily table (silver/instruments over bronze/exchange_info) asks for years.
LIST_TABLE_ABOVE_DAYS = 62


def _instrument_days(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``frame`` with each (day, instrument)'s rows contiguous, and per group its first row and row count.

    Slices of one frame are views, not copies: a chunk of thousands of instrument-days is written without
    holding it twice (``partition_by`` would copy every group). A frame sorted by instrument and time (every
    table's natural order) is used as is; any other is stably sorted once, so each file keeps its rows'
    order.
    """
    keys = ["__day", *INSTRUMENT_COLUMNS]

    def groups_of(f: pl.DataFrame) -> pl.DataFrame:
        return (
            f.lazy().select(keys).with_row_index("__row")
            .group_by(keys, maintain_order=True)
            .agg(first=pl.col("__row").min(), last=pl.col("__row").max(), rows=pl.len())
            .collect()
        )

    groups = groups_of(frame)
    if not (groups["last"] - groups["first"] + 1 == groups["rows"]).all():
        frame = frame.sort([*INSTRUMENT_COLUMNS, "__day"], maintain_order=True)
        groups = groups_of(frame)
    return frame, groups.select(*keys, "first", "rows")


def stored_day_keys(store: LakeStore, table: str, days: Sequence[str]) -> dict[str, list[str]]:
    """The Parquet keys each day holds (an empty list: the day was never written)."""
    if len(days) <= LIST_TABLE_ABOVE_DAYS:
        return {day: [k for k in store.list_keys(partition_dir(table, day)) if k.endswith(".parquet")] for day in days}
    found: dict[str, list[str]] = {day: [] for day in days}
    head = f"{table}/date="
    for key in store.list_keys(table):
        if key.startswith(head) and key.endswith(".parquet"):
            day = key[len(head) :].split("/", 1)[0]
            if day in found:
                found[day].append(key)
    return found


def table_file(table: str) -> str:
    """The one Parquet file of an unpartitioned table, ``silver/instruments/instruments.parquet``.

    A whole-table asset (no date partitions, e.g. the slowly changing silver/instruments) is rewritten
    whole on each materialization, in one atomic put: a reader sees the old table or the new one.
    """
    return f"{table}/{table.rsplit('/', 1)[-1]}.parquet"


def read_table_file(store: LakeStore, table: str, *, columns: Sequence[str] | None = None) -> pl.DataFrame | None:
    """An unpartitioned table as stored (None: never written)."""
    key = table_file(table)
    if not store.exists(key):
        return None
    return pl.read_parquet(io.BytesIO(store.get_bytes(key)), columns=list(columns) if columns else None)


def _scan(store: LakeStore, keys: list[str], columns: Sequence[str] | None) -> pl.LazyFrame:
    lf = pl.scan_parquet(
        [store.uri(k) for k in keys],
        glob=False,  # explicit files: a lake path like 'lake[1]' must not match a sibling 'lake1'
        hive_partitioning=True,
        hive_schema={"date": pl.Date},
        storage_options=store.polars_storage_options,
    )
    return lf.select(columns) if columns else lf


def scan_partitions(
    store: LakeStore, table: str, days: Sequence[str], *, columns: Sequence[str] | None = None
) -> pl.LazyFrame:
    """One lazy frame over the given days (with a ``date`` column).

    Every day must have been written; otherwise ``MissingPartitionsError`` names all absent days at once.
    """
    found = stored_day_keys(store, table, days)
    missing = [day for day, keys in found.items() if not keys]
    if missing:
        raise MissingPartitionsError(table, missing, store.uri(table))
    keys = [k for day_keys in found.values() for k in day_keys]
    if not keys:  # no days asked for
        empty = empty_frame(store, table, columns)
        return empty if empty is not None else pl.LazyFrame()
    return _scan(store, keys, columns)


def read_days(
    store: LakeStore, table: str, days: Sequence[str], *, columns: Sequence[str] | None = None
) -> StoredDays:
    """What ``table`` holds for ``days``; a day never written is listed in ``missing``, not an error."""
    found = stored_day_keys(store, table, days)
    present = tuple(day for day, keys in found.items() if keys)
    missing = tuple(day for day, keys in found.items() if not keys)
    keys = [k for day in present for k in found[day]]
    return StoredDays(frame=_scan(store, keys, columns) if keys else None, present=present, missing=missing)


def scan_stored(store: LakeStore, table: str, days: Sequence[str]) -> pl.LazyFrame | None:
    """What ``table`` holds for those of ``days`` that were ever written (None: none were).

    For an asset that must compare with its own previous output (never replace stored rows by
    nothing); unlike ``scan_partitions`` a day never written is simply absent, not an error.
    """
    return read_days(store, table, days).frame


def table_schema(store: LakeStore, table: str) -> pl.Schema | None:
    """The columns of ``table`` (with ``date``) from one stored file (its newest day); None if it holds none."""
    for day_dir in reversed([d for d in store.list_dirs(table) if d.startswith("date=")]):
        keys = [k for k in store.list_keys(f"{table}/{day_dir}") if k.endswith(".parquet")]
        if keys:
            return _scan(store, keys[:1], None).collect_schema()
    return None


def empty_frame(store: LakeStore, table: str, columns: Sequence[str] | None = None) -> pl.LazyFrame | None:
    """No rows, with the table's columns if it ever stored any (None otherwise)."""
    schema = table_schema(store, table)
    if schema is None:
        return None
    lf = pl.LazyFrame(schema=schema)
    return lf.select(columns) if columns else lf
