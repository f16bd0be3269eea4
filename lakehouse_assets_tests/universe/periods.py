"""silver/instruments rows for tests, in the agreed schema, and writing them into a test lake.

The rows are SYNTHETIC (written by the tests, not taken from Binance): real symbol names with
validity periods chosen to make a symbol listed mid-range, delisted, or relisted over the days whose
real archive files are bundled. They are stored where the IO manager stores the unpartitioned
``silver/instruments`` asset (``lake.layout.table_file``), encoded the same way.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from lakehouse_assets.lake.layout import frame_to_parquet, table_file
from lakehouse_assets.lake.store import LocalStore

_UTC_MS = pl.Datetime("ms", "UTC")

#: The agreed silver/instruments schema (issue 11, slice A2 builds the table).
INSTRUMENTS_SCHEMA: dict[str, pl.DataType] = {
    "market": pl.String(), "symbol": pl.String(), "base": pl.String(), "quote": pl.String(),
    "kind": pl.String(), "contract_type": pl.String(), "contract_size": pl.Float64(),
    "tick_size": pl.Float64(), "lot_size": pl.Float64(), "status": pl.String(),
    "onboard_date": _UTC_MS, "delivery_date": _UTC_MS, "delist_date": pl.Date(),
    "first_archive_day": pl.Date(), "last_archive_day": pl.Date(),
    "valid_from": pl.Date(), "valid_to": pl.Date(), "source": pl.String(),
}  # fmt: skip


def period(
    key: str, valid_from: date, valid_to: date | None = None, *, base: str | None = None, quote: str | None = None
) -> dict[str, object]:
    """One period row of ``market:SYMBOL`` trading on ``[valid_from, valid_to)`` (valid_to None: still trading)."""
    market, symbol = key.split(":", 1)
    kind = "spot" if market == "spot" else "perpetual"
    return {
        "market": market, "symbol": symbol, "base": base, "quote": quote, "kind": kind,
        "contract_type": None if market == "spot" else "PERPETUAL", "status": "TRADING" if valid_to is None else "DELISTED",
        "first_archive_day": valid_from, "last_archive_day": None if valid_to is None else date.fromordinal(valid_to.toordinal() - 1),
        "valid_from": valid_from, "valid_to": valid_to, "source": "archive_listing",
    }  # fmt: skip


def instruments_table(*rows: dict[str, object]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=INSTRUMENTS_SCHEMA)


def write_instruments(lake: Path, table: pl.DataFrame) -> None:
    """Store ``table`` as silver/instruments of the local lake at ``lake``."""
    LocalStore(lake).put_bytes(table_file("silver/instruments"), frame_to_parquet(table))
