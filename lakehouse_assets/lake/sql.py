"""DuckDB as the SQL layer over the lake: ``select … from silver.klines``.

Each call opens an in-memory DuckDB connection and defines one view per table found in the lake
(``<layer>.<table>``). There is no shared ``.duckdb`` file, so a notebook can never hold a lock
that breaks a running job, and any number of readers can query while runs write.

Local lakes are read with DuckDB's own Parquet reader. S3 lakes are read through a pyarrow S3
dataset registered in DuckDB, because DuckDB's ``httpfs`` extension is not bundled and
downloading extensions needs internet access that users (and CI) may not have. Hive partition
pruning still applies: ``where date = '2024-01-05'`` touches only that day's objects.
"""

from __future__ import annotations

import duckdb
import polars as pl

from lakehouse_assets import settings
from lakehouse_assets.lake.layout import table_file
from lakehouse_assets.lake.store import (
    DEFAULT_STORAGE,
    LakeStore,
    LocalStore,
    S3Store,
    default_lake_dir,
    open_store,
)

# Raw archive mirror and other non-table trees live beside the tables; only dirs holding date=… are tables.
_RAW_DIRS = {"binance"}


def store_from_env() -> LakeStore:
    """The lake as configured by LAKEHOUSE_STORAGE / LAKEHOUSE_S3_* (for notebooks and the CLI).

    Only the lake's own settings are checked here (a bad cron string must not stop a SQL query);
    a bad one raises ``settings.ConfigError`` naming the variable, its value and what is expected.
    """
    current = settings.load()
    names = ("LAKEHOUSE_STORAGE", "LAKEHOUSE_S3_ENDPOINT_URL", "LAKEHOUSE_S3_MAX_ATTEMPTS", "LAKEHOUSE_S3_TIMEOUT_SECONDS")
    problems = [error for name in names if (error := current.values[name].error)]
    if problems:
        raise settings.ConfigError(problems)
    return open_store(
        current["LAKEHOUSE_STORAGE"],
        current["LAKEHOUSE_S3_ENDPOINT_URL"],
        s3_max_attempts=current["LAKEHOUSE_S3_MAX_ATTEMPTS"],
        s3_timeout_seconds=current["LAKEHOUSE_S3_TIMEOUT_SECONDS"],
    )


def _partitioned(store: LakeStore, layer: str, table: str) -> bool:
    return any(d.startswith("date=") for d in store.list_dirs(f"{layer}/{table}"))


def discover_tables(store: LakeStore) -> list[tuple[str, str]]:
    """Daily tables (``date=`` directories) and whole tables (one ``<table>.parquet``, layout.table_file)."""
    tables = []
    for layer in store.list_dirs(""):
        for table in store.list_dirs(layer):
            if table in _RAW_DIRS:
                continue
            if _partitioned(store, layer, table) or store.exists(table_file(f"{layer}/{table}")):
                tables.append((layer, table))
    return tables


def _glob_literal(path: str) -> str:
    """``path`` as a DuckDB glob matching only itself: a lake at ``lake[1]`` must not read ``lake1``."""
    return "".join(f"[{c}]" if c in "[*?" else c for c in path)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def attach_lake(con: duckdb.DuckDBPyConnection, store: LakeStore) -> list[str]:
    """Define one view per lake table on ``con`` (``<layer>.<table>``), in UTC; returns their names.

    The one place the views are made: ``connect`` (notebooks, the CLI) and the Dagster
    ``LakeDuckDBResource`` (``defs/resources.py``) both call it.
    """
    con.execute("SET TimeZone = 'UTC'")
    names = []
    for layer, table in discover_tables(store):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(layer)}")
        view = f"{_quote(layer)}.{_quote(table)}"
        if not _partitioned(store, layer, table):
            _attach_file(con, store, view, table_file(f"{layer}/{table}"), f"__lake_{layer}_{table}")
        elif isinstance(store, LocalStore):
            glob = (_glob_literal(store.uri(f"{layer}/{table}")) + "/*/*.parquet").replace("'", "''")
            con.execute(
                f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true, "
                "hive_types = {'date': 'DATE'}, union_by_name = true)"
            )
        elif isinstance(store, S3Store):
            import pyarrow as pa
            import pyarrow.dataset as ds

            dataset = ds.dataset(
                store.pyarrow_path(f"{layer}/{table}"),
                filesystem=store.pyarrow_filesystem(),
                format="parquet",
                partitioning=ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive"),
                exclude_invalid_files=False,
            )
            arrow_name = f"__lake_{layer}_{table}"
            con.register(arrow_name, dataset)
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {_quote(arrow_name)}")
        else:  # pragma: no cover - only two backends exist
            raise TypeError(f"unsupported store {type(store).__name__}")
        names.append(f"{layer}.{table}")
    return names


def _attach_file(con: duckdb.DuckDBPyConnection, store: LakeStore, view: str, key: str, arrow_name: str) -> None:
    """A view over a whole (unpartitioned) table: its one Parquet file."""
    if isinstance(store, LocalStore):
        path = _glob_literal(store.uri(key)).replace("'", "''")
        con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet('{path}')")
    elif isinstance(store, S3Store):
        import pyarrow.dataset as ds

        con.register(arrow_name, ds.dataset(store.pyarrow_path(key), filesystem=store.pyarrow_filesystem(), format="parquet"))
        con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {_quote(arrow_name)}")
    else:  # pragma: no cover - only two backends exist
        raise TypeError(f"unsupported store {type(store).__name__}")


def connect(store: LakeStore | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with a view per lake table, in UTC."""
    store = store or store_from_env()
    con = duckdb.connect(":memory:")
    attach_lake(con, store)
    return con


def describe_lake(store: LakeStore) -> str:
    """Which lake, for messages: its location and where that came from."""
    configured = (settings.load().values["LAKEHOUSE_STORAGE"].raw or "").strip()
    try:
        configured_root = open_store(configured).root_uri if configured else None
    except ValueError:
        configured_root = None
    if configured_root == store.root_uri:
        origin = f"LAKEHOUSE_STORAGE={configured!r}"
    elif not configured and isinstance(store, LocalStore) and store.root == default_lake_dir():
        origin = f"LAKEHOUSE_STORAGE unset: the default, '{DEFAULT_STORAGE}' in the project root"
    else:
        return store.root_uri
    return f"{store.root_uri} ({origin})"


def no_tables_message(store: LakeStore) -> str:
    return (
        f"the lake at {describe_lake(store)} holds no tables yet; materialize some assets first "
        "(`make demo` builds a sample lake), or point LAKEHOUSE_STORAGE at an existing lake"
    )


def run(con: duckdb.DuckDBPyConnection, statement: str, store: LakeStore) -> pl.DataFrame:
    """``statement`` on ``con`` as a Polars frame; a table or schema that does not exist names the lake searched."""
    try:
        return con.sql(statement).pl()
    except duckdb.CatalogException as exc:
        present = tables(store)
        where = (
            no_tables_message(store)
            if not present
            else f"the lake at {describe_lake(store)} holds: {', '.join(present)}"
        )
        raise duckdb.CatalogException(f"{exc}\n{where}") from exc


def query(sql: str, *, store: LakeStore | None = None) -> pl.DataFrame:
    """Run SQL over the lake and return a Polars frame, e.g. ``query("select * from silver.klines limit 5")``."""
    store = store or store_from_env()
    con = connect(store)
    try:
        return run(con, sql, store)
    finally:
        con.close()


def tables(store: LakeStore | None = None) -> list[str]:
    return [f"{layer}.{table}" for layer, table in discover_tables(store or store_from_env())]
