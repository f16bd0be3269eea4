"""Crypto market-data lakehouse: Binance archives -> bronze -> silver, on a Hive-style Parquet lake.

``lakehouse_assets.query("select … from silver.klines")`` returns a Polars frame;
``lakehouse_assets.defs`` is the Dagster ``Definitions`` (imported lazily: Dagster is slow to import).
"""

from __future__ import annotations

from typing import Any

from lakehouse_assets.sql import query

__all__ = ["defs", "query"]


def __getattr__(name: str) -> Any:
    if name == "defs":
        from lakehouse_assets.definitions import defs

        return defs
    raise AttributeError(name)
