"""DDL that lets Spark, Trino or Athena read the lake's files where they are. No Dagster.

The lake is plain Hive-partitioned Parquet (``<layer>/<table>/date=YYYY-MM-DD/*.parquet``, see
``lake/layout.py``), so a distributed engine needs only a table definition over each directory:
no copy, no export. This module writes those definitions from what the lake holds.

Naming: one schema (database) per layer, tables keep their lake name: ``silver.klines``, exactly
the names ``lakehouse query`` (DuckDB) uses, so SQL moves between engines unchanged. On Trino
the catalog comes first (``hive.silver.klines``; ``--catalog`` picks another).

Columns come from the footer of one file of the newest day (one whole-table file for an
unpartitioned table). Columns are only ever added to a table, so the newest file names them all; an
older file lacking one reads it as NULL in every engine, as DuckDB's ``union_by_name`` does.

Time: every timestamp in the lake is an instant in UTC (Parquet ``isAdjustedToUTC``, milliseconds).
Spark shows it in ``spark.sql.session.timeZone`` (set it to UTC); Trino and Athena map it to a
``TIMESTAMP`` without zone whose wall-clock value is UTC. Athena and Trino's Hive connector read
milliseconds by default (``hive.timestamp-precision=MILLISECONDS``), which is the lake's precision.

``_empty.parquet`` (the marker of a day with no rows) starts with ``_``, so Hive, Spark, Trino and
Athena skip it as a hidden file: such a day simply has no rows, as in DuckDB.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse_assets.lake.layout import table_file
from lakehouse_assets.lake.sql import discover_tables
from lakehouse_assets.lake.store import LakeStore, LocalStore, S3Store

ENGINES = ("spark", "trino", "athena")
PARTITION_COLUMN = "date"


@dataclass(frozen=True)
class LakeTable:
    """One table as an engine needs it: where its files are, its columns, whether it is daily."""

    layer: str
    name: str
    location: str  # the table's directory as the engine addresses it, ending in '/'
    columns: tuple[tuple[str, pa.DataType], ...]  # the file columns (never ``date``)
    partitioned: bool


def lake_location(store: LakeStore) -> str:
    """The lake root as an engine addresses it: ``file:///…`` on disk, ``s3://bucket/prefix`` on S3."""
    if isinstance(store, LocalStore):
        return Path(store.root).as_uri()
    return store.root_uri


def _newest_file(store: LakeStore, layer: str, table: str) -> tuple[str, bool] | None:
    """A Parquet key of the table's newest day (or its whole-table file), and whether the table is daily."""
    days = sorted((d for d in store.list_dirs(f"{layer}/{table}") if d.startswith(f"{PARTITION_COLUMN}=")), reverse=True)
    for day in days:
        keys = [k for k in store.list_keys(f"{layer}/{table}/{day}") if k.endswith(".parquet")]
        if keys:
            data = [k for k in keys if not k.rsplit("/", 1)[-1].startswith(("_", "."))]
            return (data or keys)[0], True
    if days:
        return None
    key = table_file(f"{layer}/{table}")
    return (key, False) if store.exists(key) else None


def _file_schema(store: LakeStore, key: str) -> pa.Schema:
    """The Parquet footer only (a ranged read on S3), not the file's data."""
    if isinstance(store, LocalStore):
        return pq.read_schema(store.uri(key))
    if isinstance(store, S3Store):
        return pq.read_schema(store.pyarrow_path(key), filesystem=store.pyarrow_filesystem())
    return pq.read_schema(io.BytesIO(store.get_bytes(key)))


def lake_tables(store: LakeStore, *, location: str | None = None) -> list[LakeTable]:
    """Every table the lake holds (as ``lakehouse tables`` lists them), with its columns.

    ``location``: the lake root as the engine reaches it, when that differs from the store's own
    address (``s3a://`` for Spark on S3, a mount point, a path inside a container).
    """
    root = (location or lake_location(store)).rstrip("/")
    found = []
    for layer, name in discover_tables(store):
        newest = _newest_file(store, layer, name)
        if newest is None:
            continue
        key, partitioned = newest
        schema = _file_schema(store, key)
        columns = tuple((f.name, f.type) for f in schema if f.name != PARTITION_COLUMN)
        found.append(LakeTable(layer, name, f"{root}/{layer}/{name}/", columns, partitioned))
    return found


# --------------------------------------------------------------------------- types


def _sql_type(dtype: pa.DataType, engine: str) -> str:
    """The engine's type for an Arrow type of the lake; a type the lake never writes is refused, not guessed."""
    string = "VARCHAR" if engine == "trino" else "STRING"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return string
    if pa.types.is_timestamp(dtype):
        # Spark's TIMESTAMP is an instant (shown in the session zone); Trino/Athena's has no zone and shows UTC.
        return "TIMESTAMP(3)" if engine == "trino" else "TIMESTAMP"
    simple = {
        pa.int64(): "BIGINT",
        pa.int32(): "INTEGER" if engine == "trino" else "INT",
        pa.int16(): "SMALLINT",
        pa.int8(): "TINYINT",
        pa.float64(): "DOUBLE",
        pa.float32(): "REAL" if engine == "trino" else "FLOAT",
        pa.bool_(): "BOOLEAN",
        pa.date32(): "DATE",
    }
    if dtype in simple:
        return simple[dtype]
    raise ValueError(f"no {engine} type for the Parquet column type {dtype}")


# --------------------------------------------------------------------------- quoting


def _ident(name: str, engine: str) -> str:
    if engine == "trino":
        return '"' + name.replace('"', '""') + '"'
    return "`" + name.replace("`", "``") + "`"


def _literal(text: str, engine: str) -> str:
    if engine == "spark":  # Spark SQL escapes with backslashes ('' would concatenate two literals)
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "'" + text.replace("'", "''") + "'"


# --------------------------------------------------------------------------- statements


def _column_list(table: LakeTable, engine: str, *, with_partition: bool) -> str:
    cols = [f"  {_ident(name, engine)} {_sql_type(dtype, engine)}" for name, dtype in table.columns]
    if with_partition:
        cols.append(f"  {_ident(PARTITION_COLUMN, engine)} DATE")
    return ",\n".join(cols)


def _spark(table: LakeTable) -> list[str]:
    """A data-source table; the partition column is declared last, and Spark reads its values from the paths."""
    name = f"{_ident(table.layer, 'spark')}.{_ident(table.name, 'spark')}"
    cols = _column_list(table, "spark", with_partition=table.partitioned)
    partitioned = f"\nPARTITIONED BY ({_ident(PARTITION_COLUMN, 'spark')})" if table.partitioned else ""
    statements = [
        f"CREATE TABLE IF NOT EXISTS {name} (\n{cols}\n)\nUSING PARQUET{partitioned}\n"
        f"LOCATION {_literal(table.location, 'spark')}"
    ]
    if table.partitioned:
        statements.append(f"ALTER TABLE {name} RECOVER PARTITIONS")
    return statements


def _athena(table: LakeTable) -> list[str]:
    """Hive DDL: the partition column is declared only in PARTITIONED BY; MSCK finds the days."""
    name = f"{_ident(table.layer, 'athena')}.{_ident(table.name, 'athena')}"
    cols = _column_list(table, "athena", with_partition=False)
    partitioned = f"\nPARTITIONED BY ({_ident(PARTITION_COLUMN, 'athena')} DATE)" if table.partitioned else ""
    statements = [
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n{cols}\n){partitioned}\nSTORED AS PARQUET\n"
        f"LOCATION {_literal(table.location, 'athena')}"
    ]
    if table.partitioned:
        statements.append(f"MSCK REPAIR TABLE {name}")
    return statements


def _trino(table: LakeTable, catalog: str) -> list[str]:
    """Hive connector: the partition column must be the last column; sync_partition_metadata finds the days."""
    name = ".".join(_ident(part, "trino") for part in (catalog, table.layer, table.name))
    cols = _column_list(table, "trino", with_partition=table.partitioned)
    props = [f"external_location = {_literal(table.location, 'trino')}", "format = 'PARQUET'"]
    if table.partitioned:
        props.append(f"partitioned_by = ARRAY[{_literal(PARTITION_COLUMN, 'trino')}]")
    statements = [f"CREATE TABLE IF NOT EXISTS {name} (\n{cols}\n)\nWITH (\n  " + ",\n  ".join(props) + "\n)"]
    if table.partitioned:
        statements.append(
            f"CALL {_ident(catalog, 'trino')}.system.sync_partition_metadata("
            f"schema_name => {_literal(table.layer, 'trino')}, table_name => {_literal(table.name, 'trino')}, mode => 'FULL')"
        )
    return statements


def ddl_statements(tables: list[LakeTable], engine: str, *, catalog: str = "hive") -> list[str]:
    """The statements, in order, that define ``tables`` on ``engine``: the schemas first, then each table
    followed by its partition discovery (rerun that after new days land; or use Athena partition projection)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    statements = []
    for layer in dict.fromkeys(t.layer for t in tables):
        if engine == "trino":
            statements.append(f"CREATE SCHEMA IF NOT EXISTS {_ident(catalog, engine)}.{_ident(layer, engine)}")
        else:
            statements.append(f"CREATE DATABASE IF NOT EXISTS {_ident(layer, engine)}")
    for table in tables:
        if engine == "spark":
            statements.extend(_spark(table))
        elif engine == "athena":
            statements.extend(_athena(table))
        else:
            statements.extend(_trino(table, catalog))
    return statements


def ddl_script(store: LakeStore, engine: str, *, location: str | None = None, catalog: str = "hive") -> str:
    """The DDL for every table of the lake as one script (statements end in ';')."""
    tables = lake_tables(store, location=location)
    header = (
        f"-- {engine} DDL for the lake at {store.root_uri}, generated by `lakehouse ddl`.\n"
        "-- Timestamps are UTC instants (millisecond precision); partitions are the date= directories.\n"
    )
    return header + "".join(f"\n{statement};\n" for statement in ddl_statements(tables, engine, catalog=catalog))
