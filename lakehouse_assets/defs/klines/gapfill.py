"""silver/klines_filled and silver/kline_gaps: the archive completed from the exchange's REST API.

One computation, two tables (a multi-asset): the REST calls that fill holes also decide which
holes remain and why, so both are written from the same run and can never disagree.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime

import dagster as dg
import polars as pl
from pydantic import Field

from lakehouse_assets.defs.common.checks import check_result, raise_if_blocked
from lakehouse_assets.lake.io_manager import SCOPE_KEY, WRITE_EXACT, WRITE_MODE_KEY, scan_partitions, scan_stored, table_prefix
from lakehouse_assets.klines.gapfill import (
    SOURCE_ARCHIVE,
    SOURCE_REST,
    FillResult,
    closed_until,
    fill_gaps,
    validation_view,
)
from lakehouse_assets.klines.schema import SILVER_KLINES_SCHEMA, empty_klines, interval_to_timedelta
from lakehouse_assets.defs.common.partitions import daily_partitions, daily_partitions_with_today, range_backfill_policy, window_days
from lakehouse_assets.quality import CHECK_DESCRIPTIONS, validate_silver_klines
from lakehouse_assets.defs.common.resources import BinanceRestResource, LakeResource, UniverseResource
from lakehouse_assets.defs.common.selection import InstrumentSelection, select_instruments
from lakehouse_assets.defs.common.metadata import markdown_table

SILVER_KLINES = dg.AssetKey(["silver", "klines"])
KLINES_FILLED = dg.AssetKey(["silver", "klines_filled"])
KLINE_GAPS = dg.AssetKey(["silver", "kline_gaps"])
COMPLETENESS_CHECK = "completeness"
GROUP = "gapfill"  # not "silver": klines_job runs bronze+silver, whose partitions stop at yesterday


class GapFillConfig(InstrumentSelection):
    rest_fill: bool = Field(
        default=True,
        description="False: call no REST API in this run; holes are only reported (reason 'not fetched: ...').",
    )
    interval: str = Field(
        default="1m",
        description="Bar interval to complete. silver/klines holds 1m bars; change only for a lake whose silver "
        "table holds another interval.",
    )
    as_of: str | None = Field(
        default=None,
        description="Treat this ISO-8601 UTC time as 'now' (replays, tests): bars closing after it count as still "
        "forming and are neither expected nor stored. Default: the real clock.",
    )


def _now(config: GapFillConfig) -> datetime:
    if not config.as_of:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(config.as_of.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _load_archive(lake: LakeResource, days: list[date]) -> pl.DataFrame:
    """silver/klines for the days that can have an archive; today (no silver partition yet) has none.

    A past day that silver never materialized is an error (dg.Failure naming it), not "fill it all from REST".
    """
    keys = [d.isoformat() for d in days if daily_partitions.has_partition_key(d.isoformat())]
    if not keys:
        return empty_klines()
    frame = scan_partitions(lake.store(), table_prefix(SILVER_KLINES), keys).collect()
    if frame.is_empty():
        return empty_klines()
    return frame.select(list(SILVER_KLINES_SCHEMA))


def _load_stored(lake: LakeResource, days: list[date]) -> pl.DataFrame | None:
    """The rows silver/klines_filled already holds for these days: kept where REST cannot answer now."""
    stored = scan_stored(lake.store(), table_prefix(KLINES_FILLED), [d.isoformat() for d in days])
    return None if stored is None else stored.collect()


def _overall(report: pl.DataFrame) -> float:
    expected = int(report["expected"].sum())
    return round(1 - int(report["missing"].sum()) / expected, 6) if expected else 1.0


def _per_symbol(report: pl.DataFrame) -> pl.DataFrame:
    return (
        report.group_by("market", "symbol")
        .agg(
            days=pl.len(),
            expected=pl.col("expected").sum(),
            archive_rows=pl.col("archive_rows").sum(),
            rest_rows=pl.col("rest_rows").sum(),
            missing=pl.col("missing").sum(),
            complete_days=(pl.col("missing") == 0).sum(),
        )
        .with_columns(
            completeness=pl.when(pl.col("expected") > 0)
            .then((1 - pl.col("missing") / pl.col("expected")).round(6))
            .otherwise(1.0)
        )
        .sort("market", "symbol")
    )


def _gap_rows(gaps: pl.DataFrame) -> pl.DataFrame:
    return gaps.select("market", "symbol", "gap_start", "gap_end", "minutes", "reason")


@dg.multi_asset(
    name="klines_filled",
    outs={
        "klines_filled": dg.AssetOut(
            key=KLINES_FILLED,
            metadata={"partition_expr": "open_time"},
            kinds={"ccxt", "polars", "parquet"},
            description=(
                "The canonical kline series: silver/klines with its holes filled from the exchange's REST API "
                "(ccxt: binance spot, binanceusdm, binancecoinm by default). Same columns as silver/klines; "
                "`source` is 'archive' or 'rest', and where both have a bar the archive row wins. A day the "
                "archive does not have (404, not yet published, today) comes entirely from REST; re-materializing "
                "after the archive lands replaces those rows. No candle is ever invented (no forward fill, no "
                "zero-volume rows) and the still-forming candle (open_time + interval > now) is never stored. "
                "What is still missing is in silver/kline_gaps."
            ),
        ),
        "kline_gaps": dg.AssetOut(
            key=KLINE_GAPS,
            # A gap that got filled must disappear: this report table is replaced exactly, not kept.
            metadata={"partition_expr": "gap_start", WRITE_MODE_KEY: WRITE_EXACT},
            kinds={"polars", "parquet"},
            description=(
                "One row per run of bars still missing from silver/klines_filled after the REST fill, per "
                "instrument and UTC day: gap_start (first missing bar), gap_end (exclusive: the bar after the "
                "gap), bars, minutes, and the reason ('exchange returned no data' = REST was asked and has no "
                "candle either, e.g. exchange maintenance; 'fetch failed: …'; 'not fetched: REST gap-fill "
                "disabled'). A day without gaps has no rows."
            ),
        ),
    },
    deps=[
        dg.AssetDep(
            SILVER_KLINES,
            # today's partition exists here but not in silver (archives land T+1): it is REST-only.
            partition_mapping=dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True),
        )
    ],
    partitions_def=daily_partitions_with_today,
    backfill_policy=range_backfill_policy,
    pool="binance_api",
    group_name=GROUP,
    check_specs=[
        *(
            dg.AssetCheckSpec(name, asset=KLINES_FILLED, blocking=True, description=desc)
            for name, desc in CHECK_DESCRIPTIONS.items()
        ),
        dg.AssetCheckSpec(
            COMPLETENESS_CHECK,
            asset=KLINES_FILLED,
            description=(
                "WARN when any instrument-day still misses closed bars after the REST fill; metadata: completeness "
                "per symbol and day (archive vs REST rows) and every remaining gap with its reason."
            ),
        ),
    ],
)
def klines_filled(
    context: dg.AssetExecutionContext,
    config: GapFillConfig,
    lake: LakeResource,
    universe: UniverseResource,
    binance_rest: BinanceRestResource,
) -> Iterator[dg.Output[pl.DataFrame] | dg.AssetCheckResult]:
    instruments, scope = select_instruments(context, config, universe.instruments())
    days = window_days(context)
    try:
        step = interval_to_timedelta(config.interval)
    except ValueError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    now = _now(config)
    archive = _load_archive(lake, days)

    client = binance_rest.client() if (binance_rest.enabled and config.rest_fill) else None
    from lakehouse_assets.klines.rest import RestAccessError

    try:
        result = fill_gaps(
            archive,
            instruments=instruments,
            days=days,
            interval=config.interval,
            now=now,
            fetcher=client,
            page_limit=binance_rest.page_limit,
            stored=_load_stored(lake, days),
        )
    except RestAccessError as exc:
        raise dg.Failure(description=f"REST gap-fill refused: {exc}", allow_retries=False) from exc
    except ValueError as exc:  # REST rows the archive parser rejects (wrong day, malformed row)
        raise dg.Failure(description=str(exc), allow_retries=False) from exc

    outcomes = validate_silver_klines(validation_view(result.frame))
    for outcome in outcomes:
        yield check_result(outcome, asset_key=KLINES_FILLED)
    yield _completeness_result(result)

    raise_if_blocked("silver/klines_filled", outcomes)

    markets = sorted({i.market for i in instruments})
    rest_sources = (
        {m: client.describe(m) for m in markets} if client is not None else {m: "disabled" for m in markets}
    )
    context.log.info(
        f"{result.frame.height} rows ({(result.frame['source'] == SOURCE_REST).sum()} from REST) over "
        f"{len(days)} day(s) x {len(instruments)} instrument(s); {result.rest_requests} REST request(s); "
        f"{result.gaps.height} gap(s) remain"
        + (f"; kept {result.kept_rows} stored row(s) REST could not confirm now" if result.kept_rows else "")
    )
    yield dg.Output(
        result.frame,
        output_name="klines_filled",
        metadata={
            SCOPE_KEY: scope,
            "instruments": len(instruments),
            "days": len(days),
            "archive_rows": int((result.frame["source"] == SOURCE_ARCHIVE).sum()),
            "rest_rows": int((result.frame["source"] == SOURCE_REST).sum()),
            "rows_kept_from_lake": result.kept_rows,
            "rest_requests": result.rest_requests,
            "rest_retries": result.rest_retries,
            # identical repeated candles the REST source sent, dropped (conflicting ones fail their window)
            "rest_duplicates_dropped": result.rest_duplicates_dropped,
            "rest_windows": len(result.windows),
            "rest_sources": dg.MetadataValue.json(rest_sources),
            "closed_until": closed_until(now, step).isoformat(),
            "completeness": _overall(result.report),
            "remaining_gaps": result.gaps.height,
            "completeness_by_symbol": dg.MetadataValue.md(markdown_table(_per_symbol(result.report))),
            "completeness_by_day": dg.MetadataValue.md(markdown_table(result.report, limit=100)),
        },
    )
    by_reason = (
        result.gaps.group_by("reason").agg(gaps=pl.len(), bars=pl.col("bars").sum()).sort("bars", descending=True)
    )
    yield dg.Output(
        result.gaps,
        output_name="kline_gaps",
        metadata={
            SCOPE_KEY: scope,
            "gaps": result.gaps.height,
            "missing_bars": int(result.gaps["bars"].sum() or 0),
            "by_reason": dg.MetadataValue.md(markdown_table(by_reason)),
            "gap_list": dg.MetadataValue.md(markdown_table(_gap_rows(result.gaps), limit=100)),
        },
    )


def _completeness_result(result: FillResult) -> dg.AssetCheckResult:
    incomplete = result.report.filter(pl.col("missing") > 0)
    return dg.AssetCheckResult(
        asset_key=KLINES_FILLED,
        check_name=COMPLETENESS_CHECK,
        passed=result.gaps.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{incomplete.height} of {result.report.height} instrument-days incomplete; "
            f"{result.gaps.height} gap(s), {int(result.gaps['bars'].sum() or 0)} missing bar(s)"
        ),
        metadata={
            "completeness": _overall(result.report),
            "completeness_by_symbol": dg.MetadataValue.md(markdown_table(_per_symbol(result.report))),
            "completeness_by_day": dg.MetadataValue.md(markdown_table(result.report, limit=100)),
            "gaps": dg.MetadataValue.md(markdown_table(_gap_rows(result.gaps), limit=100)),
        },
    )


klines_filled_job = dg.define_asset_job(
    "klines_filled_job",
    selection=dg.AssetSelection.groups(GROUP),
    description=(
        "Complete silver/klines from the exchange's REST API into silver/klines_filled and list what is still "
        "missing in silver/kline_gaps. Has today's partition (REST-only, closed bars so far)."
    ),
)
