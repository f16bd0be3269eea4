"""Pandera (polars) rules for silver funding rates, reported per failing row and per day.

Blocking (ERROR): ``funding_schema``, ``funding_unique_slots``, ``funding_interval_grid``; a day
that fails them is never written. Advisory (WARN): ``funding_rate_within_cap`` (a rate outside
the exchange's clamp range is suspicious but Binance has moved caps before) and
``funding_count_per_day`` (settlements present vs expected for the interval, missing slots listed).
All of them run through the shared ``quality.run_checks``. gold/funding_features' checks
(``FEATURE_CHECKS``: no look-ahead, coverage) are here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from lakehouse_assets.funding.schema import (
    FUNDING_KEY,
    FUNDING_MARKETS,
    FUNDING_SOURCES,
    HOUR_MS,
    NULLABLE_FUNDING_COLUMNS,
    SILVER_FUNDING_SCHEMA,
    SNAP_TOLERANCE_MS,
    UTC_MS,
)
from lakehouse_assets.instruments import Instrument, parse_instrument
from lakehouse_assets.quality import ROW as _ROW
from lakehouse_assets.quality import CheckOutcome, failures_by_day, rules_schema, run_checks

# Binance clamps each rate to [-cap, +cap]; the cap is per symbol (0.75 x or 1 x the tier-1
# maintenance margin ratio, e.g. about 0.3 % for BTCUSDT; adjusted symbols up to +/-3 %). 3 % is
# the widest cap Binance announces, so the default flags only rates no Binance symbol can have;
# tighten per symbol with LAKEHOUSE_FUNDING_RATE_CAPS (e.g. "0.03,um:BTCUSDT=0.003").
DEFAULT_RATE_CAP = 0.03

BLOCKING_CHECKS: dict[str, str] = {
    "funding_schema": (
        "Columns and dtypes exactly match the silver funding schema; no nulls except mark_price; "
        "market is um or cm; source is archive or rest."
    ),
    "funding_unique_slots": "One settlement per (market, symbol, funding_time) slot.",
    "funding_interval_grid": (
        "funding_interval_hours divides 24, funding_time is a whole hour whose hour of day is a multiple of "
        "the interval (the UTC grid Binance settles on), and the raw "
        f"calc_time is within {SNAP_TOLERANCE_MS // 1000} s of its slot."
    ),
}
WARN_CHECKS: dict[str, str] = {
    "funding_rate_within_cap": (
        "|funding_rate| <= the exchange's cap for the symbol (LAKEHOUSE_FUNDING_RATE_CAPS, default "
        f"{DEFAULT_RATE_CAP})."
    ),
    "funding_count_per_day": (
        "Every instrument-day has the settlements its declared interval implies (24 / interval); the "
        "missing slots are listed."
    ),
}

_VALUE_COLUMNS = ("funding_time", "calc_time", "funding_interval_hours", "funding_rate", "source")


@dataclass(frozen=True)
class RateCaps:
    default: float
    by_instrument: dict[Instrument, float]

    def cap(self, market: str, symbol: str) -> float:
        return self.by_instrument.get(Instrument(market, symbol), self.default)


def parse_rate_caps(text: str | None) -> RateCaps:
    """``"0.03,um:BTCUSDT=0.003"``: a bare number is the default, ``market:SYMBOL=cap`` overrides."""
    default, overrides = DEFAULT_RATE_CAP, {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.rpartition("=")
        try:
            cap = float(value)
        except ValueError:
            raise ValueError(f"funding rate cap {part!r}: {value!r} is not a number") from None
        if not cap > 0:
            raise ValueError(f"funding rate cap {part!r} must be > 0")
        if not sep or key.strip().lower() == "default":
            default = cap
        else:
            overrides[parse_instrument(key)] = cap
    return RateCaps(default, overrides)


_MS = pl.col("funding_time").dt.epoch("ms")

_SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "funding_schema": pa.DataFrameSchema(
        {
            column: pa.Column(
                dtype,
                nullable=column in NULLABLE_FUNDING_COLUMNS,
                checks=(
                    [pa.Check.isin(list(FUNDING_MARKETS))] if column == "market"
                    else [pa.Check.isin(list(FUNDING_SOURCES))] if column == "source"
                    else None
                ),
            )
            for column, dtype in SILVER_FUNDING_SCHEMA.items()
        },
        strict=True,
        name="funding_schema",
    ),
    "funding_unique_slots": pa.DataFrameSchema(unique=list(FUNDING_KEY), name="funding_unique_slots"),
    "funding_interval_grid": rules_schema(
        "funding_interval_grid",
        {
            "funding_interval_hours divides 24": (pl.col("funding_interval_hours") > 0)
            & (24 % pl.col("funding_interval_hours") == 0),
            "funding_time on the interval grid": (_MS % HOUR_MS == 0)
            & (pl.col("funding_time").dt.hour().cast(pl.Int64) % pl.col("funding_interval_hours") == 0),
            f"calc_time within {SNAP_TOLERANCE_MS // 1000} s of the slot": (
                (pl.col("calc_time").dt.epoch("ms") - _MS).abs() <= SNAP_TOLERANCE_MS
            ),
        },
    ),
    "funding_rate_within_cap": rules_schema(
        "funding_rate_within_cap",
        {"|funding_rate| <= cap": pl.col("funding_rate").abs() <= pl.col("__cap")},
    ),
}


def _describe(case: dict[str, object]) -> str:
    check, column, found = str(case["check"]), case["column"], case["failure_case"]
    if check == "not_nullable":
        return f"{column} is null"
    if check == "multiple_fields_uniqueness":
        return "duplicate slot (market, symbol, funding_time)"
    if check == "column_in_schema":
        return f"unexpected column {found}"
    if check == "column_in_dataframe":
        return f"missing column {found}"
    if check.startswith("dtype("):
        return f"{column} has dtype {found}, expected {check[len('dtype('):-1]}"
    if column is not None and case.get("index") is not None and check.startswith("isin"):
        return f"{column} = {found!r} not allowed"
    return check


_FAILURE_SCHEMA: dict[str, pl.DataType] = {
    _ROW: pl.Int64(),
    "market": pl.String(),
    "symbol": pl.String(),
    "date": pl.Date(),
    "rule": pl.String(),
    "funding_time": UTC_MS,
    "calc_time": UTC_MS,
    "funding_interval_hours": pl.Int64(),
    "funding_rate": pl.Float64(),
    "source": pl.String(),
}


def _coerced(rows: pl.DataFrame, column: str, dtype: pl.DataType) -> pl.Series:
    if column in rows.columns:
        try:
            return rows[column].cast(dtype, strict=False)
        except pl.exceptions.PolarsError:
            pass
    return pl.Series(column, [None] * rows.height, dtype=dtype)


def _failures(name: str, cases: pl.DataFrame | None, indexed: pl.DataFrame) -> pl.DataFrame:
    if cases is None or cases.is_empty():
        return pl.DataFrame(schema=_FAILURE_SCHEMA)
    described = pl.DataFrame(
        {_ROW: cases["index"].cast(pl.Int64), "rule": [_describe(c) for c in cases.iter_rows(named=True)]},
        schema={_ROW: pl.Int64(), "rule": pl.String()},
    ).unique(maintain_order=True)
    failing = indexed.join(described.select(_ROW).drop_nulls().unique(), on=_ROW, how="semi")
    values = pl.DataFrame(
        {
            _ROW: failing[_ROW],
            **{c: _coerced(failing, c, _FAILURE_SCHEMA[c]) for c in ("market", "symbol", *_VALUE_COLUMNS)},
        }
    ).with_columns(date=pl.col("funding_time").dt.date())
    return described.join(values, on=_ROW, how="left").select(list(_FAILURE_SCHEMA)).sort(_ROW, "rule", nulls_last=False)


def validate_silver_funding(frame: pl.DataFrame, caps: RateCaps) -> list[CheckOutcome]:
    """The three blocking checks and the cap check, one outcome each (in that order)."""
    descriptions = {**BLOCKING_CHECKS, **WARN_CHECKS}
    blocking = {name: schema for name, schema in _SCHEMAS.items() if name in BLOCKING_CHECKS}
    within_cap = {name: schema for name, schema in _SCHEMAS.items() if name not in BLOCKING_CHECKS}
    # The cap rule reads each row's cap from a __cap column, which the strict schema check would refuse:
    # it runs on its own over the same rows in the same order (so failing rows keep their positions).
    pairs = frame.select("market", "symbol").unique()
    cap_of = pairs.with_columns(__cap=pl.Series([caps.cap(m, s) for m, s in pairs.iter_rows()], dtype=pl.Float64))
    with_caps = frame.join(cap_of, on=["market", "symbol"], how="left", maintain_order="left")
    return [
        *run_checks(frame, blocking, descriptions, _failures, failures_by_day),
        *run_checks(with_caps, within_cap, descriptions, _failures, failures_by_day),
    ]


_COUNT_SCHEMA = pa.DataFrameSchema(
    {
        "expected": pa.Column(pl.Int64, nullable=False),
        "missing": pa.Column(pl.Int64, checks=pa.Check.eq(0), nullable=False),
    },
    name="funding_count_per_day",
)


def validate_fundings_per_day(report: pl.DataFrame) -> CheckOutcome:
    """Pandera over ``funding_transforms.slot_report``: no missing slot, no day without any settlement."""

    def failing_days(name: str, cases: pl.DataFrame | None, indexed: pl.DataFrame) -> pl.DataFrame:
        return incomplete_days(report) if cases is not None else report.clear()

    (outcome,) = run_checks(
        report,
        {"funding_count_per_day": _COUNT_SCHEMA},
        WARN_CHECKS,
        failing_days,
        lambda failing: failing.select("market", "symbol", "date", "rows", "expected", "missing"),
    )
    return outcome


def incomplete_days(report: pl.DataFrame) -> pl.DataFrame:
    """The instrument-days of a ``slot_report`` missing settlements (``missing`` null: none at all)."""
    return report.filter(pl.col("missing").is_null() | (pl.col("missing") > 0))


# ---------------------------------------------------------------------------------------------
# gold/funding_features

FEATURE_CHECKS: dict[str, str] = {
    "funding_no_lookahead": (
        "Every bar's funding comes from a settlement visible by the bar's close (last_funding_time <= close_time), "
        "next_funding_time is after the close, and funding_rate_annualized = funding_rate x 24 / interval x 365."
    ),
    "funding_coverage": (
        "WARN: bars of a futures instrument without any visible settlement, and lookback days whose silver funding "
        "partition does not exist (their bars may miss the previous settlement or part of the 7-day mean)."
    ),
}


def lookahead_violations(frame: pl.DataFrame) -> pl.DataFrame:
    """Bars of gold/funding_features that could see the future (blocking ``funding_no_lookahead``), with their date.

    A bar with funding must see a settlement already visible at its close, the next settlement after its
    close, and funding_rate_annualized = funding_rate x 24 / interval x 365 (to 1e-12, relative).
    """
    has = pl.col("funding_rate").is_not_null()
    expected = pl.col("funding_rate") * 24.0 / pl.col("funding_interval_hours") * 365.0
    bad = has & (
        (pl.col("last_funding_time") > pl.col("close_time"))
        | (pl.col("next_funding_time") <= pl.col("close_time"))
        | ((pl.col("funding_rate_annualized") - expected).abs() > 1e-12 * (1 + expected.abs()))
    )
    return frame.filter(bad).with_columns(date=pl.col("open_time").dt.date())
