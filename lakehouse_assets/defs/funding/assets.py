"""Funding rates of perpetual futures: bronze/funding_archive -> silver/funding_rates -> gold/funding_features.

All three are daily-partitioned like the kline layers and range-aware (a backfill run covers up to
LAKEHOUSE_DAYS_PER_RUN days; a month's archive is then downloaded once for the whole month). They
live in their own group ``funding`` so ``klines_job`` and the gold jobs are unchanged for users
without futures, and a funding outage never blocks the kline tables.

* ``funding_job`` runs bronze + silver for a day or a range.
* ``funding_archive_sensor`` (RUNNING) watches the monthly fundingRate files of the configured
  futures over the last LAKEHOUSE_FUNDING_SENSOR_DAYS days; when a month lands (or is re-published)
  it requests those days again, so the REST rows they held are replaced by the archive's.
* ``funding_daily`` (RUNNING, 00:20 UTC) requests the day that just ended (REST until its month is
  published). Silver and gold follow through the declarative automation (``defs/automation.py``).
"""

from collections.abc import Iterator
from datetime import date, timedelta

import dagster as dg
import polars as pl
from pydantic import Field

from lakehouse_assets import settings
from lakehouse_assets.archive.download import ArchiveIngestError
from lakehouse_assets.funding.features import FUNDING_FEATURE_COLUMNS, LOOKBACK_DAYS, add_funding_features
from lakehouse_assets.funding.build import build_funding
from lakehouse_assets.funding.ingest import funding_month_path, futures_only, ingest_funding
from lakehouse_assets.funding.quality import BLOCKING_CHECKS, WARN_CHECKS, validate_fundings_per_day, validate_silver_funding
from lakehouse_assets.funding.rest import rest_access_from_client
from lakehouse_assets.funding.schema import month_of
from lakehouse_assets.funding.transforms import slot_report
from lakehouse_assets.lake.io_manager import SCOPE_KEY, partition_dir, scan_partitions, table_prefix
from lakehouse_assets.klines.build import SilverBuildError
from lakehouse_assets.defs.common.partitions import daily_partitions, range_backfill_policy, window_days
from lakehouse_assets.defs.common.retries import is_transient, network_retry_policy
from lakehouse_assets.redact import redact_url
from lakehouse_assets.defs.common.checks import check_result, raise_if_blocked
from lakehouse_assets.defs.common.resources import (
    BinanceArchiveResource,
    BinanceRestResource,
    FundingResource,
    LakeResource,
    UniverseResource,
)
from lakehouse_assets.defs.common.selection import InstrumentSelection, select_instruments
from lakehouse_assets.defs.common.metadata import markdown_table

GROUP = "funding"
BRONZE_FUNDING = dg.AssetKey(["bronze", "funding_archive"])
SILVER_FUNDING = dg.AssetKey(["silver", "funding_rates"])
GOLD_FUNDING = dg.AssetKey(["gold", "funding_features"])
# The bars the features are computed for: gold/features' keys (its intervals, LAKEHOUSE_FEATURE_INTERVALS).
GOLD_FEATURES = dg.AssetKey(["gold", "features"])
BAR_COLUMNS = ["market", "symbol", "interval", "open_time", "close_time"]


# ---------------------------------------------------------------------------------------------
# bronze/funding_archive


class FundingBronzeConfig(InstrumentSelection):
    accept_checksum_mismatch: bool = Field(
        default=False,
        description="Store a monthly file whose sha256 still differs from Binance's CHECKSUM after a second download "
        "(recorded as checksum_status='mismatch_accepted').",
    )
    rest: bool = Field(
        default=True,
        description="Fetch days whose month has no archive yet over REST (also needs LAKEHOUSE_REST_FILL on); "
        "false records them as source='none'.",
    )


@dg.asset(
    key=BRONZE_FUNDING,
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=range_backfill_policy,
    metadata={"partition_expr": "date"},
    pool="binance_api",
    kinds={"binance", "parquet"},
    retry_policy=network_retry_policy(),
    description=(
        "Raw funding-rate sources of every USD-M (um) and COIN-M (cm) instrument in the universe, one row per "
        "instrument-day saying where the day's funding comes from. Binance publishes funding only as MONTHLY archives "
        "(data/futures/<um|cm>/monthly/fundingRate/<SYMBOL>/<SYMBOL>-fundingRate-YYYY-MM.zip): a month is downloaded "
        "once, verified against its CHECKSUM, stored byte for byte under bronze/binance/<archive path> and reused for "
        "every day of the month (source='archive'). Days whose month is still running or not published yet come from "
        "ccxt fetch_funding_rate_history (binanceusdm / binancecoinm) and are stored as raw JSON under "
        "bronze/rest/<exchange>/fundingRate/ (source='rest'); re-materializing them once the month is published "
        "replaces them with the archive. Spot instruments have no funding and are skipped."
    ),
)
def funding_archive(
    context: dg.AssetExecutionContext,
    config: FundingBronzeConfig,
    archive: BinanceArchiveResource,
    lake: LakeResource,
    universe: UniverseResource,
    binance_rest: BinanceRestResource,
) -> dg.Output[pl.DataFrame]:
    instruments, scope = select_instruments(context, config, universe.instruments())
    futures = futures_only(instruments)
    days = window_days(context)
    rest_on = binance_rest.enabled and config.rest
    rest = rest_access_from_client(binance_rest.client()) if rest_on and futures else None
    context.log.info(
        f"funding for {len(futures)} futures instrument(s) x {len(days)} day(s) "
        f"({len(instruments) - len(futures)} spot instrument(s) skipped); archive {redact_url(archive.base_url)}, REST {'on' if rest_on else 'off'}"
    )
    try:
        with archive.client() as client:
            manifest, stats = ingest_funding(
                client, lake.store(), futures, days, rest=rest,
                accept_checksum_mismatch=config.accept_checksum_mismatch, max_workers=archive.max_workers,
            )  # fmt: skip
    except ArchiveIngestError as exc:
        # Only failures that may pass are retried (retries.is_transient: FundingRestError.transient, HTTP
        # 408/429/5xx or no answer, S3 outages); a 403, a checksum or format problem fails at once.
        transient = all(is_transient(e) for _, e in exc.failures)
        raise dg.Failure(
            description=str(exc),
            metadata={"failed": dg.MetadataValue.md("\n".join(f"- {n}: {e}" for n, e in exc.failures))},
            allow_retries=transient,
        ) from exc

    per_source = (
        manifest.group_by("market", "symbol", "source", "month")
        .agg(days=pl.len(), first=pl.col("date").min(), last=pl.col("date").max(), checksum=pl.col("checksum_status").first(),
             note=pl.col("note").first())
        .sort("market", "symbol", "month", "source")
    )  # fmt: skip
    counts = dict(manifest.group_by("source").len().iter_rows())
    return dg.Output(
        manifest,
        metadata={
            SCOPE_KEY: scope,
            "instrument_days": manifest.height,
            "days_from_archive": counts.get("archive", 0),
            "days_from_rest": counts.get("rest", 0),
            "days_without_source": counts.get("none", 0),
            "months_from_archive": stats.months_from_archive,
            "months_downloaded": stats.months_downloaded,
            "months_reused_from_lake": stats.months_reused,
            "months_not_published": stats.months_missing,
            "rest_settlements_fetched": stats.rest_rows,
            "spot_instruments_skipped": len(instruments) - len(futures),
            "sources": dg.MetadataValue.md(markdown_table(per_source)),
        },
    )


# ---------------------------------------------------------------------------------------------
# silver/funding_rates


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
    description=(
        "One row per funding settlement of each USD-M/COIN-M instrument: market, symbol, funding_time (the settlement "
        "slot: Binance's calc_time, which runs a few ms late, snapped to the hour), funding_interval_hours (read from the "
        "data: the archive states it per row, REST rows get it from the spacing of settlements; never assumed 8h), "
        "funding_rate (per interval, fraction), mark_price (REST only, else null), source ('archive'|'rest') and the raw "
        "calc_time. Blocking checks (schema, one settlement per slot, slots on the declared interval grid) run before "
        "anything is written; WARN checks flag rates outside the exchange cap and days missing settlements (listed)."
    ),
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
    instruments, scope = select_instruments(context, config, universe.instruments())
    futures = futures_only(instruments)
    days = window_days(context)
    try:
        caps = funding.caps()
    except ValueError as exc:
        raise dg.Failure(description=f"LAKEHOUSE_FUNDING_RATE_CAPS: {exc}", allow_retries=False) from exc
    try:
        frame, stats = build_funding(manifest, lake.store(), futures, zip_limits=archive.zip_limits())
    except SilverBuildError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc

    outcomes = validate_silver_funding(frame, caps)
    for outcome in outcomes:
        severity = dg.AssetCheckSeverity.ERROR if outcome.name in BLOCKING_CHECKS else dg.AssetCheckSeverity.WARN
        yield check_result(outcome, asset_key=SILVER_FUNDING, severity=severity)
    report = slot_report(frame, days, futures)
    count = validate_fundings_per_day(report)
    incomplete = report.filter(pl.col("missing").is_null() | (pl.col("missing") > 0))
    yield dg.AssetCheckResult(
        asset_key=SILVER_FUNDING,
        check_name=count.name,
        passed=count.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{incomplete.height} of {report.height} instrument-days miss settlements",
        metadata={
            "incomplete_days": dg.MetadataValue.md(markdown_table(incomplete, limit=60)),
            "missing_slots": int(incomplete["missing"].fill_null(0).sum()),
        },
    )
    raise_if_blocked("silver/funding_rates", [o for o in outcomes if o.name in BLOCKING_CHECKS])

    per_symbol = (
        frame.group_by("market", "symbol")
        .agg(
            settlements=pl.len(),
            intervals_h=pl.col("funding_interval_hours").unique().sort().cast(pl.String).str.join(","),
            from_archive=(pl.col("source") == "archive").sum(),
            from_rest=(pl.col("source") == "rest").sum(),
            mean_rate=pl.col("funding_rate").mean(),
            min_rate=pl.col("funding_rate").min(),
            max_rate=pl.col("funding_rate").max(),
            mean_annualized=(pl.col("funding_rate") * 24 / pl.col("funding_interval_hours") * 365).mean().round(6),
            snapped=(pl.col("calc_time") != pl.col("funding_time")).sum(),
            max_calc_lateness_ms=(pl.col("calc_time") - pl.col("funding_time")).dt.total_milliseconds().max(),
        )
        .sort("market", "symbol")
    )
    yield dg.Output(
        frame,
        metadata={
            SCOPE_KEY: scope,
            "settlements": frame.height,
            "instruments": len(futures),
            "days": len(days),
            "files_parsed": len(stats),
            "snapped_to_slot": int((frame["calc_time"] != frame["funding_time"]).sum()),
            "by_symbol": dg.MetadataValue.md(markdown_table(per_symbol)),
            "by_day": dg.MetadataValue.md(markdown_table(report, limit=62)),
            "files": dg.MetadataValue.md(markdown_table(pl.DataFrame([s.__dict__ for s in stats]) if stats else pl.DataFrame())),
            **_charts(frame, days, futures, funding.chart_max_symbols),
        },
    )


def _charts(frame: pl.DataFrame, days: list[date], futures: list, limit: int) -> dict[str, dg.MetadataValue]:
    """One funding bar chart per instrument (up to ``limit``), shown on the asset page."""
    from datetime import UTC, datetime

    from lakehouse_assets.funding.chart import funding_svg, svg_markdown
    from lakehouse_assets.funding.transforms import missing_slot_times

    if not days:
        return {}
    start = datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC)
    end = datetime(days[-1].year, days[-1].month, days[-1].day, tzinfo=UTC) + timedelta(days=1)
    out: dict[str, dg.MetadataValue] = {}
    for inst in futures[:limit]:
        rows = frame.filter((pl.col("market") == inst.market) & (pl.col("symbol") == inst.symbol))
        title = f"{inst.key} funding rate per settlement"
        svg = funding_svg(rows, title=title, start=start, end=end, missing_ms=missing_slot_times(frame, days, inst))
        out[f"chart {inst.key}"] = dg.MetadataValue.md(svg_markdown(svg, title))
    return out


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


def _existing_days(lake: LakeResource, table: str, days: list[date]) -> tuple[list[str], list[str]]:
    store = lake.store()
    present, absent = [], []
    for day in days:
        keys = [k for k in store.list_keys(partition_dir(table, day.isoformat())) if k.endswith(".parquet")]
        (present if keys else absent).append(day.isoformat())
    return present, absent


def _lookahead_violations(frame: pl.DataFrame) -> pl.DataFrame:
    has = pl.col("funding_rate").is_not_null()
    expected = pl.col("funding_rate") * 24.0 / pl.col("funding_interval_hours") * 365.0
    bad = has & (
        (pl.col("last_funding_time") > pl.col("close_time"))
        | (pl.col("next_funding_time") <= pl.col("close_time"))
        | ((pl.col("funding_rate_annualized") - expected).abs() > 1e-12 * (1 + expected.abs()))
    )
    return frame.filter(bad).with_columns(date=pl.col("open_time").dt.date())


@dg.asset(
    key=GOLD_FUNDING,
    group_name=GROUP,
    ins={"bars": dg.AssetIn(key=GOLD_FEATURES, metadata={"columns": BAR_COLUMNS})},
    deps=[
        dg.AssetDep(
            SILVER_FUNDING,
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-LOOKBACK_DAYS, allow_nonexistent_upstream_partitions=True
            ),
        )
    ],
    partitions_def=daily_partitions,
    backfill_policy=range_backfill_policy,
    metadata={"partition_expr": "open_time"},
    kinds={"polars", "parquet"},
    check_specs=[
        dg.AssetCheckSpec("funding_no_lookahead", asset=GOLD_FUNDING, blocking=True, description=FEATURE_CHECKS["funding_no_lookahead"]),
        dg.AssetCheckSpec("funding_coverage", asset=GOLD_FUNDING, description=FEATURE_CHECKS["funding_coverage"]),
    ],
    description=(
        "Funding state at every gold/features bar of the USD-M/COIN-M instruments, by an as-of join that cannot look "
        "ahead: a settlement is visible from max(funding_time, calc_time), a bar sees what is visible at its "
        "close_time. Columns: the bar key (market, symbol, interval, open_time, close_time), funding_rate (last "
        "visible), funding_interval_hours, last_funding_time, funding_rate_annualized = funding_rate x 24 / "
        "funding_interval_hours x 365, funding_rate_mean_7d (mean of the settlements in the 7 days up to the last "
        f"one) with funding_events_7d, funding_rate_annualized_7d (their sum x 365/7), next_funding_time. Reads "
        f"{LOOKBACK_DAYS} days of silver/funding_rates before each day. Join with gold/features on "
        "(market, symbol, interval, open_time) for prices and indicators."
    ),
)
def funding_features(
    context: dg.AssetExecutionContext,
    config: InstrumentSelection,
    bars: pl.LazyFrame,
    lake: LakeResource,
    universe: UniverseResource,
) -> Iterator[dg.Output[pl.DataFrame] | dg.AssetCheckResult]:
    instruments, scope = select_instruments(context, config, universe.instruments())
    futures = futures_only(instruments)
    days = window_days(context)
    table = table_prefix(SILVER_FUNDING)
    wanted = pl.DataFrame(
        {"market": [i.market for i in futures], "symbol": [i.symbol for i in futures]},
        schema={"market": pl.String, "symbol": pl.String},
    )
    own_present, own_absent = _existing_days(lake, table, days)
    if own_absent and futures:
        shown = ", ".join(own_absent[:10]) + (" …" if len(own_absent) > 10 else "")
        raise dg.Failure(
            description=f"silver/funding_rates is not materialized for {len(own_absent)} day(s) of this run: {shown}; "
            "run funding_job for them first",
            allow_retries=False,
        )
    lookback = [days[0] - timedelta(days=k) for k in range(LOOKBACK_DAYS, 0, -1)]
    look_present, look_absent = _existing_days(lake, table, lookback)
    read_days = look_present + own_present
    funding = (
        scan_partitions(lake.store(), table, read_days).join(wanted.lazy(), on=["market", "symbol"], how="semi").collect()
        if read_days and futures
        else pl.DataFrame()
    )
    bar_frame = bars.select(BAR_COLUMNS).join(wanted.lazy(), on=["market", "symbol"], how="semi").collect()
    if funding.is_empty():
        out = bar_frame.with_columns(pl.lit(None, t).alias(c) for c, t in FUNDING_FEATURE_COLUMNS.items())
    else:
        out = add_funding_features(bar_frame, funding.drop("date"))
    out = out.sort("market", "symbol", "interval", "open_time")

    bad = _lookahead_violations(out)
    yield dg.AssetCheckResult(
        asset_key=GOLD_FUNDING,
        check_name="funding_no_lookahead",
        passed=bad.is_empty(),
        description=FEATURE_CHECKS["funding_no_lookahead"],
        metadata={"failing_rows": bad.height, "sample_failures": dg.MetadataValue.md(markdown_table(bad, limit=20))},
    )
    uncovered = (
        out.filter(pl.col("funding_rate").is_null())
        .group_by("market", "symbol", "interval", pl.col("open_time").dt.date().alias("date"))
        .agg(bars_without_funding=pl.len(), first=pl.col("open_time").min(), last=pl.col("open_time").max())
        .sort("market", "symbol", "interval", "date")
    )
    yield dg.AssetCheckResult(
        asset_key=GOLD_FUNDING,
        check_name="funding_coverage",
        passed=uncovered.is_empty() and not look_absent,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{int(uncovered['bars_without_funding'].sum() or 0)} bar(s) without a visible settlement; "
        f"{len(look_absent)} of {LOOKBACK_DAYS} lookback day(s) not materialized",
        metadata={
            "bars_without_funding": dg.MetadataValue.md(markdown_table(uncovered)),
            "lookback_days_missing": ", ".join(look_absent) or "none",
        },
    )
    if not bad.is_empty():
        raise dg.Failure(
            description=f"gold/funding_features not written: {bad.height} bar(s) would see funding from after their close",
            allow_retries=False,
        )
    latest = (
        out.filter(pl.col("funding_rate").is_not_null())
        .group_by("market", "symbol", "interval")
        .agg(pl.all().sort_by("open_time").last())
        .select("market", "symbol", "interval", "open_time", "funding_rate", "funding_interval_hours",
                "funding_rate_annualized", "funding_rate_mean_7d", "funding_events_7d", "next_funding_time")
        .sort("market", "symbol", "interval")
    )  # fmt: skip
    yield dg.Output(
        out,
        metadata={
            SCOPE_KEY: scope,
            "bars": out.height,
            "bars_with_funding": int(out["funding_rate"].is_not_null().sum()),
            "settlements_read": funding.height,
            "days_read": f"{read_days[0]}..{read_days[-1]}" if read_days else "none",
            "latest": dg.MetadataValue.md(markdown_table(latest)),
        },
    )


# ---------------------------------------------------------------------------------------------
# jobs, sensor, schedule

funding_job = dg.define_asset_job(
    "funding_job",
    selection=dg.AssetSelection.assets(BRONZE_FUNDING, SILVER_FUNDING),
    description="Funding history for a day or a range: the monthly archives (REST for days not archived yet) "
    "into silver/funding_rates. gold/funding_features follows gold/features through automation.",
)

FUNDING_SENSOR_DAYS: int = settings.get("LAKEHOUSE_FUNDING_SENSOR_DAYS")
FUNDING_DAILY_CRON: str = settings.get("LAKEHOUSE_FUNDING_DAILY_CRON")


def _funding_sensor() -> dg.SensorDefinition:
    # The archive sensor of the automation module, fed with the monthly funding file of each day's month:
    # days sharing a month share one probe, and a new or re-published month re-requests all its watched days.
    from lakehouse_assets.archive.watch import ArchiveFeed
    from lakehouse_assets.defs.automation import build_archive_sensor

    feed = ArchiveFeed(
        name="funding_monthly",
        path_for=lambda inst, day: funding_month_path(inst, month_of(day)),
        lookback_days=FUNDING_SENSOR_DAYS,
    )
    return build_archive_sensor(
        feed, BRONZE_FUNDING, name="funding_archive_sensor", instruments=lambda u: futures_only(u.instruments())
    )


funding_archive_sensor = _funding_sensor()


@dg.schedule(
    name="funding_daily",
    cron_schedule=FUNDING_DAILY_CRON,
    execution_timezone="UTC",
    target=dg.AssetSelection.assets(BRONZE_FUNDING),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="00:20 UTC: requests the funding of the day that just ended (from REST until its month's archive "
    "lands; funding_archive_sensor then re-requests it). Silver and gold follow through the automation.",
)
def funding_daily(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    from lakehouse_assets.defs import automation

    scheduled = context.scheduled_execution_time or automation.utc_now()
    day = automation.latest_complete_day(scheduled)
    if day < automation.first_day():
        return []
    return [
        dg.RunRequest(
            run_key=f"funding_daily:{day.isoformat()}",
            partition_key=day.isoformat(),
            tags={automation.PRIORITY_TAG: automation.SCHEDULED_PRIORITY, automation.TRIGGER_TAG: "funding_daily"},
        )
    ]

