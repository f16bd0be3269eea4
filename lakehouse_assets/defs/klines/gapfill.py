"""silver/klines_filled and silver/kline_gaps: the archive completed from the exchange's REST API.

One computation, two tables (a multi-asset): the REST calls that fill holes also decide which
holes remain and why, so both are written from the same run and can never disagree.

A run is processed in chunks of instruments that fit LAKEHOUSE_RUN_MEMORY_MIB (``lake/chunks.py``):
each chunk's silver rows are read, filled, checked and its klines_filled rows written before the next
chunk is read. silver/kline_gaps (one small row per gap) is written once the whole run passed, so a run
stopped by a blocked chunk leaves the gaps of the chunks already written as they were until the re-run.
"""

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime

import dagster as dg
import polars as pl
from pydantic import Field

from lakehouse_assets.defs.common.checks import check_result, chunks_written, raise_if_blocked
from lakehouse_assets.defs.common.executors import in_process_unless_configured
from lakehouse_assets.defs.common.keys import COMPLETENESS_CHECK, KLINE_GAPS, KLINES_FILLED, SILVER_KLINES
from lakehouse_assets.defs.common.metadata import md_table
from lakehouse_assets.defs.common.partitions import daily_partitions_with_today, range_backfill_policy, window_days
from lakehouse_assets.defs.common.retries import retry_storage_errors
from lakehouse_assets.defs.common.selection import InstrumentSelection, select_universe
from lakehouse_assets.defs.resources import BinanceRestResource, RunMemoryResource, UniverseResource
from lakehouse_assets.instruments import Instrument, instrument_frame
from lakehouse_assets.klines import memory, reports
from lakehouse_assets.klines.gapfill import (
    FillResult,
    KlineFetcher,
    closed_until,
    fill_gaps,
    real_gaps,
    validation_view,
)
from lakehouse_assets.klines.quality import CHECK_DESCRIPTIONS, validate_silver_klines
from lakehouse_assets.klines.schema import SILVER_KLINES_SCHEMA, empty_klines, interval_to_timedelta
from lakehouse_assets.lake.chunks import Chunk, plan_chunks
from lakehouse_assets.lake.io_manager import SCOPE_KEY, WRITE_EXACT, WRITE_MODE_KEY, LakeResource, PartitionWriter
from lakehouse_assets.quality import CheckOutcome, merge_outcomes
from lakehouse_assets.universe.contract_sizes import LakeContractSizes
from lakehouse_assets.universe.lifecycle import DailyUniverse

GROUP = "gapfill"  # not "silver": the gap-fill has today's partition, whose archive (bronze, silver) never exists


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


def _archive_rows(silver: pl.LazyFrame | None, instruments: Sequence[Instrument]) -> pl.DataFrame:
    """One chunk's rows of silver/klines as loaded (lazily) by the IO manager: the window's days that can
    have an archive.

    Today has no silver partition (the mapping leaves it out); a past day that silver never
    materialized fails the step while loading (naming it), not "fill it all from REST".
    """
    if silver is None:
        return empty_klines()
    keys = instrument_frame(list(instruments)).lazy()
    return silver.join(keys, on=["market", "symbol"], how="semi").select(list(SILVER_KLINES_SCHEMA)).collect()


def _load_stored(lake: LakeResource, days: list[date], instruments: Sequence[Instrument]) -> pl.DataFrame | None:
    """The rows silver/klines_filled already holds for these days and instruments: kept where REST cannot
    answer now."""
    stored = lake.scan_stored(KLINES_FILLED, [d.isoformat() for d in days])
    if stored is None:
        return None
    return stored.join(instrument_frame(list(instruments)).lazy(), on=["market", "symbol"], how="semi").collect()


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
                "disabled'; 'pre_listing' / 'delisted' = bars of a listing or delisting day before or after trading, "
                "absent but no gap). A day without gaps has no rows, and so has a day the instrument did not trade "
                "at all (before its listing, after its delisting: see silver/instruments)."
            ),
        ),
    },
    ins={
        "silver": dg.AssetIn(
            SILVER_KLINES,
            # today's partition exists here but not in silver (archives land T+1): it is REST-only.
            partition_mapping=dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True),
        )
    },
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
    silver: pl.LazyFrame | None,
    lake: LakeResource,
    universe: UniverseResource,
    binance_rest: BinanceRestResource,
    run_memory: RunMemoryResource,
) -> Iterator[dg.Output[PartitionWriter] | dg.Output[pl.DataFrame] | dg.AssetCheckResult]:
    days = window_days(context)
    run = select_universe(context, config, universe, days)  # point in time: no REST call for days off the market
    instruments, scope = run.instruments, run.scope
    try:
        step = interval_to_timedelta(config.interval)
    except ValueError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    now = _now(config)

    client = binance_rest.client() if (binance_rest.enabled and config.rest_fill) else None
    if client is not None:  # COIN-M REST rows need contract sizes: exchangeInfo via the lake, read when first needed
        client.contract_size = LakeContractSizes(lake.store())
    # Whole instruments per chunk: a REST window may span days, and a chunk's holes are those of a whole run.
    chunks = plan_chunks(instruments, days, run_memory.capacity(memory.KLINES_FILLED), split_days=False)
    writer = lake.partition_writer(KLINES_FILLED, [d.isoformat() for d in days], partition_column="open_time")
    totals = reports.FillTotals()
    chunk_outcomes: list[list[CheckOutcome]] = []
    written: list[Chunk[Instrument]] = []
    with retry_storage_errors(context):  # a lake outage while reading or writing a chunk: retry the step
        for chunk in chunks:
            result = _fill(
                _archive_rows(silver, chunk.instruments), list(chunk.instruments), days, config.interval, now, client,
                binance_rest.page_limit, _load_stored(lake, days, chunk.instruments), run.daily,
            )
            outcomes = validate_silver_klines(validation_view(result.frame))
            chunk_outcomes.append(outcomes)
            totals.add(result)
            if all(o.passed for o in outcomes):  # a chunk failing a blocking check writes nothing of itself
                writer.write(result.frame)
                written.append(chunk)

    outcomes = merge_outcomes(chunk_outcomes)
    gaps = totals.all_gaps
    yield from (check_result(outcome, asset_key=KLINES_FILLED) for outcome in outcomes)
    yield _completeness_result(totals.report, gaps)
    raise_if_blocked("silver/klines_filled", outcomes, written=chunks_written(written, len(chunks)))

    context.log.info(reports.fill_summary(totals, days=len(days), instruments=len(instruments)))
    markets = sorted({i.market for i in instruments})
    rest_sources = {m: client.describe(m) if client is not None else "disabled" for m in markets}
    yield dg.Output(
        writer,
        output_name="klines_filled",
        metadata={
            SCOPE_KEY: scope,
            **run.metadata(),
            "instruments": len(instruments),
            "days": len(days),
            **_fill_metadata(totals, gaps, rest_sources, closed_until(now, step).isoformat()),
            # request weight taken from the machine-wide budget, waits for it, the server's highest used weight
            **(client.weight_report() if client is not None else {}),
        },
    )
    yield dg.Output(gaps, output_name="kline_gaps", metadata={SCOPE_KEY: scope, **_gaps_metadata(gaps)})


def _fill(
    archive: pl.DataFrame,
    instruments: list[Instrument],
    days: list[date],
    interval: str,
    now: datetime,
    client: KlineFetcher | None,
    page_limit: int,
    stored: pl.DataFrame | None,
    lifecycle: DailyUniverse | None = None,
) -> FillResult:
    """``fill_gaps``, with a refusal by the REST source or a row the archive parser rejects as a step failure."""
    from lakehouse_assets.exchange.client import RestAccessError

    try:
        return fill_gaps(
            archive,
            instruments=instruments,
            days=days,
            interval=interval,
            now=now,
            fetcher=client,
            page_limit=page_limit,
            stored=stored,
            lifecycle=lifecycle,
        )
    except RestAccessError as exc:
        raise dg.Failure(description=f"REST gap-fill refused: {exc}", allow_retries=False) from exc
    except ValueError as exc:  # REST rows the archive parser rejects (wrong day, malformed row)
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def _fill_metadata(
    totals: reports.FillTotals, gaps: pl.DataFrame, rest_sources: dict[str, str], closed_until_iso: str
) -> dict[str, object]:
    """What silver/klines_filled's materialization shows: where the rows came from and what is still missing."""
    return {
        "archive_rows": totals.archive_rows,
        "rest_rows": totals.rest_rows,
        "rows_kept_from_lake": totals.kept_rows,
        "rest_requests": totals.rest_requests,
        "rest_retries": totals.rest_retries,
        # identical repeated candles the REST source sent, dropped (conflicting ones fail their window)
        "rest_duplicates_dropped": totals.rest_duplicates_dropped,
        "rest_windows": totals.rest_windows,
        "rest_sources": dg.MetadataValue.json(rest_sources),
        "closed_until": closed_until_iso,
        "completeness": reports.completeness_share(totals.report, missing="missing"),
        "remaining_gaps": gaps.height,
        "completeness_by_symbol": md_table(reports.filled_completeness_by_symbol(totals.report)),
        "completeness_by_day": md_table(totals.report, limit=100),
    }


def _gaps_metadata(gaps: pl.DataFrame) -> dict[str, object]:
    """What silver/kline_gaps' materialization shows: the remaining gaps, by reason and listed."""
    return {
        "gaps": gaps.height,
        "missing_bars": reports.missing_bars(gaps),
        "by_reason": md_table(reports.gaps_by_reason(gaps)),
        "gap_list": md_table(reports.gap_list(gaps), limit=100),
    }


def _completeness_result(report: pl.DataFrame, gaps: pl.DataFrame) -> dg.AssetCheckResult:
    incomplete = reports.incomplete_days(report, missing="missing")
    return dg.AssetCheckResult(
        asset_key=KLINES_FILLED,
        check_name=COMPLETENESS_CHECK,
        passed=real_gaps(gaps).height == 0,  # a listing day's pre-listing minutes are no gap
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{incomplete.height} of {report.height} instrument-days incomplete; "
            f"{gaps.height} gap(s), {reports.missing_bars(gaps)} missing bar(s)"
        ),
        metadata={
            "completeness": reports.completeness_share(report, missing="missing"),
            "completeness_by_symbol": md_table(reports.filled_completeness_by_symbol(report)),
            "completeness_by_day": md_table(report, limit=100),
            "gaps": md_table(reports.gap_list(gaps), limit=100),
        },
    )


klines_filled_job = dg.define_asset_job(
    "klines_filled_job",
    selection=dg.AssetSelection.assets(KLINES_FILLED, KLINE_GAPS),
    executor_def=in_process_unless_configured,  # one multi-asset step (defs/common/executors.py)
    description=(
        "Complete silver/klines from the exchange's REST API into silver/klines_filled and list what is still "
        "missing in silver/kline_gaps. Has today's partition (REST-only, closed bars so far)."
    ),
)
