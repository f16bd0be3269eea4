"""Crypto market-data lakehouse: Binance archives -> bronze -> silver, on a Hive-style Parquet lake.

``lakehouse_assets.query("select … from silver.klines")`` returns a Polars frame; the Dagster
``Definitions`` are ``lakehouse_assets.definitions.defs`` (import them only when needed: Dagster is
slow to import).
"""

from lakehouse_assets.lake.sql import query

__all__ = ["query"]
