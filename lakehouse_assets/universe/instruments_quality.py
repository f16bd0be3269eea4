"""Blocking Pandera (polars) checks of ``silver/instruments``, run before the table is written.

Why blocking: every point-in-time answer ("is BTCUSDT expected on 2022-05-04?") reads this table. Two
rows of one instrument covering the same day would make that answer depend on which row a reader
meets first, and a duplicated key would do the same for a period's start. Such a table is refused,
the stored one stays, and the failing rows are listed (with ``valid_from`` as their day).

* ``schema``: the agreed columns and dtypes, no others; market, symbol, status, valid_from and source
  never null; known market, kind and source values; ``valid_to >= valid_from`` (equal: an instrument
  the exchange lists but that never traded in a period the lake can see).
* ``unique_periods``: one row per (market, symbol, valid_from).
* ``no_overlap``: the periods of one instrument do not overlap (``[valid_from, valid_to)``, null
  ``valid_to`` = open-ended); empty rows overlap nothing.
"""

from __future__ import annotations

from typing import Final

import pandera.polars as pa
import polars as pl

from lakehouse_assets.instruments import MARKETS
from lakehouse_assets.quality import ROW, CheckOutcome, describe_schema_case, failures_by_day, frame_check, run_checks
from lakehouse_assets.universe.instruments_table import KEY_COLUMNS, KINDS, SCHEMA, SOURCES

__all__ = ["CHECK_DESCRIPTIONS", "validate_instruments"]

NOT_NULL: Final = frozenset({"market", "symbol", "status", "valid_from", "source"})

CHECK_DESCRIPTIONS: Final[dict[str, str]] = {
    "schema": (
        "Columns and dtypes exactly the agreed silver/instruments schema; market, symbol, status, valid_from and "
        "source never null; market spot/um/cm, kind spot/perpetual/delivery, a known source; valid_to >= valid_from."
    ),
    "unique_periods": "One row per (market, symbol, valid_from).",
    "no_overlap": "The validity periods [valid_from, valid_to) of one instrument never overlap (null valid_to = open).",
}

_VALUE_RULES: Final[dict[str, pl.Expr]] = {
    "market is spot, um or cm": pl.col("market").is_in(list(MARKETS)),
    "kind is spot, perpetual or delivery (or null)": pl.col("kind").is_null() | pl.col("kind").is_in(list(KINDS)),
    "source is a known source": pl.col("source").is_in(list(SOURCES)),
    "valid_to >= valid_from": pl.col("valid_to").is_null() | (pl.col("valid_to") >= pl.col("valid_from")),
}


def _no_overlap(data: pa.PolarsData) -> pl.LazyFrame:
    """True for a row that overlaps neither neighbour of its instrument in valid_from order."""
    instrument = ["market", "symbol"]
    ordered = data.lazyframe.with_row_index("__i").sort([*instrument, "valid_from", "__i"])
    empty = pl.col("valid_to").is_not_null() & (pl.col("valid_to") == pl.col("valid_from"))
    prev_to = pl.col("valid_to").shift(1).over(instrument)
    prev_from = pl.col("valid_from").shift(1).over(instrument)
    next_from = pl.col("valid_from").shift(-1).over(instrument)
    next_to = pl.col("valid_to").shift(-1).over(instrument)
    prev_empty = prev_to.is_not_null() & (prev_to == prev_from)
    next_empty = next_to.is_not_null() & (next_to == next_from)
    clash_prev = prev_from.is_not_null() & ~prev_empty & (prev_to.is_null() | (prev_to > pl.col("valid_from")))
    clash_next = (
        next_from.is_not_null() & ~next_empty & (pl.col("valid_to").is_null() | (pl.col("valid_to") > next_from))
    )
    ok = empty | ~(clash_prev.fill_null(False) | clash_next.fill_null(False))
    return ordered.with_columns(ok=ok).sort("__i").select("ok")


_SCHEMAS: Final[dict[str, pa.DataFrameSchema]] = {
    "schema": pa.DataFrameSchema(
        {name: pa.Column(dtype, nullable=name not in NOT_NULL) for name, dtype in SCHEMA.items()},
        strict=True,
        checks=[frame_check(rule, expr) for rule, expr in _VALUE_RULES.items()],
        name="schema",
    ),
    "unique_periods": pa.DataFrameSchema(unique=list(KEY_COLUMNS), name="unique_periods"),
    "no_overlap": pa.DataFrameSchema(
        checks=[pa.Check(_no_overlap, name="periods of one instrument overlap", ignore_na=False)], name="no_overlap"
    ),
}


def validate_instruments(table: pl.DataFrame) -> list[CheckOutcome]:
    """The three checks (CHECK_DESCRIPTIONS order); failing rows carry market, symbol, their period and the rule."""
    return run_checks(table, _SCHEMAS, CHECK_DESCRIPTIONS, _failures, failures_by_day)


_FAILURE_SCHEMA: Final[dict[str, pl.DataType]] = {
    ROW: pl.Int64(),
    "market": pl.String(),
    "symbol": pl.String(),
    "date": pl.Date(),
    "valid_from": pl.Date(),
    "valid_to": pl.Date(),
    "rule": pl.String(),
}


def _describe(name: str, case: dict[str, object]) -> str:
    described = describe_schema_case(case, KEY_COLUMNS)
    if described is not None:
        return described
    check, found = str(case["check"]), case["failure_case"]
    if case["index"] is None and name != "schema":
        return f"{check} (could not be evaluated: {str(found).strip().splitlines()[0]})"
    return check


def _column(rows: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Series:
    if name in rows.columns:
        try:
            return rows[name].cast(dtype, strict=False).alias(name)
        except pl.exceptions.PolarsError:
            pass
    return pl.Series(name, [None] * rows.height, dtype=dtype)


def _failures(name: str, cases: pl.DataFrame | None, indexed: pl.DataFrame) -> pl.DataFrame:
    if cases is None or cases.is_empty():
        return pl.DataFrame(schema=_FAILURE_SCHEMA)
    rules = pl.DataFrame(
        {ROW: cases["index"].cast(pl.Int64), "rule": [_describe(name, c) for c in cases.iter_rows(named=True)]},
        schema={ROW: pl.Int64(), "rule": pl.String()},
    ).unique(maintain_order=True)
    failing = indexed.join(rules.select(ROW).drop_nulls().unique(), on=ROW, how="semi")
    rows = pl.DataFrame(
        [
            failing[ROW],
            _column(failing, "market", pl.String()),
            _column(failing, "symbol", pl.String()),
            _column(failing, "valid_from", pl.Date()).alias("date"),
            _column(failing, "valid_from", pl.Date()),
            _column(failing, "valid_to", pl.Date()),
        ]
    )
    joined = rules.join(rows, on=ROW, how="left")
    return joined.select(list(_FAILURE_SCHEMA)).sort([ROW, "rule"], nulls_last=False)
