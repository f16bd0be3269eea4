"""``lakehouse`` command: SQL over the lake from a shell, and the effective configuration.

    lakehouse query "select symbol, count(*) from silver.klines group by all"
    lakehouse tables
    lakehouse config          # every LAKEHOUSE_* setting, its value and source; exit 1 if one is invalid
    lakehouse ddl --engine spark   # CREATE TABLE statements for Spark, Trino or Athena over the lake's files

The lake is LAKEHOUSE_STORAGE; unset, it is ``lakehouse_data`` in the project root (the checkout
holding pyproject.toml), whatever the working directory. A query naming a table the lake does not
have, and ``tables`` on an empty lake (exit 1), say which lake was searched.

Like ``dagster dev``, the command reads ``./.env`` (its values win over the shell's), so it sees
the configuration the code location sees.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("query", help="run SQL over the lake (DuckDB, in memory) and print the result")
    q.add_argument("sql")
    q.add_argument("--format", choices=["table", "csv", "json"], default="table")
    q.add_argument("--max-rows", type=int, default=50, help="rows shown in table format")
    sub.add_parser("tables", help="list the tables (views) the lake holds")
    c = sub.add_parser(
        "config",
        help="print every LAKEHOUSE_* setting with its effective value and source (env, .env, default); "
        "exit 1 with the same messages a run would give if one is invalid",
    )
    c.add_argument("--docs", action="store_true", help="also print what each setting does")
    d = sub.add_parser(
        "ddl",
        help="print the DDL that makes Spark, Trino or Athena read the lake's Parquet files in place "
        "(one schema per layer: silver.klines, as in `query`)",
    )
    d.add_argument("--engine", choices=["spark", "trino", "athena"], required=True)
    d.add_argument(
        "--location",
        help="the lake root as the engine reaches it (default: the lake's own address, file:///... or s3://...); "
        "e.g. s3a://bucket/prefix for Spark on S3",
    )
    d.add_argument("--catalog", default="hive", help="Trino catalog of the Hive connector (default: hive)")
    args = parser.parse_args(argv)

    with _dotenv_applied(Path.cwd() / ".env"):
        if args.command == "config":
            return show_config(docs=args.docs)
        if args.command == "ddl":
            return _print_ddl(args)
        return _run_sql(args)


@contextmanager
def _dotenv_applied(path: Path) -> Iterator[None]:
    """``./.env`` over the environment for the duration of the command, as ``dagster dev`` does."""
    from lakehouse_assets.settings import read_dotenv

    values = read_dotenv(path)
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def show_config(*, docs: bool = False) -> int:
    """The effective settings, secrets redacted; exit 1 (messages on stderr) when any is invalid."""
    from lakehouse_assets import settings

    current = settings.load()
    rows = []
    for name, entry in current.values.items():
        source = entry.source
        if entry.error:
            source += " (INVALID)"
        elif entry.raw is not None and not entry.raw.strip():
            source = "default (set but empty)"
        rows.append((name, entry.shown, source, entry.setting.doc))
    width = max(len(r[0]) for r in rows)
    value_width = min(60, max(len(r[1]) for r in rows))
    for name, shown, source, doc in rows:
        print(f"{name:<{width}}  {shown:<{value_width}}  {source}")
        if docs:
            print(f"{'':<{width}}    {doc}")
    if current.errors:
        print(f"lakehouse: {settings.ConfigError(current.errors)}", file=sys.stderr)
        return 1
    return 0


def _print_ddl(args: argparse.Namespace) -> int:
    from lakehouse_assets.lake import ddl, sql

    try:
        store = sql.store_from_env()
        if not sql.tables(store):  # an empty (or mistaken) lake must not look like success
            print(f"lakehouse: {sql.no_tables_message(store)}", file=sys.stderr)
            return 1
        script = ddl.ddl_script(store, args.engine, location=args.location, catalog=args.catalog)
    except Exception as exc:  # a missing lake or an unreadable file should read like one, not like a crash
        print(f"lakehouse: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(script)
    return 0


def _run_sql(args: argparse.Namespace) -> int:
    from lakehouse_assets.lake import sql

    try:
        store = sql.store_from_env()
        if args.command == "tables":
            names = sql.tables(store)
            if not names:  # an empty (or mistaken) lake must not look like success
                print(f"lakehouse: {sql.no_tables_message(store)}", file=sys.stderr)
                return 1
            for name in names:
                print(name)
            return 0
        result = sql.query(args.sql, store=store)
    except Exception as exc:  # a bad query should read like one, not like a crash
        print(f"lakehouse: {exc}", file=sys.stderr)
        return 1
    if args.format == "csv":
        sys.stdout.write(result.write_csv())
    elif args.format == "json":
        sys.stdout.write(result.write_json() + "\n")
    else:
        with pl.Config(tbl_rows=args.max_rows, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=60):
            print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
