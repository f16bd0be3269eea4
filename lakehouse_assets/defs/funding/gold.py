"""gold/funding_features: the funding state at every gold/features bar of the futures, without look-ahead.

The LOOKBACK_DAYS of silver/funding_rates read before the run's days are an input option (``LOOKBACK_KEY``, read
by the IO manager) and part of the automation condition, not a partition mapping: in the asset graph a day depends
on that day of silver only, so a backfill over [a, b] targets exactly [a, b] (``defs/common/lookback.py`` says why).
"""

from collections.abc import Iterator
from datetime import date, timedelta

import dagster as dg
import polars as pl

from lakehouse_assets.defs.common.keys import GOLD_FEATURES, GOLD_FUNDING, SILVER_FUNDING
from lakehouse_assets.defs.common.lookback import with_lookback
from lakehouse_assets.defs.common.metadata import md_table
from lakehouse_assets.defs.common.partitions import daily_partitions, range_backfill_policy, window_days
from lakehouse_assets.defs.common.selection import InstrumentSelection, select_instruments
from lakehouse_assets.defs.funding.bronze import GROUP
from lakehouse_assets.defs.operations import follow_upstream
from lakehouse_assets.defs.resources import UniverseResource
from lakehouse_assets.funding import reports
from lakehouse_assets.funding.features import BAR_COLUMNS, LOOKBACK_DAYS, features_at_bars
from lakehouse_assets.funding.quality import FEATURE_CHECKS, lookahead_violations
from lakehouse_assets.instruments import Instrument, futures_only, instrument_frame
from lakehouse_assets.lake.io_manager import LOOKBACK_KEY, MISSING_KEY, MISSING_SKIP, SCOPE_KEY, StoredDays

# gold/funding_features' lookback inputs and the days each reads before the run's own days (input and automation).
FUNDING_LOOKBACKS = {SILVER_FUNDING: LOOKBACK_DAYS}


@dg.asset(
    key=GOLD_FUNDING,
    group_name=GROUP,
    ins={
        "bars": dg.AssetIn(key=GOLD_FEATURES, metadata={"columns": BAR_COLUMNS}),
        # the run's days (the graph's default mapping) and LOOKBACK_DAYS before them (LOOKBACK_KEY, read by the
        # IO manager); absent days are skipped and listed (StoredDays)
        "silver": dg.AssetIn(
            key=SILVER_FUNDING,
            metadata={MISSING_KEY: MISSING_SKIP, LOOKBACK_KEY: FUNDING_LOOKBACKS[SILVER_FUNDING]},
        ),
    },
    # lakehouse_automation's follow_upstream(), with the lookback days as dependencies: a day is re-run when a
    # silver day of its window is updated, and not started while one is missing or in progress (as with a mapping).
    automation_condition=with_lookback(follow_upstream(), FUNDING_LOOKBACKS),
    partitions_def=daily_partitions,
    backfill_policy=range_backfill_policy,
    metadata={"partition_expr": "open_time"},
    kinds={"polars", "parquet"},
    check_specs=[
        dg.AssetCheckSpec("funding_no_lookahead", asset=GOLD_FUNDING, blocking=True, description=FEATURE_CHECKS["funding_no_lookahead"]),
        dg.AssetCheckSpec("funding_coverage", asset=GOLD_FUNDING, description=FEATURE_CHECKS["funding_coverage"]),
    ],
)
def funding_features(
    context: dg.AssetExecutionContext,
    config: InstrumentSelection,
    bars: pl.LazyFrame,
    silver: StoredDays,
    universe: UniverseResource,
) -> Iterator[dg.Output[pl.DataFrame] | dg.AssetCheckResult]:
    """Funding state at every gold/features bar of the USD-M/COIN-M instruments, by an as-of join that cannot look
    ahead: a settlement is visible from max(funding_time, calc_time), a bar sees what is visible at its
    close_time. Columns: the bar key (market, symbol, interval, open_time, close_time), funding_rate (last
    visible), funding_interval_hours, last_funding_time, funding_rate_annualized = funding_rate x 24 /
    funding_interval_hours x 365, funding_rate_mean_7d (mean of the settlements in the 7 days up to the last
    one) with funding_events_7d, funding_rate_annualized_7d (their sum x 365/7), next_funding_time. Reads
    8 days of silver/funding_rates before each day. Join with gold/features on
    (market, symbol, interval, open_time) for prices and indicators."""
    instruments, scope = select_instruments(context, config, universe.instruments())
    futures = futures_only(instruments)
    days = window_days(context)
    funding, read_days, look_absent = _funding_read(silver, days, futures)
    wanted = instrument_frame(futures).lazy()
    bar_frame = bars.select(BAR_COLUMNS).join(wanted, on=["market", "symbol"], how="semi").collect()
    out = features_at_bars(bar_frame, funding.drop("date", strict=False))

    bad = lookahead_violations(out)
    yield _lookahead_result(bad)
    yield _coverage_result(out, look_absent)
    if not bad.is_empty():
        raise dg.Failure(
            description=f"gold/funding_features not written: {bad.height} bar(s) would see funding from after their close",
            allow_retries=False,
        )
    yield dg.Output(
        out,
        metadata={
            SCOPE_KEY: scope,
            "bars": out.height,
            "bars_with_funding": int(out["funding_rate"].is_not_null().sum()),
            "settlements_read": funding.height,
            "days_read": f"{read_days[0]}..{read_days[-1]}" if read_days else "none",
            "latest": md_table(reports.latest_funding(out)),
        },
    )


def _funding_read(
    silver: StoredDays, days: list[date], futures: list[Instrument]
) -> tuple[pl.DataFrame, list[str], list[str]]:
    """silver/funding_rates of the run's days and the LOOKBACK_DAYS before them: (rows of ``futures``, days read,
    lookback days absent). A day of the run itself that silver never materialized fails the step, naming the days."""
    stored = set(silver.present)
    own_present = [d.isoformat() for d in days if d.isoformat() in stored]
    own_absent = [d.isoformat() for d in days if d.isoformat() not in stored]
    if own_absent and futures:
        shown = ", ".join(own_absent[:10]) + (" …" if len(own_absent) > 10 else "")
        raise dg.Failure(
            description=f"silver/funding_rates is not materialized for {len(own_absent)} day(s) of this run: {shown}; "
            "run funding_job for them first",
            allow_retries=False,
        )
    lookback = [days[0] - timedelta(days=k) for k in range(LOOKBACK_DAYS, 0, -1)]
    look_present = [d.isoformat() for d in lookback if d.isoformat() in stored]
    look_absent = [d.isoformat() for d in lookback if d.isoformat() not in stored]
    read_days = look_present + own_present
    funding = (
        silver.frame.join(instrument_frame(futures).lazy(), on=["market", "symbol"], how="semi").collect()
        if read_days and futures and silver.frame is not None
        else pl.DataFrame()
    )
    return funding, read_days, look_absent


def _lookahead_result(bad: pl.DataFrame) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=GOLD_FUNDING,
        check_name="funding_no_lookahead",
        passed=bad.is_empty(),
        description=FEATURE_CHECKS["funding_no_lookahead"],
        metadata={"failing_rows": bad.height, "sample_failures": md_table(bad, limit=20)},
    )


def _coverage_result(out: pl.DataFrame, look_absent: list[str]) -> dg.AssetCheckResult:
    uncovered = reports.bars_without_funding(out)
    return dg.AssetCheckResult(
        asset_key=GOLD_FUNDING,
        check_name="funding_coverage",
        passed=uncovered.is_empty() and not look_absent,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{int(uncovered['bars_without_funding'].sum() or 0)} bar(s) without a visible settlement; "
        f"{len(look_absent)} of {LOOKBACK_DAYS} lookback day(s) not materialized",
        metadata={
            "bars_without_funding": md_table(uncovered),
            "lookback_days_missing": ", ".join(look_absent) or "none",
        },
    )
