"""Pandera (polars) quality rules for silver klines, run as blocking asset checks.

Each check returns every failing row joined back to its market/symbol/open_time, so a
failed materialisation tells the operator *which* bars are wrong, not just that some are.
The rules run through the shared runner ``quality.run_checks`` (forced schema+data depth).
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from lakehouse_assets.klines.schema import INTERVAL_MS, NULLABLE_COLUMNS, SILVER_KLINES_SCHEMA
from lakehouse_assets.quality import ROW as _ROW
from lakehouse_assets.quality import CheckOutcome, describe_schema_case, failures_by_day, rules_schema, run_checks

KEY_COLUMNS: tuple[str, ...] = ("market", "symbol", "interval", "open_time")
# Float noise allowance for "part <= whole" volume comparisons (e.g. contracts * size).
RELATIVE_TOLERANCE = 1e-9

CHECK_DESCRIPTIONS: dict[str, str] = {
    "schema": (
        "Columns and dtypes exactly match the silver kline schema, no nulls except the COIN-M "
        "contract volumes, and one row per (market, symbol, interval, open_time)."
    ),
    "ohlc_consistency": (
        "Prices are finite and > 0, low <= min(open, close), high >= max(open, close) and "
        "low <= high."
    ),
    "volumes": (
        "Volumes are finite and >= 0, trade_count >= 0, taker-buy volumes do not exceed the "
        "totals (relative tolerance 1e-9), and contract volumes are set exactly for COIN-M rows."
    ),
    "time_grid": (
        "open_time lies on its interval's UTC grid and close_time = open_time + interval - 1 ms "
        "(or earlier, never before open_time: the last bar before an exchange halt closes when trading "
        "stops, e.g. spot BTCUSDT 2020-02-19 11:00 closed at 11:35:32.286)."
    ),
}

_PRICES = ("open", "high", "low", "close")
_VOLUMES = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")
_CONTRACT_VOLUMES = ("contract_volume", "taker_buy_contract_volume")
_VALUE_COLUMNS: dict[str, tuple[str, ...]] = {
    "schema": (),
    "ohlc_consistency": _PRICES,
    "volumes": (*_VOLUMES, "trade_count", *_CONTRACT_VOLUMES),
    "time_grid": ("close_time",),
}
_UTC_MS = pl.Datetime("ms", "UTC")


def validate_silver_klines(frame: pl.DataFrame) -> list[CheckOutcome]:
    """Run the four silver kline checks; one outcome per check, in CHECK_DESCRIPTIONS order."""
    return run_checks(frame, _SCHEMAS, CHECK_DESCRIPTIONS, _failures, failures_by_day)


# ---------------------------------------------------------------------------------------------
# rules


def _tolerated(whole: pl.Expr) -> pl.Expr:
    return whole + whole.abs() * RELATIVE_TOLERANCE


def _finite_non_negative(column: str) -> pl.Expr:
    return pl.col(column).is_finite() & (pl.col(column) >= 0)


def _epoch_ms(column: str) -> pl.Expr:
    return pl.col(column).dt.epoch("ms")


def _interval_ms() -> pl.Expr:
    return pl.col("interval").replace_strict(INTERVAL_MS, default=None, return_dtype=pl.Int64)


_OHLC_RULES: dict[str, pl.Expr] = {
    "prices are finite and > 0": pl.all_horizontal(
        [pl.col(c).is_finite() & (pl.col(c) > 0) for c in _PRICES]
    ),
    "low <= min(open, close)": pl.col("low") <= pl.min_horizontal("open", "close"),
    "high >= max(open, close)": pl.col("high") >= pl.max_horizontal("open", "close"),
    "low <= high": pl.col("low") <= pl.col("high"),
}

_VOLUME_RULES: dict[str, pl.Expr] = {
    "volumes are finite and >= 0": pl.all_horizontal(
        [_finite_non_negative(c) for c in _VOLUMES]
        + [pl.col(c).is_null() | _finite_non_negative(c) for c in _CONTRACT_VOLUMES]
    ),
    "trade_count >= 0": pl.col("trade_count") >= 0,
    "taker_buy_volume <= volume": pl.col("taker_buy_volume") <= _tolerated(pl.col("volume")),
    "taker_buy_quote_volume <= quote_volume": (
        pl.col("taker_buy_quote_volume") <= _tolerated(pl.col("quote_volume"))
    ),
    "taker_buy_contract_volume <= contract_volume": (
        pl.when(pl.col("taker_buy_contract_volume").is_null() & pl.col("contract_volume").is_null())
        .then(pl.lit(True))
        .otherwise(pl.col("taker_buy_contract_volume") <= _tolerated(pl.col("contract_volume")))
    ),
    # COIN-M volumes are contracts re-expressed in base/USD; a non-cm row with contract
    # volumes (or a cm row without) means the market label and the semantics disagree.
    "contract volumes set iff market is cm": (
        (pl.col("market") == "cm")
        == (
            pl.col("contract_volume").is_not_null()
            & pl.col("taker_buy_contract_volume").is_not_null()
        )
    )
    & (
        (pl.col("market") == "cm")
        | (pl.col("contract_volume").is_null() & pl.col("taker_buy_contract_volume").is_null())
    ),
}

_TIME_RULES: dict[str, pl.Expr] = {
    "interval is a known Binance interval": _interval_ms().is_not_null(),
    "open_time on the interval grid": _epoch_ms("open_time") % _interval_ms() == 0,
    # A bar cut short by a trading halt (maintenance) really closes early in Binance's data; a
    # wrong time unit or a mislabelled interval still lands far outside (open_time, open_time + interval).
    "close_time = open_time + interval - 1 ms": (
        (_epoch_ms("close_time") <= _epoch_ms("open_time") + _interval_ms() - 1)
        & (_epoch_ms("close_time") > _epoch_ms("open_time"))
    ),
}


_SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "schema": pa.DataFrameSchema(
        {
            column: pa.Column(dtype, nullable=column in NULLABLE_COLUMNS)
            for column, dtype in SILVER_KLINES_SCHEMA.items()
        },
        strict=True,
        unique=list(KEY_COLUMNS),
        name="schema",
    ),
    "ohlc_consistency": rules_schema("ohlc_consistency", _OHLC_RULES),
    "volumes": rules_schema("volumes", _VOLUME_RULES),
    "time_grid": rules_schema("time_grid", _TIME_RULES),
}


# ---------------------------------------------------------------------------------------------
# failure reporting


def _failures(name: str, cases: pl.DataFrame | None, indexed: pl.DataFrame) -> pl.DataFrame:
    value_columns = _VALUE_COLUMNS[name]
    schema = _failure_schema(value_columns)
    if cases is None or cases.is_empty():
        return pl.DataFrame(schema=schema)
    describe = _describe_schema_case if name == "schema" else _describe_rule_case
    rules = pl.DataFrame(
        {
            _ROW: cases["index"].cast(pl.Int64),
            "rule": [describe(case) for case in cases.iter_rows(named=True)],
        },
        schema={_ROW: pl.Int64(), "rule": pl.String()},
    ).unique(maintain_order=True)
    failing = indexed.join(rules.select(_ROW).drop_nulls().unique(), on=_ROW, how="semi")
    joined = rules.join(_normalised_rows(failing, value_columns), on=_ROW, how="left")
    return joined.select(list(schema)).sort([_ROW, "rule"], nulls_last=False)


def _describe_schema_case(case: dict[str, object]) -> str:
    described = describe_schema_case(case, KEY_COLUMNS)
    return described if described is not None else f"{case['check']}: {case['column']}: {case['failure_case']}"


def _describe_rule_case(case: dict[str, object]) -> str:
    if case["index"] is None:
        # The rule could not be evaluated at all (e.g. a missing or non-numeric column).
        error = str(case["failure_case"]).strip().splitlines()[0]
        return f"{case['check']} (could not be evaluated: {error})"
    return str(case["check"])


def _normalised_rows(rows: pl.DataFrame, value_columns: tuple[str, ...]) -> pl.DataFrame:
    """Key and value columns with fixed dtypes, whatever state the checked frame is in."""
    out: dict[str, pl.Series] = {_ROW: rows[_ROW]}
    for column in ("market", "symbol", "interval"):
        out[column] = _coerced(rows, column, pl.String())
    out["open_time"] = _coerced(rows, "open_time", _UTC_MS)
    out["date"] = out["open_time"].dt.date().alias("date")
    for column in value_columns:
        out[column] = _coerced(rows, column, SILVER_KLINES_SCHEMA[column])
    return pl.DataFrame(out)


def _coerced(rows: pl.DataFrame, column: str, dtype: pl.DataType) -> pl.Series:
    nulls = pl.Series(column, [None] * rows.height, dtype=dtype)
    if column not in rows.columns:
        return nulls
    series = rows[column]
    if series.dtype == dtype:
        return series
    try:
        if isinstance(dtype, pl.Datetime):
            if not isinstance(series.dtype, pl.Datetime):
                return nulls
            if series.dtype.time_zone is None:
                series = series.dt.replace_time_zone("UTC")
            return series.dt.convert_time_zone("UTC").cast(dtype)
        return series.cast(dtype, strict=False)
    except pl.exceptions.PolarsError:
        return nulls


def _failure_schema(value_columns: tuple[str, ...]) -> dict[str, pl.DataType]:
    return {
        _ROW: pl.Int64(),
        "market": pl.String(),
        "symbol": pl.String(),
        "interval": pl.String(),
        "date": pl.Date(),
        "open_time": _UTC_MS,
        "rule": pl.String(),
        **{column: SILVER_KLINES_SCHEMA[column] for column in value_columns},
    }
