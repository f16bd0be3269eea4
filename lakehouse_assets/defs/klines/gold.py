"""gold/klines_resampled and gold/features: exchange-exact higher intervals and TA-Lib-exact features.

Both are daily-partitioned like silver and range-aware (a backfill run covers up to
LAKEHOUSE_DAYS_PER_RUN days). The input 1m table is ONE constant, ``KLINES_SOURCE``: the
gap-filled silver/klines_filled, so a minute missing from the archive but served by the
exchange's REST API is in gold too, and the bars and features equal those of a complete archive.

Gold has no partition for the running UTC day although klines_filled has one (REST-only, growing
hourly): a gold partition is a closed day, whose 1d bar, 24h windows and charts no longer change.
The mappings below handle the two partitionings (today's klines_filled feeds no gold partition).

gold/features reads a lookback window before its own days so that recursive indicators (RSI,
ATR, MACD) at the start of day D equal a run over the whole contiguous history (see
indicators.py and the README): 1 day of 1m bars from klines_filled for the 1m features, and for
the longer intervals the already-aggregated bars of gold/klines_resampled, because 600 daily bars
are 600 small rows there but 864,000 rows of 1m klines in silver. The window is an input option
(``LOOKBACK_KEY``, read by the IO manager) and part of the automation condition, not a partition
mapping: in the asset graph features day D depends on day D of its inputs only, so a backfill of
both gold tables over [a, b] targets exactly [a, b] (``defs/common/lookback.py`` says why).

Its own days are required (no bars, no features: a run lacking them fails, naming every absent
day of both inputs at once). The lookback days are not: a day never materialized upstream is
skipped (``lakehouse/missing: skip``), the features are computed from the history present, and
the bars that would have needed the absent days get ``lookback_complete = false`` and are listed
by the WARN check ``lookback_coverage``. Re-running the partition once those days exist makes
them equal to the full-history values (README, Gold: "A missing lookback").

Both assets process a run in chunks of whole instruments that fit LAKEHOUSE_RUN_MEMORY_MIB
(``lake/chunks.py``): a chunk's inputs are read, computed, checked and written before the next
chunk is read; the checks, the lookback report and each day's summary and charts cover all chunks.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl

from lakehouse_assets import settings
from lakehouse_assets.defs.common.checks import check_result, chunks_written, raise_if_blocked
from lakehouse_assets.defs.common.executors import in_process_unless_configured
from lakehouse_assets.defs.common.keys import GOLD_FEATURES, GOLD_RESAMPLED, KLINES_FILLED
from lakehouse_assets.defs.common.lookback import with_lookback
from lakehouse_assets.defs.common.metadata import markdown_table
from lakehouse_assets.defs.common.partitions import daily_partitions, range_backfill_policy, window_days
from lakehouse_assets.defs.common.retries import retry_storage_errors
from lakehouse_assets.defs.common.selection import InstrumentSelection, select_instruments
from lakehouse_assets.defs.operations import follow_upstream
from lakehouse_assets.defs.resources import GoldResource, LakeResource, RunMemoryResource, UniverseResource
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.klines import memory, reports
from lakehouse_assets.klines.chart import chart_markdown, chart_svg
from lakehouse_assets.klines.gold_quality import (
    FEATURE_CHECK_DESCRIPTIONS,
    LOOKBACK_CHECK,
    LOOKBACK_CHECK_DESCRIPTION,
    RESAMPLED_CHECK_DESCRIPTIONS,
    lookback_report,
    validate_features,
    validate_resampled,
)
from lakehouse_assets.klines.indicators import (
    FEATURES_SCHEMA,
    TALIB_COLUMNS,
    features_for_window,
    lookback_days,
)
from lakehouse_assets.klines.resample import RESAMPLED_SCHEMA, SOURCE_INTERVAL, resample_klines
from lakehouse_assets.klines.schema import INTERVAL_MS
from lakehouse_assets.lake.chunks import Chunk, plan_chunks
from lakehouse_assets.lake.io_manager import (
    LOOKBACK_KEY,
    MISSING_KEY,
    MISSING_SKIP,
    SCOPE_KEY,
    PartitionWriter,
    StoredDays,
)
from lakehouse_assets.lake.layout import day_ranges
from lakehouse_assets.quality import CheckOutcome, merge_outcomes

# The 1m input of the gold layer: the canonical, gap-filled series (source 'archive' or 'rest'). Its
# partitions include today (daily_partitions_with_today); gold's stop at yesterday (see the README).
KLINES_SOURCE = KLINES_FILLED

DEFAULT_FEATURE_INTERVALS = "1m,1h,1d"
# The lookback is part of the asset graph, so it is fixed when the code location loads: from
# LAKEHOUSE_FEATURE_INTERVALS as set then. A run whose GoldResource asks for intervals needing a
# longer lookback fails with a message instead of computing from too little history.
_DECLARED_FEATURE_INTERVALS: list[str] = settings.get("LAKEHOUSE_FEATURE_INTERVALS")
MINUTE_LOOKBACK_DAYS = lookback_days(SOURCE_INTERVAL)
RESAMPLED_LOOKBACK_DAYS = max(
    (lookback_days(i) for i in _DECLARED_FEATURE_INTERVALS if i != SOURCE_INTERVAL), default=0
)
# gold/features' inputs and the days each reads before the run's own days (input option and automation).
FEATURE_LOOKBACKS = {KLINES_SOURCE: MINUTE_LOOKBACK_DAYS, GOLD_RESAMPLED: RESAMPLED_LOOKBACK_DAYS}

CHART_MAX_BARS = 2_000
_BAR_COLUMNS = ["market", "symbol", "interval", "open_time", "high", "low", "close", "volume", "quote_volume"]


def _instrument_keys(instruments: list[Instrument]) -> pl.LazyFrame:
    return pl.LazyFrame(
        {"market": [i.market for i in instruments], "symbol": [i.symbol for i in instruments]},
        schema={"market": pl.String(), "symbol": pl.String()},
    )


def _window(context: dg.AssetExecutionContext) -> tuple[datetime, datetime]:
    tw = context.partition_time_window
    return tw.start.astimezone(UTC), tw.end.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# gold/klines_resampled


@dg.asset(
    key=GOLD_RESAMPLED,
    group_name="gold",
    ins={"klines": dg.AssetIn(key=KLINES_SOURCE)},
    partitions_def=daily_partitions,
    backfill_policy=range_backfill_policy,
    metadata={"partition_expr": "open_time"},
    kinds={"polars", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(name, asset=GOLD_RESAMPLED, blocking=True, description=desc)
        for name, desc in RESAMPLED_CHECK_DESCRIPTIONS.items()
    ],
    description=(
        "The 1m klines of silver/klines_filled (archive + REST gap-fill) resampled to every interval in "
        "LAKEHOUSE_RESAMPLE_INTERVALS (default 5m,15m,1h,4h,1d), one table with an `interval` column and the "
        "silver columns plus `minutes` (1m bars present) and `is_complete`. Binance's semantics: open = first "
        "minute, high = max, low = min, close = last, volumes and trade_count summed, bars aligned to UTC (4h "
        "at 00/04/08…, 1d at 00:00), close_time = open_time + interval − 1 ms. For complete periods the bars "
        "equal Binance's own candles (OHLC and trade_count exactly, volumes to 1e-9). `source`: archive, rest or "
        "mixed (the minutes'). Minutes missing from klines_filled too are never invented; such a bar has "
        "is_complete = false. Volume details a REST source did not give (OHLCV-only exchanges) stay null on the "
        "bars containing them."
    ),
)
def klines_resampled(
    context: dg.AssetExecutionContext,
    config: InstrumentSelection,
    klines: pl.LazyFrame,
    universe: UniverseResource,
    gold: GoldResource,
    lake: LakeResource,
    run_memory: RunMemoryResource,
) -> Iterator[dg.Output[PartitionWriter] | dg.AssetCheckResult]:
    instruments, scope = select_instruments(context, config, universe.instruments())
    try:
        intervals = gold.resample_list()
    except ValueError as exc:
        raise dg.Failure(description=f"LAKEHOUSE_RESAMPLE_INTERVALS: {exc}", allow_retries=False) from exc
    days = window_days(context)
    # Whole instruments per chunk (lake/chunks.py): a bar is one instrument's, and so is a chunk's input.
    chunks = plan_chunks(instruments, days, run_memory.capacity(memory.GOLD_RESAMPLED), split_days=False)
    writer = lake.partition_writer(GOLD_RESAMPLED, [d.isoformat() for d in days], partition_column="open_time")
    done = _ResampledChunks()
    with retry_storage_errors(context):  # a lake outage while reading or writing a chunk: retry the step
        for chunk in chunks:
            minutes = klines.join(_instrument_keys(list(chunk.instruments)), on=["market", "symbol"], how="semi").collect()
            try:
                frame = resample_klines(minutes, intervals)
            except ValueError as exc:
                raise dg.Failure(
                    description=f"{KLINES_SOURCE.to_user_string()} cannot be resampled: {exc}", allow_retries=False
                ) from exc
            outcomes = validate_resampled(frame)
            done.add(chunk, minutes.height, frame, outcomes)
            if all(o.passed for o in outcomes):  # a chunk failing a blocking check writes nothing of itself
                writer.write(frame)
                done.written.append(chunk)

    outcomes = merge_outcomes(done.outcomes)
    for outcome in outcomes:
        yield check_result(outcome)
    raise_if_blocked("gold/klines_resampled", outcomes, written=chunks_written(done.written, len(chunks)))

    yield dg.Output(
        writer,
        metadata={
            SCOPE_KEY: scope,
            "source": KLINES_SOURCE.to_user_string(),
            "intervals": ", ".join(intervals),
            "instruments": len(instruments),
            "days": len(days),
            "minutes_read": done.minutes_read,
            "incomplete_bars": done.incomplete_bars,
            "bars_by_interval": dg.MetadataValue.md(markdown_table(done.by_interval(intervals))),
            "incomplete_sample": dg.MetadataValue.md(
                markdown_table(done.incomplete_sample(intervals), limit=INCOMPLETE_SAMPLE, total=done.incomplete_bars)
            ),
        },
    )


INCOMPLETE_SAMPLE = 30


@dataclass
class _ResampledChunks:
    """What the chunks of one gold/klines_resampled run add up to, for its checks and metadata (the bars
    themselves are written chunk by chunk)."""

    minutes_read: int = 0
    incomplete_bars: int = 0
    outcomes: list[list[CheckOutcome]] = field(default_factory=list)
    counts: list[pl.DataFrame] = field(default_factory=list)
    samples: list[pl.DataFrame] = field(default_factory=list)
    written: list[Chunk[Instrument]] = field(default_factory=list)

    def add(self, chunk: Chunk[Instrument], minutes: int, frame: pl.DataFrame, outcomes: list[CheckOutcome]) -> None:
        incomplete = frame.filter(~pl.col("is_complete"))
        self.minutes_read += minutes
        self.incomplete_bars += incomplete.height
        self.outcomes.append(outcomes)
        self.counts.append(
            frame.group_by("interval", maintain_order=True).agg(
                bars=pl.len(), complete=pl.col("is_complete").sum(), incomplete=(~pl.col("is_complete")).sum()
            )
        )
        # the first bars of each interval: the run's sample is among them (bars are ordered by interval first)
        sample = incomplete.select("market", "symbol", "interval", "open_time", "minutes", "close")
        self.samples.append(sample.group_by("interval", maintain_order=True).head(INCOMPLETE_SAMPLE).select(sample.columns))

    def by_interval(self, intervals: list[str]) -> pl.DataFrame:
        """Bars per interval over the run, in the order of ``intervals`` (as one chunk lists them)."""
        counts = pl.concat(self.counts, how="vertical").group_by("interval").agg(pl.all().sum())
        return counts.sort(pl.col("interval").replace_strict(intervals, list(range(len(intervals))), default=None))

    def incomplete_sample(self, intervals: list[str]) -> pl.DataFrame:
        """The run's first incomplete bars in the table's order: interval (as listed), market, symbol, time."""
        rank = pl.col("interval").replace_strict(intervals, list(range(len(intervals))), default=None)
        return pl.concat(self.samples, how="vertical").sort(rank, "market", "symbol", "open_time").head(INCOMPLETE_SAMPLE)



# ---------------------------------------------------------------------------------------------
# gold/features


@dg.asset(
    key=GOLD_FEATURES,
    group_name="gold",
    ins={
        # Each input is the run's own days (the graph's default mapping) plus its lookback before them
        # (LOOKBACK_KEY, read by the IO manager). Days never materialized upstream are skipped
        # (StoredDays.missing names them): the own days are then refused in the body, absent lookback days
        # only mark the bars that needed them.
        "minute_bars": dg.AssetIn(
            key=KLINES_SOURCE,
            metadata={
                "columns": _BAR_COLUMNS, MISSING_KEY: MISSING_SKIP, LOOKBACK_KEY: FEATURE_LOOKBACKS[KLINES_SOURCE]
            },
        ),
        "resampled_bars": dg.AssetIn(
            key=GOLD_RESAMPLED,
            metadata={
                "columns": [*_BAR_COLUMNS, "close_time", "is_complete"],
                MISSING_KEY: MISSING_SKIP,
                LOOKBACK_KEY: FEATURE_LOOKBACKS[GOLD_RESAMPLED],
            },
        ),
    },
    # lakehouse_automation's follow_upstream(), with the lookback days as dependencies: a day is re-run when a
    # day of its window is updated, and not started while one is missing or in progress (as with a mapping).
    automation_condition=with_lookback(follow_upstream(), FEATURE_LOOKBACKS),
    partitions_def=daily_partitions,
    backfill_policy=range_backfill_policy,
    metadata={"partition_expr": "open_time"},
    kinds={"polars", "parquet", "talib"},
    check_specs=[
        *(
            dg.AssetCheckSpec(name, asset=GOLD_FEATURES, blocking=True, description=desc)
            for name, desc in FEATURE_CHECK_DESCRIPTIONS.items()
        ),
        dg.AssetCheckSpec(LOOKBACK_CHECK, asset=GOLD_FEATURES, description=LOOKBACK_CHECK_DESCRIPTION),
    ],
    description=(
        "Per (market, symbol, interval, open_time) for LAKEHOUSE_FEATURE_INTERVALS (default 1m,1h,1d): close, "
        "ret_1, log_ret_1, rsi_14, macd_12_26_9 / macd_signal_12_26_9 / macd_hist_12_26_9, bb_upper/middle/"
        "lower_20_2, atr_14 (TA-Lib 0.8.x itself, per contiguous segment: equal to TA-Lib over the whole "
        "contiguous history, null during warm-up and again after a hole), and over the bars of the last 24h: "
        "vwap_24h, realized_vol_24h, volume_zscore_24h, bars_24h. Lookback read before each day: "
        + ", ".join(f"{i}: {lookback_days(i)} d" for i in _DECLARED_FEATURE_INTERVALS)
        + " (1m bars from silver/klines_filled). A lookback day never materialized upstream is skipped: the bars "
        "whose 600-bar warm-up or 24h window needed it get lookback_complete = false (WARN check lookback_coverage "
        "lists them) and equal the full-history values once the partition re-runs after that day exists. The run's "
        "own days are required. Closed UTC days only: "
        "no partition for today. Each day's materialization carries that day's chart per "
        "symbol (close, Bollinger bands, RSI, holes shaded): Metadata → chart market:SYMBOL → [Show Markdown]."
    ),
)
def features(
    context: dg.AssetExecutionContext,
    config: InstrumentSelection,
    minute_bars: StoredDays,
    resampled_bars: StoredDays,
    universe: UniverseResource,
    gold: GoldResource,
    lake: LakeResource,
    run_memory: RunMemoryResource,
) -> Iterator[dg.Output[PartitionWriter] | dg.AssetCheckResult]:
    instruments, scope = select_instruments(context, config, universe.instruments())
    intervals = _feature_intervals(gold)
    start, end = _window(context)
    inputs = {
        interval: (KLINES_SOURCE, minute_bars) if interval == SOURCE_INTERVAL else (GOLD_RESAMPLED, resampled_bars)
        for interval in intervals
    }
    absent = _absent_lookback_days(dict(inputs.values()), start)
    absent_by_interval = {i: absent[inputs[i][0]] for i in intervals}
    days = window_days(context)

    # Whole instruments per chunk (lake/chunks.py): an indicator depends on the instrument's earlier bars only.
    chunks = plan_chunks(instruments, days, run_memory.capacity(memory.GOLD_FEATURES), split_days=False)
    writer = lake.partition_writer(GOLD_FEATURES, [d.isoformat() for d in days], partition_column="open_time")
    day_metadata = _DayMetadata(days, intervals, gold.chart_max_symbols)
    outcomes_by_chunk: list[list[CheckOutcome]] = []
    histories: list[list[dict[str, object]]] = []
    lookback: list[pl.DataFrame] = []
    written: list[Chunk[Instrument]] = []
    with retry_storage_errors(context):  # a lake outage while reading or writing a chunk: retry the step
        for chunk in chunks:
            frame, history = _compute(intervals, inputs, absent, start, end, _instrument_keys(list(chunk.instruments)))
            outcomes = validate_features(frame)
            outcomes_by_chunk.append(outcomes)
            histories.append(history)
            lookback.append(lookback_report(frame, absent_by_interval))
            day_metadata.add(frame, list(chunk.instruments))
            if all(o.passed for o in outcomes):  # a chunk failing a blocking check writes nothing of itself
                writer.write(frame)
                written.append(chunk)

    outcomes = merge_outcomes(outcomes_by_chunk)
    for outcome in outcomes:
        yield check_result(outcome)
    yield _lookback_check(_sorted_lookback(lookback), absent)
    raise_if_blocked("gold/features", outcomes, written=chunks_written(written, len(chunks)))

    day_metadata.attach(context)
    yield dg.Output(
        writer,
        metadata={
            SCOPE_KEY: scope,
            "source": KLINES_SOURCE.to_user_string(),
            "intervals": ", ".join(intervals),
            "instruments": len(instruments),
            "days_in_run": len(days),
            "lookback": dg.MetadataValue.md(markdown_table(pl.DataFrame(_run_history(histories)))),
        },
    )


def _run_history(histories: list[list[dict[str, object]]]) -> list[dict[str, object]]:
    """Per interval, what history the run's chunks read and wrote, added up."""
    counted = ("bars_read", "bars_written", "lookback_incomplete")
    run = [dict(row) for row in histories[0]]
    for history in histories[1:]:
        for total, row in zip(run, history, strict=True):
            for key in counted:
                total[key] = int(total[key]) + int(row[key])  # type: ignore[call-overload]
    return run


def _sorted_lookback(parts: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(parts, how="vertical").sort("market", "symbol", "interval", "date")


class _DayMetadata:
    """Each day's materialization gets its own summary and charts (a range run would otherwise copy one
    month-long chart into every day's event); run-level facts go on the output for all days. Gathered chunk
    by chunk: the summaries are one row per instrument and interval, the charts the first instruments'."""

    def __init__(self, days: list[date], intervals: list[str], charts: int) -> None:
        self.intervals, self.charts = intervals, charts
        self.latest: dict[date, list[pl.DataFrame]] = {day: [] for day in days}
        self.coverage: dict[date, list[pl.DataFrame]] = {day: [] for day in days}
        self.chart_md: dict[date, dict[str, dg.MetadataValue]] = {day: {} for day in days}

    def add(self, frame: pl.DataFrame, instruments: list[Instrument]) -> None:
        for day in self.latest:
            day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            day_end = day_start + timedelta(days=1)
            rows = frame.filter(pl.col("open_time") >= day_start, pl.col("open_time") < day_end)
            self.latest[day].append(reports.latest_features(rows))
            self.coverage[day].append(reports.feature_coverage(rows))
            left = self.charts - len(self.chart_md[day])
            self.chart_md[day].update(_charts(rows, self.intervals, instruments, day_start, day_end, left))

    def attach(self, context: dg.AssetExecutionContext) -> None:
        for day in self.latest:
            context.add_asset_metadata(
                {
                    "latest": dg.MetadataValue.md(markdown_table(_by_instrument(self.latest[day]), limit=60)),
                    "coverage": dg.MetadataValue.md(markdown_table(_by_instrument(self.coverage[day]), limit=60)),
                    **self.chart_md[day],
                },
                partition_key=day.isoformat(),
            )


def _by_instrument(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Per-chunk tables of one row per instrument and interval, as one table in that order."""
    present = [p for p in parts if p.height]
    return pl.concat(present, how="vertical").sort("market", "symbol", "interval") if present else pl.DataFrame()


def _compute(
    intervals: list[str],
    inputs: dict[str, tuple[dg.AssetKey, StoredDays]],
    absent: dict[dg.AssetKey, list[date]],
    start: datetime,
    end: datetime,
    keys: pl.LazyFrame,
) -> tuple[pl.DataFrame, list[dict[str, object]]]:
    """Features of every interval for the run's window, and per interval what history was read."""
    parts: list[pl.DataFrame] = []
    history: list[dict[str, object]] = []
    for interval in intervals:
        since = start - timedelta(days=lookback_days(interval))
        upstream, stored = inputs[interval]
        bars = _bars(stored, interval, since, end, keys)
        try:
            computed = features_for_window(bars, start, end, absent[upstream])
        except ValueError as exc:
            raise dg.Failure(description=f"gold/features {interval}: {exc}", allow_retries=False) from exc
        parts.append(computed)
        skipped = [d for d in absent[upstream] if d >= since.date()]
        history.append(
            {
                "interval": interval,
                "lookback_days": lookback_days(interval),
                "days_absent": len(skipped),
                "bars_read": bars.height,
                "bars_written": computed.height,
                "lookback_incomplete": int((~computed["lookback_complete"]).sum()),
            }
        )
    frame = pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema=FEATURES_SCHEMA)
    return frame, history


def _absent_lookback_days(inputs: dict[dg.AssetKey, StoredDays], start: datetime) -> dict[dg.AssetKey, list[date]]:
    """Per input: the lookback days it never stored (skipped by the IO manager). Its own days are required:
    if any is absent, fail naming every absent own day of every input at once."""
    first_own_day = start.date()
    required = {
        key: [d for d in stored.missing if date.fromisoformat(d) >= first_own_day] for key, stored in inputs.items()
    }
    if any(required.values()):
        raise dg.Failure(
            description=(
                "gold/features needs its inputs for the days it writes; not materialized: "
                + "; ".join(f"{k.to_user_string()} {day_ranges(days)}" for k, days in required.items() if days)
                + ". Materialize those first (a backfill of the whole graph for these days does it in order); "
                "days of the lookback before them may be missing."
            ),
            allow_retries=False,
        )
    return {
        key: sorted(date.fromisoformat(d) for d in stored.missing if date.fromisoformat(d) < first_own_day)
        for key, stored in inputs.items()
    }


def _bars(stored: StoredDays, interval: str, since: datetime, end: datetime, keys: pl.LazyFrame) -> pl.DataFrame:
    """One interval's bars of the selected instruments in [since, end), from the days the input holds."""
    # The run's own days are stored (_absent_lookback_days refused the run otherwise), so there is a frame.
    assert stored.frame is not None
    source = stored.frame if interval == SOURCE_INTERVAL else stored.frame.filter(pl.col("interval") == interval)
    return (
        source.filter(pl.col("open_time") >= since, pl.col("open_time") < end)
        .join(keys, on=["market", "symbol"], how="semi")
        .collect()
    )


def _lookback_check(report: pl.DataFrame, absent: dict[dg.AssetKey, list[date]]) -> dg.AssetCheckResult:
    """WARN: the bars computed without their whole lookback, per symbol, interval and day (``lookback_report``)."""
    skipped = "; ".join(
        f"{key.to_user_string()} {day_ranges([d.isoformat() for d in days])}" for key, days in absent.items() if days
    )
    bars = int(report["incomplete_bars"].sum())
    return dg.AssetCheckResult(
        check_name=LOOKBACK_CHECK,
        passed=report.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{bars} bar(s) computed from an incomplete lookback (lookback_complete = false): "
            + ", ".join(
                f"{r['market']}:{r['symbol']} {r['interval']} {r['date']} ({r['incomplete_bars']} bars)"
                for r in report.head(10).iter_rows(named=True)
            )
            + (f" … (+{report.height - 10} more)" if report.height > 10 else "")
            + f". Lookback days never materialized upstream: {skipped}. Materialize them, then re-run these "
            "partitions (automation does it for the last LAKEHOUSE_AUTOMATION_LOOKBACK_DAYS days)."
            if bars
            else "every bar was computed from its whole lookback"
        ),
        metadata={
            "incomplete_bars": bars,
            "lookback_days_absent": skipped or "none",
            "by_day": dg.MetadataValue.md(markdown_table(report, limit=100)),
        },
    )


def _feature_intervals(gold: GoldResource) -> list[str]:
    try:
        intervals = gold.feature_list()
        resampled = gold.resample_list()
    except ValueError as exc:
        raise dg.Failure(description=f"gold interval settings: {exc}", allow_retries=False) from exc
    not_built = [i for i in intervals if i != SOURCE_INTERVAL and i not in resampled]
    if not_built:
        raise dg.Failure(
            description=(
                f"LAKEHOUSE_FEATURE_INTERVALS has {not_built}, which gold/klines_resampled does not build "
                f"(LAKEHOUSE_RESAMPLE_INTERVALS = {', '.join(resampled)}); add them there first"
            ),
            allow_retries=False,
        )
    too_long = [
        i
        for i in intervals
        if lookback_days(i) > (MINUTE_LOOKBACK_DAYS if i == SOURCE_INTERVAL else RESAMPLED_LOOKBACK_DAYS)
    ]
    if too_long:
        raise dg.Failure(
            description=(
                f"feature interval(s) {too_long} need a longer lookback than this code location declared "
                f"({RESAMPLED_LOOKBACK_DAYS} days, from LAKEHOUSE_FEATURE_INTERVALS="
                f"{','.join(_DECLARED_FEATURE_INTERVALS)} at load time); set LAKEHOUSE_FEATURE_INTERVALS in the "
                "code location's environment and reload it"
            ),
            allow_retries=False,
        )
    return intervals


def _charts(
    frame: pl.DataFrame,
    intervals: list[str],
    instruments: list[Instrument],
    start: datetime,
    end: datetime,
    max_symbols: int,
) -> dict[str, dg.MetadataValue]:
    """One chart per instrument (up to max_symbols), at the finest feature interval that keeps the window
    readable: one day of 1m bars (a bad minute shows), but 1h bars for a month-long backfill run."""
    if frame.is_empty() or max_symbols <= 0:
        return {}
    span_ms = (end - start) / timedelta(milliseconds=1)
    by_size = sorted(intervals, key=lambda i: INTERVAL_MS[i])
    interval = next((i for i in by_size if span_ms / INTERVAL_MS[i] <= CHART_MAX_BARS), by_size[-1])
    out: dict[str, dg.MetadataValue] = {}
    present = frame.filter(pl.col("interval") == interval).partition_by(["market", "symbol"], as_dict=True)
    shown = 0
    for inst in instruments:
        rows = present.get((inst.market, inst.symbol))
        if rows is None or shown >= max_symbols:
            continue
        days = (end - start).days
        span = f"{start:%Y-%m-%d}" if days == 1 else f"{start:%Y-%m-%d} … {(end - timedelta(days=1)):%Y-%m-%d}"
        title = f"{inst.market}:{inst.symbol} {interval} {span}"
        svg = chart_svg(rows, title=title, start=start, end=end, interval_ms=INTERVAL_MS[interval])
        out[f"chart {inst.market}:{inst.symbol}"] = dg.MetadataValue.md(chart_markdown(svg, title))
        shown += 1
    return out


gold_job = dg.define_asset_job(
    "gold_job",
    selection=dg.AssetSelection.assets(GOLD_RESAMPLED, GOLD_FEATURES),
    executor_def=in_process_unless_configured,  # a chain: features reads the resampled bars (defs/common/executors.py)
    description=(
        "Build gold/klines_resampled and gold/features from silver/klines_filled (the gap-filled 1m series) for a "
        "day or a range; klines_filled must be materialized for those days. Lookback days that are not are skipped "
        "and the bars needing them marked (gold/features lookback_complete, WARN check lookback_coverage)."
    ),
)

assert set(TALIB_COLUMNS) <= set(FEATURES_SCHEMA)
assert set(RESAMPLED_SCHEMA) >= {"minutes", "is_complete"}
