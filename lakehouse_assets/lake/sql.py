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

from lakehouse_assets.lake.store import LakeStore, LocalStore, S3Store, store_from_env

# Raw archive mirror and other non-table trees live beside the tables; only dirs holding date=… are tables.
_RAW_DIRS = {"binance"}


def discover_tables(store: LakeStore) -> list[tuple[str, str]]:
    tables = []
    for layer in store.list_dirs(""):
        for table in store.list_dirs(layer):
            if table in _RAW_DIRS:
                continue
            if any(d.startswith("date=") for d in store.list_dirs(f"{layer}/{table}")):
                tables.append((layer, table))
    return tables


def _glob_literal(path: str) -> str:
    """``path`` as a DuckDB glob matching only itself: a lake at ``lake[1]`` must not read ``lake1``."""
    return "".join(f"[{c}]" if c in "[*?" else c for c in path)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def connect(store: LakeStore | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with a view per lake table, in UTC."""
    store = store or store_from_env()
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    for layer, table in discover_tables(store):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(layer)}")
        view = f"{_quote(layer)}.{_quote(table)}"
        if isinstance(store, LocalStore):
            glob = (_glob_literal(store.uri(f"{layer}/{table}")) + "/*/*.parquet").replace("'", "''")
            con.execute(
                f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true, "
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
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM {_quote(arrow_name)}")
        else:  # pragma: no cover - only two backends exist
            raise TypeError(f"unsupported store {type(store).__name__}")
    return con


def query(sql: str, *, store: LakeStore | None = None) -> pl.DataFrame:
    """Run SQL over the lake and return a Polars frame, e.g. ``query("select * from silver.klines limit 5")``."""
    con = connect(store)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


def tables(store: LakeStore | None = None) -> list[str]:
    return [f"{layer}.{table}" for layer, table in discover_tables(store or store_from_env())]
