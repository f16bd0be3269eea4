"""The one Pandera (polars) runner every table's checks go through: silver klines, gold, funding.

A table's rules live beside its domain code (``klines/quality.py``, ``klines/gold_quality.py``,
``funding/quality.py``); this module only runs them. Each check returns every failing row joined
back to its instrument and time, so a failed materialisation tells the operator *which* rows are
wrong, not just that some are. Validation depth is forced to schema+data: an environment-level
``PANDERA_VALIDATION_DEPTH`` or ``PANDERA_VALIDATION_ENABLED`` must never silently turn a blocking
check into a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaErrors

ROW = "row"  # position of the failing row in the validated frame


@dataclass
class CheckOutcome:
    name: str
    description: str
    passed: bool
    failures: pl.DataFrame
    failures_by_day: pl.DataFrame


def run_checks(
    frame: pl.DataFrame,
    schemas: dict[str, pa.DataFrameSchema],
    descriptions: dict[str, str],
    failures_of: Callable[[str, pl.DataFrame | None, pl.DataFrame], pl.DataFrame],
    by_day: Callable[[pl.DataFrame], pl.DataFrame],
) -> list[CheckOutcome]:
    """Validate ``frame`` against each named Pandera schema; every layer's checks go through here.

    ``failures_of(name, failure_cases, indexed)`` turns Pandera's failure cases into rows a user can read;
    ``indexed`` is the frame with a ``row`` position column to join them back on.
    """
    # A stray 'row' column is reported by the schema check; it must not shadow the index.
    indexed = (
        frame.drop(ROW, strict=False)
        .with_row_index(ROW)
        .with_columns(pl.col(ROW).cast(pl.Int64))
    )
    outcomes: list[CheckOutcome] = []
    for name, schema in schemas.items():
        # Forced on: PANDERA_VALIDATION_ENABLED / _DEPTH in the environment must not silence these checks.
        with config_context(
            validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA
        ):
            try:
                schema.validate(frame, lazy=True)
                cases: pl.DataFrame | None = None
            except SchemaErrors as exc:
                cases = exc.failure_cases
        failures = failures_of(name, cases, indexed)
        outcomes.append(
            CheckOutcome(
                name=name,
                description=descriptions[name],
                passed=cases is None,
                failures=failures,
                failures_by_day=by_day(failures),
            )
        )
    return outcomes


def merge_outcomes(chunks: list[list[CheckOutcome]]) -> list[CheckOutcome]:
    """One outcome per check over a run processed in chunks (``lake/chunks.py``): passed only if it passed
    on every chunk, with every chunk's failing rows (``row`` counts within its chunk; a chunk holds whole
    instrument-days, so each (market, symbol, date) of ``failures_by_day`` comes from one chunk)."""
    if not chunks:
        return []
    merged: list[CheckOutcome] = []
    for same in zip(*chunks, strict=True):
        merged.append(
            CheckOutcome(
                name=same[0].name,
                description=same[0].description,
                passed=all(o.passed for o in same),
                failures=pl.concat([o.failures for o in same], how="vertical"),
                failures_by_day=pl.concat([o.failures_by_day for o in same], how="vertical").sort(
                    "market", "symbol", "date"
                ),
            )
        )
    return merged


def frame_check(rule: str, expr: pl.Expr) -> pa.Check:
    """A row-wise Polars rule as a Pandera check named ``rule`` (the name users see in failures)."""

    def check(data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(expr.alias("ok"))

    # ignore_na=False: a rule that cannot be decided for a row (nulls) is a failure.
    return pa.Check(check, name=rule, ignore_na=False)


def rules_schema(name: str, rules: dict[str, pl.Expr]) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        checks=[frame_check(rule, expr) for rule, expr in rules.items()], name=name
    )


def failures_by_day(failures: pl.DataFrame) -> pl.DataFrame:
    """Failing rows per (market, symbol, date): what the UI lists and a blocked run's error names.

    ``failures`` has ``row`` (null for a frame-wide failure, which no day owns), market, symbol, date.
    """
    return (
        failures.filter(pl.col(ROW).is_not_null())
        .group_by("market", "symbol", "date")
        .agg(failing_rows=pl.col(ROW).n_unique().cast(pl.Int64))
        .sort("market", "symbol", "date")
    )


def describe_schema_case(case: dict[str, object], key_columns: tuple[str, ...] | list[str]) -> str | None:
    """A Pandera schema failure case (nulls, duplicate keys, columns, dtypes) in words, or None if it is
    not one of those: every table's checks name these the same way in the UI."""
    check, column, found = str(case["check"]), case["column"], case["failure_case"]
    if check == "not_nullable":
        return f"{column} is null"
    if check == "multiple_fields_uniqueness":
        return f"duplicate key ({', '.join(key_columns)})"
    if check == "column_in_schema":
        return f"unexpected column {found}"
    if check == "column_in_dataframe":
        return f"missing column {found}"
    if check.startswith("dtype("):
        return f"{column} has dtype {found}, expected {check[len('dtype(') : -1].strip(chr(39))}"
    return None
