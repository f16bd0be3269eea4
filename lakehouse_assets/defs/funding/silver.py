"""silver/funding_rates: one row per funding settlement, checked before anything is written; and ``funding_job``."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from lakehouse_assets.defs.common.checks import check_result, raise_if_blocked
from lakehouse_assets.defs.common.executors import in_process_unless_configured
from lakehouse_assets.defs.common.keys import BRONZE_FUNDING, SILVER_FUNDING
from lakehouse_assets.defs.common.metadata import md_each, md_table
from lakehouse_assets.defs.common.partitions import daily_partitions, range_backfill_policy, window_days
from lakehouse_assets.defs.common.selection import InstrumentSelection, select_universe
from lakehouse_assets.defs.funding.bronze import GROUP
from lakehouse_assets.defs.resources import BinanceArchiveResource, FundingResource, LakeResource, UniverseResource
from lakehouse_assets.funding import reports
from lakehouse_assets.funding.build import build_funding
from lakehouse_assets.funding.quality import (
    BLOCKING_CHECKS,
    WARN_CHECKS,
    incomplete_days,
    validate_fundings_per_day,
    validate_silver_funding,
)
from lakehouse_assets.funding.transforms import slot_report
from lakehouse_assets.instruments import futures_only
from lakehouse_assets.klines.build import SilverBuildError
from lakehouse_assets.lake.io_manager import SCOPE_KEY
from lakehouse_assets.quality import CheckOutcome


@dg.asset(
    key=SILVER_FUNDING,
    group_name=GROUP,
    ins={"manifest": dg.AssetIn(key=BRONZE_FUNDING)},
    partitions_def=daily_partitions,
    backfill_policy=range_backfill_policy,
    metadata={"partition_expr": "funding_time"},
    kinds={"polars", "parquet"},
    check_specs=[
        *(dg.AssetCheckSpec(n, asset=SILVER_FUNDING, blocking=True, description=d) for n, d in BLOCKING_CHECKS.items()),
        *(dg.AssetCheckSpec(n, asset=SILVER_FUNDING, description=d) for n, d in WARN_CHECKS.items()),
    ],
)
def funding_rates(
    context: dg.AssetExecutionContext,
    config: InstrumentSelection,
    manifest: pl.DataFrame,
    lake: LakeResource,
    universe: UniverseResource,
    funding: FundingResource,
    archive: BinanceArchiveResource,
) -> Iterator[dg.Output[pl.DataFrame] | dg.AssetCheckResult]:
    """One row per funding settlement of each USD-M/COIN-M instrument: market, symbol, funding_time (the settlement
    slot: Binance's calc_time, which runs a few ms late, snapped to the hour), funding_interval_hours (read from the
    data: the archive states it per row, REST rows get it from the spacing of settlements; never assumed 8h),
    funding_rate (per interval, fraction), mark_price (REST only, else null), source ('archive'|'rest') and the raw
    calc_time. Blocking checks (schema, one settlement per slot, slots on the declared interval grid) run before
    anything is written; WARN checks flag rates outside the exchange cap and days missing settlements (listed)."""
    days = window_days(context)
    run = select_universe(context, config, universe, days)
    instruments, scope = run.instruments, run.scope
    futures = futures_only(instruments)
    try:
        caps = funding.caps()
    except ValueError as exc:
        raise dg.Failure(description=f"LAKEHOUSE_FUNDING_RATE_CAPS: {exc}", allow_retries=False) from exc
    try:
        frame, stats = build_funding(manifest, lake.store(), futures, zip_limits=archive.zip_limits())
    except SilverBuildError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc

    outcomes = validate_silver_funding(frame, caps)
    yield from (check_result(o, asset_key=SILVER_FUNDING, severity=_severity(o)) for o in outcomes)
    # point in time: a day before a listing or after a delisting misses no settlement
    report = slot_report(frame, days, futures).join(run.daily.expected_frame(), on=["date", "market", "symbol"], how="semi")
    yield _count_result(report)
    raise_if_blocked("silver/funding_rates", [o for o in outcomes if o.name in BLOCKING_CHECKS])

    yield dg.Output(
        frame,
        metadata={
            SCOPE_KEY: scope,
            **run.metadata(),
            "settlements": frame.height,
            "instruments": len(futures),
            "days": len(days),
            "files_parsed": len(stats),
            "snapped_to_slot": reports.snapped_to_slot(frame),
            "by_symbol": md_table(reports.settlements_by_symbol(frame)),
            "by_day": md_table(report, limit=62),
            "files": md_table(pl.DataFrame([s.__dict__ for s in stats]) if stats else pl.DataFrame()),
            **md_each(reports.funding_charts(frame, days, futures, funding.chart_max_symbols)),
        },
    )


def _severity(outcome: CheckOutcome) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if outcome.name in BLOCKING_CHECKS else dg.AssetCheckSeverity.WARN


def _count_result(report: pl.DataFrame) -> dg.AssetCheckResult:
    """``funding_count_per_day`` (WARN): the instrument-days missing settlements, listed."""
    count = validate_fundings_per_day(report)
    incomplete = incomplete_days(report)
    return dg.AssetCheckResult(
        asset_key=SILVER_FUNDING,
        check_name=count.name,
        passed=count.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{incomplete.height} of {report.height} instrument-days miss settlements",
        metadata={
            "incomplete_days": md_table(incomplete, limit=60),
            "missing_slots": reports.missing_slots(incomplete),
        },
    )


funding_job = dg.define_asset_job(
    "funding_job",
    selection=dg.AssetSelection.assets(BRONZE_FUNDING, SILVER_FUNDING),
    executor_def=in_process_unless_configured,  # a chain: bronze then silver (defs/common/executors.py)
    description="Funding history for a day or a range: the monthly archives (REST for days not archived yet) "
    "into silver/funding_rates. gold/funding_features follows gold/features through automation.",
)
