"""Pandera (polars) rules for the gold tables, run as blocking asset checks before anything is written.

gold/klines_resampled is held to the same rules as silver (it is a kline table too: the silver
rules are reused on its silver columns) plus ``bar_coverage``: a bar never claims more minutes
than its interval has, and ``is_complete`` is true exactly when every minute is there. Bars holding
a REST minute from an OHLCV-only source have unknown (null) volume details, exactly like those
minutes in silver/klines_filled, and are validated the same way (on everything that is known).

gold/features gets the invariants a user relies on without checking: RSI inside [0, 100],
Bollinger bands ordered, ATR non-negative, one row per (market, symbol, interval, open_time), and
the exact column contract. A value that TA-Lib leaves undefined (warm-up) is null, never NaN,
so NaN anywhere fails the rule that covers its column.

Like quality.py, each failing check lists the failing rows (key + rule + values) for the UI,
and validation depth is forced so an environment variable can never turn a check into a no-op.

One non-blocking rule, ``lookback_coverage`` (WARN): the bars computed from less history than their
lookback declares, because days inside it were never materialized upstream (``lookback_complete``
false, see indicators.py). They are written (the values are TA-Lib's over the history present), and
``lookback_report`` lists them per instrument, interval and day with how much history was missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

import pandera.polars as pa
import polars as pl

from lakehouse_assets.klines.gapfill import SOURCE_REST, validation_view
from lakehouse_assets.klines.indicators import FEATURES_SCHEMA, history_bars, missing_history_bars
from lakehouse_assets.klines.indicators import KEY_COLUMNS as FEATURE_KEY
from lakehouse_assets.klines.quality import CHECK_DESCRIPTIONS as SILVER_CHECK_DESCRIPTIONS
from lakehouse_assets.klines.quality import validate_silver_klines
from lakehouse_assets.klines.resample import MINUTE_MS, MIXED_SOURCE, RESAMPLED_SCHEMA
from lakehouse_assets.klines.schema import INTERVAL_MS, SILVER_KLINES_SCHEMA
from lakehouse_assets.quality import CheckOutcome, frame_check, run_checks

_ROW = "row"
# pandera's own schema-level checks (as opposed to our named rules): report the column with them
_STRUCTURAL = ["not_nullable", "column_in_schema", "column_in_dataframe", "column_ordered"]

RESAMPLED_CHECK_DESCRIPTIONS: dict[str, str] = {
    **{
        name: desc.replace("silver kline schema", "silver kline schema (plus minutes, is_complete)")
        for name, desc in SILVER_CHECK_DESCRIPTIONS.items()
    },
    "bar_coverage": (
        "minutes (Int64) is between 1 and the interval's minute count, is_complete (Boolean) is true "
        "exactly when all minutes are present, and no bar is a 1m bar."
    ),
}

FEATURE_CHECK_DESCRIPTIONS: dict[str, str] = {
    "schema": "Columns and dtypes exactly match the gold/features contract; key columns are never null.",
    "unique_bars": "Timestamps are unique per key: one row per (market, symbol, interval, open_time).",
    "rsi_range": "0 <= rsi_14 <= 100 wherever RSI is defined (null only during warm-up).",
    "bollinger_order": "bb_lower_20_2 <= bb_middle_20_2 <= bb_upper_20_2 wherever the bands are defined.",
    "atr_non_negative": "atr_14 >= 0 wherever ATR is defined.",
}


LOOKBACK_CHECK = "lookback_coverage"
LOOKBACK_CHECK_DESCRIPTION = (
    "WARN: bars computed from less history than their lookback declares (lookback_complete = false), because "
    "upstream days inside it were never materialized. Listed per symbol, interval and day with the history bars "
    "missing; their values become the full-history ones when this partition re-runs after those days exist."
)
LOOKBACK_REPORT_SCHEMA: dict[str, pl.DataType] = {
    "market": pl.String(),
    "symbol": pl.String(),
    "interval": pl.String(),
    "date": pl.Date(),
    "incomplete_bars": pl.UInt32(),
    "first_bar": pl.Datetime("ms", "UTC"),
    "last_bar": pl.Datetime("ms", "UTC"),
    "history_bars_needed": pl.Int64(),
    "max_history_bars_missing": pl.Int64(),
}


def lookback_report(features: pl.DataFrame, absent_days: Mapping[str, Iterable[date]]) -> pl.DataFrame:
    """Per (market, symbol, interval, day): the bars with ``lookback_complete`` false, the first and last of
    them, how many history bars each needs, and the most of those that fell on absent days (the first bar's).

    ``absent_days`` maps an interval to the upstream days its features could not read.
    """
    parts = []
    marked = features.filter(~pl.col("lookback_complete"))
    for (interval,), rows in marked.partition_by("interval", as_dict=True, maintain_order=True).items():
        missing = missing_history_bars(rows["open_time"], str(interval), absent_days.get(str(interval), ()))
        parts.append(
            rows.select("market", "symbol", "interval", "open_time").with_columns(
                missing.alias("missing"), history_bars_needed=pl.lit(history_bars(str(interval)), pl.Int64)
            )
        )
    if not parts:
        return pl.DataFrame(schema=LOOKBACK_REPORT_SCHEMA)
    return (
        pl.concat(parts)
        .group_by("market", "symbol", "interval", date=pl.col("open_time").dt.date())
        .agg(
            incomplete_bars=pl.len(),
            first_bar=pl.col("open_time").min(),
            last_bar=pl.col("open_time").max(),
            history_bars_needed=pl.col("history_bars_needed").first(),
            max_history_bars_missing=pl.col("missing").max(),
        )
        .sort("market", "symbol", "interval", "date")
        .select([pl.col(c).cast(t) for c, t in LOOKBACK_REPORT_SCHEMA.items()])
    )


def _defined_or_null(columns: tuple[str, ...], ok: pl.Expr) -> pl.Expr:
    """Null in the first column = not defined (warm-up). Otherwise every column must be finite (Polars
    orders NaN above every number, so a NaN would pass `>=` rules) and ``ok`` must hold."""
    finite = pl.all_horizontal([pl.col(c).is_finite().fill_null(False) for c in columns])
    return pl.col(columns[0]).is_null() | (finite & ok.fill_null(False))


_MINUTES_PER_INTERVAL = pl.col("interval").replace_strict(
    {k: v // MINUTE_MS for k, v in INTERVAL_MS.items()}, default=None, return_dtype=pl.Int64
)

_RESAMPLED_SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "bar_coverage": pa.DataFrameSchema(
        {"minutes": pa.Column(pl.Int64), "is_complete": pa.Column(pl.Boolean)},
        checks=[
            frame_check("bar is not a 1m bar", pl.col("interval") != "1m"),
            frame_check(
                "1 <= minutes <= interval minutes",
                (pl.col("minutes") >= 1) & (pl.col("minutes") <= _MINUTES_PER_INTERVAL),
            ),
            frame_check(
                "is_complete == (minutes == interval minutes)",
                pl.col("is_complete") == (pl.col("minutes") == _MINUTES_PER_INTERVAL),
            ),
        ],
        name="bar_coverage",
    ),
}

_NEVER_NULL_FEATURES = (*FEATURE_KEY, "close_time", "is_complete", "lookback_complete", "close", "volume", "bars_24h")
_FEATURE_SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "schema": pa.DataFrameSchema(
        {
            column: pa.Column(dtype, nullable=column not in _NEVER_NULL_FEATURES)
            for column, dtype in FEATURES_SCHEMA.items()
        },
        strict=True,
        ordered=True,
        name="schema",
    ),
    "unique_bars": pa.DataFrameSchema(unique=list(FEATURE_KEY), name="unique_bars"),
    "rsi_range": pa.DataFrameSchema(
        checks=[frame_check("0 <= rsi_14 <= 100", _defined_or_null(("rsi_14",), pl.col("rsi_14").is_between(0.0, 100.0)))],
        name="rsi_range",
    ),
    "bollinger_order": pa.DataFrameSchema(
        checks=[
            frame_check(
                "bands all defined or all null", pl.col("bb_lower_20_2").is_null() == pl.col("bb_upper_20_2").is_null()
            ),
            frame_check(
                "bb_lower <= bb_middle",
                _defined_or_null(
                    ("bb_lower_20_2", "bb_middle_20_2"), pl.col("bb_lower_20_2") <= pl.col("bb_middle_20_2")
                ),
            ),
            frame_check(
                "bb_middle <= bb_upper",
                _defined_or_null(
                    ("bb_upper_20_2", "bb_middle_20_2"), pl.col("bb_middle_20_2") <= pl.col("bb_upper_20_2")
                ),
            ),
        ],
        name="bollinger_order",
    ),
    "atr_non_negative": pa.DataFrameSchema(
        checks=[frame_check("atr_14 >= 0", _defined_or_null(("atr_14",), pl.col("atr_14") >= 0.0))],
        name="atr_non_negative",
    ),
}
assert list(_FEATURE_SCHEMAS) == list(FEATURE_CHECK_DESCRIPTIONS)

_FEATURE_VALUES: dict[str, tuple[str, ...]] = {
    "schema": (),
    "unique_bars": ("close",),
    "rsi_range": ("rsi_14",),
    "bollinger_order": ("bb_lower_20_2", "bb_middle_20_2", "bb_upper_20_2"),
    "atr_non_negative": ("atr_14",),
}


def validate_resampled(frame: pl.DataFrame) -> list[CheckOutcome]:
    """The four silver rules on the silver columns, then ``bar_coverage``; one outcome per check."""
    silver_part = frame.drop([c for c in RESAMPLED_SCHEMA if c not in SILVER_KLINES_SCHEMA], strict=False)
    outcomes = validate_silver_klines(_known_values_view(silver_part))
    for outcome in outcomes:
        outcome.description = RESAMPLED_CHECK_DESCRIPTIONS[outcome.name]
    outcomes.extend(
        _run(frame, _RESAMPLED_SCHEMAS, RESAMPLED_CHECK_DESCRIPTIONS, {"bar_coverage": ("minutes", "is_complete")})
    )
    return outcomes


def _known_values_view(bars: pl.DataFrame) -> pl.DataFrame:
    """The gap-fill's validation view (kline_gapfill.validation_view) applied to resampled bars.

    A bar with a minute from an OHLCV-only REST source has its volume details null (unknown; see
    resample.py); its source is 'rest' or, next to archive minutes, 'mixed'. Both get the same
    treatment as such a minute in silver/klines_filled; a null in an all-archive bar still fails.
    """
    if "source" not in bars.columns:
        return bars
    as_rest = pl.when(pl.col("source") == MIXED_SOURCE).then(pl.lit(SOURCE_REST)).otherwise(pl.col("source"))
    return validation_view(bars.with_columns(source=as_rest)).with_columns(bars["source"])


def validate_features(frame: pl.DataFrame) -> list[CheckOutcome]:
    """The gold/features checks, one outcome per check, in FEATURE_CHECK_DESCRIPTIONS order."""
    return _run(frame, _FEATURE_SCHEMAS, FEATURE_CHECK_DESCRIPTIONS, _FEATURE_VALUES)


def _run(
    frame: pl.DataFrame,
    schemas: dict[str, pa.DataFrameSchema],
    descriptions: dict[str, str],
    values: dict[str, tuple[str, ...]],
) -> list[CheckOutcome]:
    return run_checks(
        frame, schemas, descriptions, lambda name, cases, indexed: _failures(cases, indexed, values.get(name, ())), _by_day
    )


def _failures(cases: pl.DataFrame | None, indexed: pl.DataFrame, value_columns: tuple[str, ...]) -> pl.DataFrame:
    keep = [c for c in ("market", "symbol", "interval", "open_time", *value_columns) if c in indexed.columns]
    schema = {_ROW: pl.Int64(), "rule": pl.String(), **{c: indexed.schema[c] for c in keep}}
    if cases is None or cases.is_empty():
        return pl.DataFrame(schema=schema)
    rules = cases.select(
        pl.col("index").cast(pl.Int64).alias(_ROW),
        pl.when(pl.col("check") == "multiple_fields_uniqueness")
        .then(pl.lit("duplicate key"))
        .when(pl.col("check").is_in(_STRUCTURAL) | pl.col("check").str.starts_with("dtype("))
        .then(
            pl.concat_str(
                pl.col("column"),
                pl.lit(": "),
                pl.col("check"),
                pl.lit(" "),
                pl.col("failure_case").cast(pl.String),
                ignore_nulls=True,
            )
        )
        .otherwise(pl.col("check"))
        .alias("rule"),
    ).unique(maintain_order=True)
    return (
        rules.join(indexed.select(_ROW, *keep), on=_ROW, how="left")
        .select(list(schema))
        .sort(_ROW, "rule", nulls_last=False)
    )


def _by_day(failures: pl.DataFrame) -> pl.DataFrame:
    if "open_time" not in failures.columns or not isinstance(failures.schema["open_time"], pl.Datetime):
        return pl.DataFrame(
            schema={"market": pl.String(), "symbol": pl.String(), "date": pl.Date(), "failing_rows": pl.Int64()}
        )
    return (
        failures.filter(pl.col(_ROW).is_not_null())
        .with_columns(date=pl.col("open_time").dt.date())
        .group_by("market", "symbol", "date")
        .agg(failing_rows=pl.col(_ROW).n_unique().cast(pl.Int64))
        .sort("market", "symbol", "date")
    )
