"""Crypto market-data lakehouse: Binance archives -> bronze -> silver -> gold, on a Hive-style Parquet lake.

``lakehouse_assets.query("select … from silver.klines")`` returns a Polars frame. It reads the lake
named by LAKEHOUSE_STORAGE (unset: ``lakehouse_data`` in the project root, from any working
directory) through the same DuckDB views as the ``duckdb`` resource of the code location. The
Dagster ``Definitions`` are ``lakehouse_assets.definitions.defs`` (import them only when needed:
Dagster is slow to import).
"""

from lakehouse_assets.lake.sql import query

__all__ = ["query"]
