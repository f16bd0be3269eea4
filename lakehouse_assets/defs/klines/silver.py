"""silver/klines: typed 1m klines parsed from bronze, guarded by blocking Pandera checks."""


from collections.abc import Iterator

import dagster as dg
import polars as pl

from lakehouse_assets.defs.common.checks import check_result, raise_if_blocked
from lakehouse_assets.klines.completeness import completeness_report
from lakehouse_assets.lake.io_manager import SCOPE_KEY
from lakehouse_assets.klines.build import SilverBuildError, build_klines
from lakehouse_assets.defs.common.partitions import daily_partitions, range_backfill_policy, window_days
from lakehouse_assets.quality import CHECK_DESCRIPTIONS, validate_silver_klines
from lakehouse_assets.defs.common.resources import BinanceArchiveResource, LakeResource, UniverseResource
from lakehouse_assets.defs.common.retries import is_transient, retry_requested
from lakehouse_assets.defs.common.selection import InstrumentSelection, select_instruments
from lakehouse_assets.defs.common.metadata import markdown_table

SILVER_KLINES = dg.AssetKey(["silver", "klines"])
BLOCKING_CHECKS = list(CHECK_DESCRIPTIONS)
COMPLETENESS_CHECK = "completeness"


def _overall(report: pl.DataFrame) -> float:
    """Share of expected bars present on the grid (duplicates or off-grid rows cannot hide a gap)."""
    expected = int(report["expected"].sum())
    return round(1 - int(report["missing_minutes"].sum()) / expected, 6) if expected else 1.0


@dg.asset(
    key=SILVER_KLINES,
    group_name="silver",
    ins={"manifest": dg.AssetIn(key=["bronze", "klines_archive"])},
    partitions_def=daily_partitions,
    backfill_policy=range_backfill_policy,
    metadata={"partition_expr": "open_time"},
    kinds={"polars", "parquet"},
    check_specs=[
        *(dg.AssetCheckSpec(name, asset=SILVER_KLINES, blocking=True, description=desc)
          for name, desc in CHECK_DESCRIPTIONS.items()),
        dg.AssetCheckSpec(
            COMPLETENESS_CHECK,
            asset=SILVER_KLINES,
            description="WARN when an instrument-day has fewer than 1440 minutes; lists the missing-minute ranges.",
        ),
    ],
    description=(
        "Typed 1m klines, one row per (market, symbol, interval, open_time), sorted and unique. Times are UTC "
        "datetimes (ms), prices and volumes float64, trade_count int64; Binance's `ignore` column is dropped. "
        "Handles header/no-header files, ms and µs timestamps, and COIN-M volumes (volume = base asset, "
        "quote_volume = USD notional, contract counts kept in contract_volume). Blocking Pandera checks "
        "(schema, ohlc_consistency, volumes, time_grid) run before anything is written: a failing day is "
        "never persisted."
    ),
)
def klines(
    context: dg.AssetExecutionContext,
    config: InstrumentSelection,
    manifest: pl.DataFrame,
    lake: LakeResource,
    universe: UniverseResource,
    archive: BinanceArchiveResource,
) -> Iterator[dg.Output[pl.DataFrame] | dg.AssetCheckResult]:
    instruments, scope = select_instruments(context, config, universe.instruments())
    days = window_days(context)
    try:
        frame, file_stats = build_klines(manifest, lake.store(), instruments, zip_limits=archive.zip_limits())
    except SilverBuildError as exc:
        if all(is_transient(e) for e in exc.errors):  # the lake was unreachable (S3 outage): retry the step
            raise retry_requested(context.retry_number) from exc
        raise dg.Failure(description=str(exc), allow_retries=False) from exc

    outcomes = validate_silver_klines(frame)
    for outcome in outcomes:
        yield check_result(outcome)

    report = completeness_report(frame, days=days, instruments=instruments, interval="1m")
    incomplete = report.filter(pl.col("missing_minutes") > 0)
    yield dg.AssetCheckResult(
        check_name=COMPLETENESS_CHECK,
        passed=incomplete.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{incomplete.height} of {report.height} instrument-days incomplete",
        metadata={
            "incomplete_days": dg.MetadataValue.md(
                markdown_table(incomplete.select("date", "market", "symbol", "rows", "expected", "missing_ranges"))
            ),
            "completeness": _overall(report),
        },
    )

    raise_if_blocked("silver/klines", outcomes)

    per_symbol = (
        report.group_by("market", "symbol")
        .agg(
            days=pl.len(),
            rows=pl.col("rows").sum(),
            expected=pl.col("expected").sum(),
            missing_minutes=pl.col("missing_minutes").sum(),
            complete_days=(pl.col("missing_minutes") == 0).sum(),
        )
        .with_columns(completeness=(1 - pl.col("missing_minutes") / pl.col("expected")).round(4))
        .sort("market", "symbol")
    )
    yield dg.Output(
        frame,
        metadata={
            SCOPE_KEY: scope,
            "instruments": len(instruments),
            "days": len(days),
            "files_parsed": len(file_stats),
            "duplicates_dropped": sum(s.duplicates_dropped for s in file_stats),
            "completeness": _overall(report),
            "completeness_by_symbol": dg.MetadataValue.md(markdown_table(per_symbol)),
            "completeness_by_day": dg.MetadataValue.md(
                markdown_table(report.select("date", "market", "symbol", "rows", "expected", "missing_ranges"), limit=100)
            ),
            "first_close": dg.MetadataValue.md(
                markdown_table(
                    frame.group_by("market", "symbol").agg(
                        first_open_time=pl.col("open_time").first(),
                        first_close=pl.col("close").first(),
                        last_close=pl.col("close").last(),
                    ).sort("market", "symbol")
                )
            ),
        },
    )
