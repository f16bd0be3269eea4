"""The project's IO manager: one Hive-style Parquet file per (day, instrument).

Layout: ``<lake>/<layer>/<table>/date=YYYY-MM-DD/<market>-<SYMBOL>.parquet`` (zstd). The ``date``
column lives only in the path, as Hive, Trino, Spark and Athena expect; loads add it back.

Why one file per instrument and not one per day: a run limited to one newly added symbol must
be able to write that symbol's history without rewriting (or racing with) the others. Each file
is written atomically (see ``lake_store``), so a crash never leaves a torn file or a duplicate.

What a re-run may remove (the lake's "never lose data" rule, README "What the lake guarantees"):

* ``keep`` (every data table): an instrument's file for a day is only ever *replaced* by new rows
  for that instrument-day. An instrument the new output has no rows for (its source was briefly
  unavailable, or it left the universe) keeps its file. Which rows a replacement may drop is the
  asset's decision, made from sources that answered (e.g. gap-fill keeps stored rows wherever a
  REST fetch failed), never the IO manager's.
* ``exact`` (report tables such as silver/kline_gaps, where a missing row *means* "resolved"): the
  instrument-days in the run's scope are replaced exactly, so a gap that was filled disappears.

The ready-made Polars/DuckDB IO managers are broken on polars 2 / duckdb 2 and return a dict
or a frame depending on how many partitions are requested; this one always returns one frame
(lazy on request) for one day, a range, or a lookback window.
"""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import dagster as dg
import polars as pl
import pyarrow.parquet as pq

from lakehouse_assets.lake.store import LakeStore
from lakehouse_assets.defs.common.resources import LakeResource
from lakehouse_assets.defs.common.retries import retries_storage_errors

EMPTY_FILE = "_empty.parquet"
SCOPE_KEY = "instrument_scope"
SCOPE_ALL = "all"
# Asset definition metadata: how a re-run treats instrument files the new output has no rows for.
WRITE_MODE_KEY = "lakehouse/write_mode"
WRITE_KEEP = "keep"
WRITE_EXACT = "exact"
INSTRUMENT_COLUMNS = ("market", "symbol")


def table_prefix(asset_key: dg.AssetKey) -> str:
    return "/".join(asset_key.path)


def partition_dir(table: str, day: str) -> str:
    return f"{table}/date={day}"


def instrument_file(market: str, symbol: str) -> str:
    return f"{market}-{symbol}.parquet"


def frame_to_parquet(frame: pl.DataFrame) -> bytes:
    """zstd Parquet tuned for market data, so silver stays smaller than Binance's own zips.

    Timestamps and counts rise steadily, so DELTA_BINARY_PACKED shrinks them to a few bits per row;
    dictionaries are kept for the constant string columns only (price dictionaries cost more than
    they save). Data page v1 keeps the files readable by older Hive/Trino/Athena readers.
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
        compression="zstd",
        compression_level=6,
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


def _meta_value(value: Any) -> Any:
    return getattr(value, "value", value)


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
    limits what ``exact`` may delete to the instruments the run was asked about.
    """
    if mode not in (WRITE_KEEP, WRITE_EXACT):
        raise ValueError(f"{table}: unknown write mode {mode!r}; expected {WRITE_KEEP!r} or {WRITE_EXACT!r}")
    missing = [c for c in (*INSTRUMENT_COLUMNS, partition_column) if c not in frame.columns]
    if missing:
        raise ValueError(f"{table}: output frame lacks column(s) {missing}; every table row carries market and symbol")
    frame = frame.with_columns(__day=_day_expr(frame, partition_column).cast(pl.String))
    stray = frame.filter(~pl.col("__day").is_in(days))
    if stray.height:
        sample = stray.select("__day").unique().head(5).to_series().to_list()
        raise ValueError(f"{table}: {stray.height} rows fall outside the partitions being written {days[:3]}…: days {sample}")
    data_cols = [c for c in frame.columns if c not in ("__day", "date")]
    scoped_files = None if scope == SCOPE_ALL else {
        instrument_file(*key.split(":", 1)) for key in scope.split(",") if key
    }
    stats: dict[str, Any] = {
        "files_written": 0, "bytes_written": 0, "files_deleted": 0, "rows_by_day": {}, "kept": [],
    }
    by_day = {key[0]: part for key, part in frame.partition_by("__day", as_dict=True, maintain_order=True).items()}
    for day in days:
        prefix = partition_dir(table, day)
        part = by_day.get(day)
        written: set[str] = set()
        if part is not None:
            for (market, symbol), rows in part.partition_by(list(INSTRUMENT_COLUMNS), as_dict=True, maintain_order=True).items():
                name = instrument_file(str(market), str(symbol))
                payload = frame_to_parquet(rows.select(data_cols))
                store.put_bytes(f"{prefix}/{name}", payload)
                written.add(name)
                stats["files_written"] += 1
                stats["bytes_written"] += len(payload)
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
            store.put_bytes(f"{prefix}/{EMPTY_FILE}", frame_to_parquet(frame.select(data_cols).clear()))
            stale.discard(EMPTY_FILE)
        if stale:
            store.delete_keys([f"{prefix}/{name}" for name in sorted(stale)])
            stats["files_deleted"] += len(stale)
        store.sweep_temporaries(prefix)
        stats["rows_by_day"][day] = 0 if part is None else part.height
    return stats


def scan_partitions(
    store: LakeStore, table: str, days: list[str], *, columns: list[str] | None = None
) -> pl.LazyFrame:
    """One lazy frame over the given days (with a ``date`` column); a day never materialized is an error."""
    uris: list[str] = []
    missing: list[str] = []
    for day in days:
        keys = [k for k in store.list_keys(partition_dir(table, day)) if k.endswith(".parquet")]
        if not keys:
            missing.append(day)
        uris.extend(store.uri(k) for k in keys)
    if missing:
        shown = ", ".join(missing[:10]) + (f" … (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        raise dg.Failure(
            description=(
                f"{table} has no data for {len(missing)} requested day(s): {shown} "
                f"(looked under {store.uri(table)}); materialize those partitions first"
            )
        )
    lf = pl.scan_parquet(
        uris,
        glob=False,  # explicit files: a lake path like 'lake[1]' must not match a sibling 'lake1'
        hive_partitioning=True,
        hive_schema={"date": pl.Date},
        storage_options=store.polars_storage_options,
    )
    if columns:
        lf = lf.select(columns)
    return lf


def scan_stored(store: LakeStore, table: str, days: list[str]) -> pl.LazyFrame | None:
    """What ``table`` holds for those of ``days`` that were ever written (None: none were).

    For an asset that must compare with its own previous output (never replace stored rows by
    nothing); unlike ``scan_partitions`` a day never written is simply absent, not an error.
    """
    present = [day for day in days if any(k.endswith(".parquet") for k in store.list_keys(partition_dir(table, day)))]
    return scan_partitions(store, table, present) if present else None


class HiveParquetIOManager(dg.ConfigurableIOManager):
    """Persists daily-partitioned Polars frames as Hive-style Parquet in the lake (local or S3)."""

    lake: LakeResource

    @retries_storage_errors  # an S3 outage is step-retried on every asset, not only those with a RetryPolicy
    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame | None) -> None:
        if obj is None:
            return
        frame = obj.collect() if isinstance(obj, pl.LazyFrame) else obj
        store = self.lake.store()
        table = table_prefix(context.asset_key)
        if not context.has_asset_partitions:
            payload = frame_to_parquet(frame)
            store.put_bytes(f"{table}/data.parquet", payload)
            context.add_output_metadata({"uri": store.uri(f"{table}/data.parquet"), "dagster/row_count": frame.height})
            return
        partition_column = context.definition_metadata.get("partition_expr")
        if not partition_column:
            raise dg.DagsterInvariantViolationError(f"{table}: set metadata={{'partition_expr': <date/time column>}} on the asset")
        scope = str(_meta_value(context.output_metadata.get(SCOPE_KEY, SCOPE_ALL)))
        mode = str(context.definition_metadata.get(WRITE_MODE_KEY, WRITE_KEEP))
        days = list(context.asset_partition_keys)
        stats = write_partitions(
            store, table, frame, days=days, partition_column=partition_column, scope=scope, mode=mode
        )
        if stats["kept"]:
            context.log.warning(
                f"{table}: kept {len(stats['kept'])} stored instrument-day file(s) this run produced no rows for "
                f"(a re-run never replaces data by nothing): {', '.join(stats['kept'][:20])}"
            )
        context.add_output_metadata(
            {
                "dagster/uri": dg.MetadataValue.path(store.uri(partition_dir(table, days[0]) if len(days) == 1 else table)),
                "dagster/row_count": frame.height,
                "parquet_bytes": stats["bytes_written"],
                "files_written": stats["files_written"],
                "stale_files_deleted": stats["files_deleted"],
                "files_kept": len(stats["kept"]),
                "kept_instrument_days": dg.MetadataValue.md(
                    "\n".join(f"- {k}" for k in stats["kept"][:100]) or "none"
                ),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()]
                ),
            }
        )

    @retries_storage_errors
    def load_input(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame:
        store = self.lake.store()
        table = table_prefix(context.asset_key)
        columns = (context.definition_metadata or {}).get("columns")
        if context.has_asset_partitions:
            lf = scan_partitions(store, table, list(context.asset_partition_keys), columns=columns)
        else:
            lf = pl.scan_parquet(
                store.uri(f"{table}/data.parquet"), glob=False, storage_options=store.polars_storage_options
            )
        if context.dagster_type.typing_type is pl.LazyFrame:
            return lf
        return lf.collect()


def days_in_window(start: date, end: date) -> list[str]:
    """ISO days in [start, end) — the keys of a daily time window."""
    return [d.isoformat() for d in pl.date_range(start, end, "1d", closed="left", eager=True).to_list()]
