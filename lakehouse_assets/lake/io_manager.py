"""The lake's Dagster adapter: ``LakeResource`` (where the lake is) and ``HiveParquetIOManager``.

The layout itself (paths, Parquet encoding, what a re-run may replace) is ``lake/layout.py``, which
has no Dagster in it; this module only translates: lake errors become ``dg.Failure`` (a day never
materialized) or ``dg.RetryRequested`` (a transient storage outage, ``defs/common/retries.py``).

The ready-made Polars/DuckDB IO managers are broken on polars 2 / duckdb 2 and return a dict
or a frame depending on how many partitions are requested; this one always returns one frame
(lazy on request) for one day, a range, or a lookback window. An unpartitioned asset (a whole table
such as silver/instruments) is one file, ``<layer>/<table>/<table>.parquet`` (``layout.table_file``),
replaced in one atomic put.

Input options (``dg.AssetIn(metadata=...)``):

* ``{"columns": [...]}``: read only these columns.
* ``{"lakehouse/missing": "skip"}`` (``MISSING_KEY: MISSING_SKIP``): days that may be missing. The
  days the table holds are loaded, absent ones are skipped without an error; with no day present
  the input is an empty frame with the table's columns (if the table holds any file), else None.
  Default (``"error"``): a day never materialized fails the step, naming every absent day.
* ``{"lakehouse/lookback_days": N}`` (``LOOKBACK_KEY``): also read the N daily partitions before the days
  Dagster maps to the input (those before the table's first partition do not exist and are not asked
  for). A lookback rather than a ``TimeWindowPartitionMapping(start_offset=-N)``: the graph keeps the
  own days only, so a backfill does not target the N days after its range (``defs/common/lookback.py``).
  With ``lakehouse/missing: skip``, absent lookback days are skipped like absent own days.
* Annotate the input as ``StoredDays`` to also learn which days were present and which missing.

Chunked outputs (bounded memory, ``lake/chunks.py``): an asset that processes its range chunk by
chunk writes each checked chunk with ``LakeResource.partition_writer(...)`` and returns the writer;
this IO manager then finishes the run's days (empty-day markers, ``exact`` deletions) and records the
metadata of all chunks together. Why not hand this IO manager an iterator of frames: a chunk's
blocking checks must be reported as check evaluations and fail the step *before* any materialization
is recorded; an iterator consumed here would either record every day as materialized or lose the
evaluations of the chunk that failed.
"""

from __future__ import annotations

import threading
import types
import typing
from collections.abc import Sequence
from typing import Any

import dagster as dg
import polars as pl
from dagster_aws.s3 import S3Resource
from pydantic import Field

from lakehouse_assets.defs.common.lookback import lookback_keys
from lakehouse_assets.defs.common.retries import checked, retries_storage_errors
from lakehouse_assets.lake.layout import (
    EMPTY_FILE,
    SCOPE_ALL,
    WRITE_EXACT,
    WRITE_KEEP,
    MissingPartitionsError,
    PartitionWriter,
    StoredDays,
    day_ranges,
    empty_frame,
    frame_to_parquet,
    partition_dir,
    read_days,
    read_table_file,
    scan_partitions,
    scan_stored,
    table_file,
    write_partitions,
)
from lakehouse_assets.lake.store import DEFAULT_STORAGE, LakeStore, open_store, s3_client, s3_region, s3_session

__all__ = [
    "EMPTY_FILE", "LOOKBACK_KEY", "MISSING_ERROR", "MISSING_KEY", "MISSING_SKIP", "SCOPE_ALL", "SCOPE_KEY", "WRITE_EXACT",
    "WRITE_KEEP", "WRITE_MODE_KEY", "HiveParquetIOManager", "LakeResource", "LakeS3Resource", "PartitionWriter",
    "StoredDays", "table_prefix",
]

# Output metadata: which instruments a run was asked about (``exact`` writes replace only those).
SCOPE_KEY = "instrument_scope"
# Asset definition metadata: how a re-run treats instrument files the new output has no rows for.
WRITE_MODE_KEY = "lakehouse/write_mode"
# Input metadata: what a day the upstream table never stored means for this input.
MISSING_KEY = "lakehouse/missing"
MISSING_ERROR = "error"
MISSING_SKIP = "skip"
# Input metadata: how many daily partitions before its own days the input also reads.
LOOKBACK_KEY = "lakehouse/lookback_days"

_stores: dict[tuple[Any, ...], LakeStore] = {}
_stores_lock = threading.Lock()


def table_prefix(asset_key: dg.AssetKey) -> str:
    return "/".join(asset_key.path)


def _table(key: dg.AssetKey | str) -> str:
    return key if isinstance(key, str) else table_prefix(key)


class LakeS3Resource(S3Resource):
    """The lake's S3 client, configured the dagster-aws way (endpoint, region, profile, keys, attempts).

    Why a subclass: ``S3Resource.get_client()`` sets no timeouts and passes ``max_attempts`` as
    botocore's retry count; the lake needs a connect/read timeout (a hung PUT must not block a run)
    and counts attempts in all (LAKEHOUSE_S3_MAX_ATTEMPTS, as before). The fields are dagster-aws's.
    """

    endpoint_url: str | None = Field(
        default=None, description="LAKEHOUSE_S3_ENDPOINT_URL: S3-compatible endpoint (MinIO, ...); unset = AWS"
    )
    region_name: str | None = Field(
        default=None, description="AWS_REGION; unset = AWS_DEFAULT_REGION, the profile's region, else us-east-1"
    )
    profile_name: str | None = Field(default=None, description="AWS_PROFILE; unset = boto3's default chain")
    max_attempts: int = Field(
        default=8, description="LAKEHOUSE_S3_MAX_ATTEMPTS: attempts per S3 request in all (5xx, throttling, timeouts)"
    )
    timeout_seconds: int = Field(default=60, description="LAKEHOUSE_S3_TIMEOUT_SECONDS: S3 connect/read timeout")

    def check(self) -> None:
        """Every lake setting by its rule (a resource may be built in code, or resolved at run time)."""
        if self.endpoint_url is not None:
            checked("LAKEHOUSE_S3_ENDPOINT_URL", self.endpoint_url)
        checked("LAKEHOUSE_S3_MAX_ATTEMPTS", str(self.max_attempts))
        checked("LAKEHOUSE_S3_TIMEOUT_SECONDS", str(self.timeout_seconds))

    def session_options(self) -> dict[str, Any]:
        return {
            "profile_name": self.profile_name,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
            "aws_session_token": self.aws_session_token,
        }

    def client_options(self) -> dict[str, Any]:
        return {"use_ssl": self.use_ssl, "verify": self.verify, "unsigned": self.use_unsigned_session}

    def get_client(self) -> Any:
        session = s3_session(**self.session_options())
        return s3_client(
            session,
            region=s3_region(session, self.region_name),
            endpoint_url=self.endpoint_url or None,
            max_attempts=self.max_attempts,
            timeout_seconds=float(self.timeout_seconds),
            **self.client_options(),
        )

    def cache_key(self) -> tuple[Any, ...]:
        return (
            self.endpoint_url or None, self.region_name, self.profile_name, self.max_attempts, self.timeout_seconds,
            self.use_ssl, self.verify, self.use_unsigned_session,
            self.aws_access_key_id, self.aws_secret_access_key, self.aws_session_token,
        )  # fmt: skip


class LakeResource(dg.ConfigurableResource):
    """Where the lake lives: a local directory (the embedded default) or ``s3://bucket/prefix``.

    An S3 lake's client comes from ``s3`` (dagster-aws ``S3Resource``); unset = its defaults.
    """

    storage: str = Field(
        default=DEFAULT_STORAGE,
        description="LAKEHOUSE_STORAGE: local path or s3://bucket/prefix; the default 'lakehouse_data' is the "
        "directory of that name in the project root (the checkout holding pyproject.toml), not the working directory",
    )
    s3: LakeS3Resource | None = None

    def s3_resource(self) -> LakeS3Resource:
        return self.s3 if self.s3 is not None else LakeS3Resource()

    def store(self) -> LakeStore:
        # One store (and one boto3 client) per process and setting: clients are thread-safe and costly to build.
        s3 = self.s3_resource()
        key = (self.storage, *s3.cache_key())
        with _stores_lock:
            if key not in _stores:
                self.check()
                _stores[key] = open_store(
                    self.storage,
                    s3.endpoint_url,
                    s3_max_attempts=s3.max_attempts,
                    s3_timeout_seconds=s3.timeout_seconds,
                    s3_options={
                        "region_name": s3.region_name,
                        "session_options": s3.session_options(),
                        "client_options": s3.client_options(),
                        "client_factory": s3.get_client,
                    },
                )
            return _stores[key]

    def check(self) -> None:
        checked("LAKEHOUSE_STORAGE", self.storage)
        self.s3_resource().check()

    def read_days(
        self, table: dg.AssetKey | str, days: Sequence[str], *, columns: Sequence[str] | None = None
    ) -> StoredDays:
        """What ``table`` holds for ``days``; days never written are listed in ``missing``."""
        return read_days(self.store(), _table(table), days, columns=columns)

    def scan_stored(self, table: dg.AssetKey | str, days: Sequence[str]) -> pl.LazyFrame | None:
        """An asset's OWN previous output for ``days`` (None: none stored), for the never-lose-data rule.

        Upstream tables are read through the IO manager (``ins=``), not with this.
        """
        return scan_stored(self.store(), _table(table), days)

    def empty_frame(self, table: dg.AssetKey | str, columns: Sequence[str] | None = None) -> pl.LazyFrame | None:
        return empty_frame(self.store(), _table(table), columns)

    def read_table(self, table: dg.AssetKey | str) -> pl.DataFrame | None:
        """An unpartitioned table as stored (None: never written), e.g. an asset's own previous output."""
        return read_table_file(self.store(), _table(table))

    def partition_writer(
        self, table: dg.AssetKey, days: Sequence[str], *, partition_column: str
    ) -> PartitionWriter:
        """A writer for an asset's OWN output, chunk by chunk; return it as the output (module docstring).

        The IO manager finishes it on the same store: the lake resource and the IO manager's lake must be
        one lake (``default_resources`` shares one object), which ``handle_output`` verifies.
        """
        return PartitionWriter(self.store(), _table(table), days=days, partition_column=partition_column)


def _meta_value(value: Any) -> Any:
    return getattr(value, "value", value)


def _wanted(typing_type: Any) -> str:
    """What an input annotation asks for: 'stored' (StoredDays), 'lazy' (LazyFrame) or 'eager'."""
    candidates = [typing_type]
    if typing.get_origin(typing_type) in (typing.Union, types.UnionType):
        candidates = [t for t in typing.get_args(typing_type) if t is not type(None)]
    if any(t is StoredDays for t in candidates):
        return "stored"
    if any(t is pl.LazyFrame for t in candidates):
        return "lazy"
    return "eager"


class HiveParquetIOManager(dg.ConfigurableIOManager):
    """Persists daily-partitioned Polars frames as Hive-style Parquet in the lake (local or S3)."""

    lake: LakeResource

    @retries_storage_errors  # an S3 outage is step-retried on every asset, not only those with a RetryPolicy
    def handle_output(
        self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame | PartitionWriter | None
    ) -> None:
        if obj is None:
            return
        store = self.lake.store()
        table = table_prefix(context.asset_key)
        if isinstance(obj, PartitionWriter):
            self._finish_chunked(context, obj, store, table)
            return
        frame = obj.collect() if isinstance(obj, pl.LazyFrame) else obj
        if not context.has_asset_partitions:
            # A whole table (no partitions) is one file, replaced in one atomic put (layout.table_file).
            payload = frame_to_parquet(frame)
            store.put_bytes(table_file(table), payload)
            context.add_output_metadata(
                {
                    "dagster/uri": dg.MetadataValue.path(store.uri(table_file(table))),
                    "dagster/row_count": frame.height,
                    "parquet_bytes": len(payload),
                    "dagster/column_schema": dg.TableSchema(
                        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()]
                    ),
                }
            )
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
        self._record(context, store, table, days, stats, frame.height, frame.schema)

    def _finish_chunked(self, context: dg.OutputContext, writer: PartitionWriter, store: LakeStore, table: str) -> None:
        """An output already written chunk by chunk: settle its days, as ``write_partitions`` would."""
        days = list(context.asset_partition_keys) if context.has_asset_partitions else []
        if writer.store is not store or writer.table != table or writer.days != days:
            raise dg.DagsterInvariantViolationError(
                f"{table}: a chunked output must be written to this IO manager's lake, table and partitions "
                f"(got {writer.table} for {len(writer.days)} day(s) on {writer.store.uri('')}, expected {len(days)} "
                f"day(s) on {store.uri('')}); give the asset's lake resource and the IO manager the same LakeResource"
            )
        if context.definition_metadata.get("partition_expr") != writer.partition_column:
            raise dg.DagsterInvariantViolationError(
                f"{table}: chunks were written by {writer.partition_column!r}, the asset's partition_expr is "
                f"{context.definition_metadata.get('partition_expr')!r}"
            )
        scope = str(_meta_value(context.output_metadata.get(SCOPE_KEY, SCOPE_ALL)))
        mode = str(context.definition_metadata.get(WRITE_MODE_KEY, WRITE_KEEP))
        stats = writer.finish(scope=scope, mode=mode)
        assert writer.schema is not None  # finish() refuses a writer that never received a chunk
        self._record(context, store, table, days, stats, writer.rows, writer.schema, chunks=writer.chunks)

    def _record(
        self,
        context: dg.OutputContext,
        store: LakeStore,
        table: str,
        days: list[str],
        stats: dict[str, Any],
        rows: int,
        schema: pl.Schema,
        *,
        chunks: int | None = None,
    ) -> None:
        if stats["kept"]:
            context.log.warning(
                f"{table}: kept {len(stats['kept'])} stored instrument-day file(s) this run produced no rows for "
                f"(a re-run never replaces data by nothing): {', '.join(stats['kept'][:20])}"
            )
        context.add_output_metadata(
            {
                "dagster/uri": dg.MetadataValue.path(store.uri(partition_dir(table, days[0]) if len(days) == 1 else table)),
                "dagster/row_count": rows,
                **({} if chunks is None else {"chunks_written": chunks}),
                "parquet_bytes": stats["bytes_written"],
                "files_written": stats["files_written"],
                "stale_files_deleted": stats["files_deleted"],
                "files_kept": len(stats["kept"]),
                "kept_instrument_days": dg.MetadataValue.md(
                    "\n".join(f"- {k}" for k in stats["kept"][:100]) or "none"
                ),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name, str(dtype)) for name, dtype in schema.items()]
                ),
            }
        )

    @retries_storage_errors
    def load_input(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame | StoredDays | None:
        store = self.lake.store()
        table = table_prefix(context.asset_key)
        meta = context.definition_metadata or {}
        columns = meta.get("columns")
        wanted = _wanted(context.dagster_type.typing_type)
        if not context.has_asset_partitions:
            lf = pl.scan_parquet(
                store.uri(table_file(table)), glob=False, storage_options=store.polars_storage_options
            )
            return lf if wanted == "lazy" else lf.collect()
        missing_mode = str(meta.get(MISSING_KEY, MISSING_ERROR))
        if missing_mode not in (MISSING_ERROR, MISSING_SKIP):
            raise dg.DagsterInvariantViolationError(
                f"{table}: input metadata {MISSING_KEY}={missing_mode!r}; expected {MISSING_ERROR!r} or {MISSING_SKIP!r}"
            )
        days = list(context.asset_partition_keys)
        lookback = _meta_value(meta.get(LOOKBACK_KEY))
        if lookback is not None:
            if isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < 0:
                raise dg.DagsterInvariantViolationError(
                    f"{table}: input metadata {LOOKBACK_KEY}={lookback!r}; expected a number of days >= 0"
                )
            days = lookback_keys(context.asset_partitions_def, days, lookback)
        if missing_mode == MISSING_SKIP or not days:
            stored = read_days(store, table, days, columns=columns)
            if stored.missing:
                context.log.info(
                    f"{table}: {len(stored.missing)} of {len(days)} day(s) not stored, skipped: "
                    f"{day_ranges(stored.missing)}"
                )
        else:
            try:
                lf = scan_partitions(store, table, days, columns=columns)
            except MissingPartitionsError as exc:
                raise dg.Failure(description=str(exc)) from exc
            stored = StoredDays(frame=lf, present=tuple(days), missing=())
        if stored.frame is None:
            stored = StoredDays(empty_frame(store, table, columns), stored.present, stored.missing)
        if wanted == "stored":
            return stored
        if stored.frame is None:
            return None
        return stored.frame if wanted == "lazy" else stored.frame.collect()
