"""silver/klines: typed 1m klines parsed from bronze, guarded by blocking Pandera checks; and ``klines_job``."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from lakehouse_assets.defs.common.checks import check_result, raise_if_blocked
from lakehouse_assets.defs.common.keys import BRONZE_KLINES, COMPLETENESS_CHECK, SILVER_KLINES
from lakehouse_assets.defs.common.metadata import md_table
from lakehouse_assets.defs.common.partitions import daily_partitions, range_backfill_policy, window_days
from lakehouse_assets.defs.common.retries import is_transient, retry_requested
from lakehouse_assets.defs.common.selection import InstrumentSelection, select_instruments
from lakehouse_assets.defs.resources import BinanceArchiveResource, LakeResource, UniverseResource
from lakehouse_assets.klines import reports
from lakehouse_assets.klines.build import SilverBuildError, build_klines
from lakehouse_assets.klines.completeness import completeness_report
from lakehouse_assets.klines.quality import CHECK_DESCRIPTIONS, validate_silver_klines
from lakehouse_assets.lake.io_manager import SCOPE_KEY


@dg.asset(
    key=SILVER_KLINES,
    group_name="silver",
    ins={"manifest": dg.AssetIn(key=BRONZE_KLINES)},
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
)
def klines(
    context: dg.AssetExecutionContext,
    config: InstrumentSelection,
    manifest: pl.DataFrame,
    lake: LakeResource,
    universe: UniverseResource,
    archive: BinanceArchiveResource,
) -> Iterator[dg.Output[pl.DataFrame] | dg.AssetCheckResult]:
    """Typed 1m klines, one row per (market, symbol, interval, open_time), sorted and unique. Times are UTC
    datetimes (ms), prices and volumes float64, trade_count int64; Binance's `ignore` column is dropped.
    Handles header/no-header files, ms and µs timestamps, and COIN-M volumes (volume = base asset,
    quote_volume = USD notional, contract counts kept in contract_volume). Blocking Pandera checks
    (schema, ohlc_consistency, volumes, time_grid) run before anything is written: a failing day is
    never persisted."""
    instruments, scope = select_instruments(context, config, universe.instruments())
    days = window_days(context)
    try:
        frame, file_stats = build_klines(manifest, lake.store(), instruments, zip_limits=archive.zip_limits())
    except SilverBuildError as exc:
        if all(is_transient(e) for e in exc.errors):  # the lake was unreachable (S3 outage): retry the step
            raise retry_requested(context.retry_number) from exc
        raise dg.Failure(description=str(exc), allow_retries=False) from exc

    outcomes = validate_silver_klines(frame)
    yield from (check_result(outcome) for outcome in outcomes)
    report = completeness_report(frame, days=days, instruments=instruments, interval="1m")
    yield _completeness_result(report)
    raise_if_blocked("silver/klines", outcomes)

    yield dg.Output(
        frame,
        metadata={
            SCOPE_KEY: scope,
            "instruments": len(instruments),
            "days": len(days),
            "files_parsed": len(file_stats),
            "duplicates_dropped": sum(s.duplicates_dropped for s in file_stats),
            "completeness": reports.completeness_share(report),
            "completeness_by_symbol": md_table(reports.silver_completeness_by_symbol(report)),
            "completeness_by_day": md_table(reports.completeness_by_day(report), limit=100),
            "first_close": md_table(reports.first_and_last_close(frame)),
        },
    )


def _completeness_result(report: pl.DataFrame) -> dg.AssetCheckResult:
    incomplete = reports.incomplete_days(report)
    return dg.AssetCheckResult(
        check_name=COMPLETENESS_CHECK,
        passed=incomplete.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{incomplete.height} of {report.height} instrument-days incomplete",
        metadata={
            "incomplete_days": md_table(reports.completeness_by_day(incomplete)),
            "completeness": reports.completeness_share(report),
        },
    )


klines_job = dg.define_asset_job(
    "klines_job",
    selection=dg.AssetSelection.assets(BRONZE_KLINES, SILVER_KLINES),
    description="Download the day's Binance 1m kline archives (bronze) and parse them into silver/klines.",
)
