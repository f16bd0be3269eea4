"""silver/klines: typed 1m klines parsed from bronze, guarded by blocking Pandera checks; and ``klines_job``."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import dagster as dg
import polars as pl

from lakehouse_assets.defs.common.checks import check_result, chunks_written, raise_if_blocked
from lakehouse_assets.defs.common.contract_sizes import contract_sizes_or_fail
from lakehouse_assets.defs.common.executors import in_process_unless_configured
from lakehouse_assets.defs.common.keys import BRONZE_KLINES, COMPLETENESS_CHECK, SILVER_KLINES
from lakehouse_assets.defs.common.metadata import md_table
from lakehouse_assets.defs.common.partitions import daily_partitions, range_backfill_policy, window_days
from lakehouse_assets.defs.common.retries import is_transient, retry_requested, retry_storage_errors
from lakehouse_assets.defs.common.selection import InstrumentSelection, RunUniverse, select_universe
from lakehouse_assets.defs.resources import BinanceArchiveResource, LakeResource, RunMemoryResource, UniverseResource
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.klines import memory, reports
from lakehouse_assets.klines.build import FileStats, SilverBuildError, build_klines
from lakehouse_assets.klines.completeness import completeness_report
from lakehouse_assets.klines.quality import CHECK_DESCRIPTIONS, validate_silver_klines
from lakehouse_assets.lake.chunks import Chunk, plan_chunks
from lakehouse_assets.lake.io_manager import SCOPE_KEY, PartitionWriter
from lakehouse_assets.quality import CheckOutcome, merge_outcomes


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
    run_memory: RunMemoryResource,
) -> Iterator[dg.Output[PartitionWriter] | dg.AssetCheckResult]:
    """Typed 1m klines, one row per (market, symbol, interval, open_time), sorted and unique. Times are UTC
    datetimes (ms), prices and volumes float64, trade_count int64; Binance's `ignore` column is dropped.
    Handles header/no-header files, ms and µs timestamps, and COIN-M volumes (volume = base asset,
    quote_volume = USD notional, contract counts kept in contract_volume). Blocking Pandera checks
    (schema, ohlc_consistency, volumes, time_grid) run before anything is written: a failing day is
    never persisted. A run is processed in chunks of instruments that fit LAKEHOUSE_RUN_MEMORY_MIB, each
    checked, then written; a chunk that fails a check writes nothing, the step fails, and the chunks
    written before it stay (each is complete, checked data; README, Bounded memory)."""
    days = window_days(context)
    run = select_universe(context, config, universe, days)  # point in time: days off the market are not gaps
    instruments, scope = run.instruments, run.scope
    chunks = plan_chunks(instruments, days, run_memory.capacity(memory.SILVER_KLINES))
    writer = lake.partition_writer(SILVER_KLINES, [d.isoformat() for d in days], partition_column="open_time")
    if len(chunks) > 1:
        context.log.info(
            f"{len(instruments)} instrument(s) x {len(days)} day(s) in {len(chunks)} chunks of at most "
            f"{max(c.instrument_days for c in chunks)} instrument-days (LAKEHOUSE_RUN_MEMORY_MIB={run_memory.budget_mib})"
        )
    done = _Chunks()
    # COIN-M volumes need each contract's USD size: Binance's exchangeInfo, through the lake (bronze/exchange_info).
    stored = set(manifest.filter(pl.col("lake_path").is_not_null()).select("market", "symbol").iter_rows())
    sizes = contract_sizes_or_fail(context, lake, [i for i in instruments if (i.market, i.symbol) in stored])
    try:
        with retry_storage_errors(context):  # writing a chunk hit a lake outage: retry, as the IO manager does
            for chunk in chunks:
                _chunk(chunk, tuple(days), manifest, lake, archive, run, writer, done, sizes)
    except SilverBuildError as exc:  # the lake was unreachable (S3 outage): retry the step
        raise retry_requested(context.retry_number) from exc
    if done.errors:
        error = SilverBuildError(done.errors)
        raise dg.Failure(description=str(error), allow_retries=False) from error

    outcomes = merge_outcomes(done.outcomes)
    yield from (check_result(outcome) for outcome in outcomes)
    report = pl.concat(done.reports, how="vertical")
    yield _completeness_result(report)
    raise_if_blocked("silver/klines", outcomes, written=chunks_written(done.written, len(chunks)))

    yield dg.Output(
        writer,
        metadata={
            SCOPE_KEY: scope,
            **run.metadata(),
            "instruments": len(instruments),
            "days": len(days),
            "files_parsed": len(done.file_stats),
            "duplicates_dropped": sum(s.duplicates_dropped for s in done.file_stats),
            "completeness": reports.completeness_share(report),
            "completeness_by_symbol": md_table(reports.silver_completeness_by_symbol(report)),
            "completeness_by_day": md_table(reports.completeness_by_day(report), limit=100),
            "first_close": md_table(reports.combine_first_and_last_close(done.first_last)),
        },
    )


@dataclass
class _Chunks:
    """What the chunks of one run found, kept for the run's check results and metadata (rows per
    instrument-day or per failing row: small next to the chunks themselves)."""

    outcomes: list[list[CheckOutcome]] = field(default_factory=list)
    reports: list[pl.DataFrame] = field(default_factory=list)
    file_stats: list[FileStats] = field(default_factory=list)
    first_last: list[pl.DataFrame] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    written: list[Chunk[Instrument]] = field(default_factory=list)


def _chunk(
    chunk: Chunk[Instrument],
    run_days: tuple[date, ...],
    manifest: pl.DataFrame,
    lake: LakeResource,
    archive: BinanceArchiveResource,
    run: RunUniverse,
    writer: PartitionWriter,
    done: _Chunks,
    contract_sizes: dict[Instrument, float],
) -> None:
    """Parse, check and (if every blocking check passes) write one chunk; the run goes on to the next either
    way, so one failed run names every bad file and every failing row."""
    # Chunks hold all of the run's days unless one instrument's days alone exceed the budget (lake/chunks.py).
    files = manifest if chunk.days == run_days else manifest.filter(pl.col("date").is_in(chunk.days))
    try:
        frame, file_stats = build_klines(files, lake.store(), list(chunk.instruments), zip_limits=archive.zip_limits(),
                                         contract_sizes=contract_sizes)  # fmt: skip
    except SilverBuildError as exc:
        if all(is_transient(e) for e in exc.errors):  # the lake is unreachable: no later chunk can do better
            raise
        done.errors.extend(exc.errors)
        return
    outcomes = validate_silver_klines(frame)
    done.outcomes.append(outcomes)
    done.reports.append(
        completeness_report(frame, days=list(chunk.days), instruments=list(chunk.instruments), interval="1m",
                            lifecycle=run.daily)
    )
    done.file_stats.extend(file_stats)
    done.first_last.append(reports.first_and_last_close(frame))
    if all(o.passed for o in outcomes):
        writer.write(frame)
        done.written.append(chunk)


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
    executor_def=in_process_unless_configured,  # a chain: bronze then silver (defs/common/executors.py)
    description="Download the day's Binance 1m kline archives (bronze) and parse them into silver/klines.",
)
