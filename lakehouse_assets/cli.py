"""``lakehouse`` command: SQL over the lake from a shell.

    lakehouse query "select symbol, count(*) from silver.klines group by all"
    lakehouse tables
"""

from __future__ import annotations

import argparse
import sys

import polars as pl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("query", help="run SQL over the lake (DuckDB, in memory) and print the result")
    q.add_argument("sql")
    q.add_argument("--format", choices=["table", "csv", "json"], default="table")
    q.add_argument("--max-rows", type=int, default=50, help="rows shown in table format")
    sub.add_parser("tables", help="list the tables (views) the lake holds")
    args = parser.parse_args(argv)

    from lakehouse_assets import sql

    try:
        if args.command == "tables":
            for name in sql.tables():
                print(name)
            return 0
        result = sql.query(args.sql)
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
