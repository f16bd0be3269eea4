"""Completing archive klines from a REST source: find the holes, plan the fetches, merge, report.

The archive is the reference (it is what Binance publishes as final), so REST is only asked for
bars the archive lacks, and where both exist for a bar the archive row wins. Nothing here ever
invents a candle: a bar neither source has stays missing and is reported as a gap with the
reason it is missing. Bars that have not closed yet (``open_time + interval > now``) are
neither expected nor stored, so "today" is complete when every *closed* bar is present.

Holes are measured per instrument and UTC day (the partition grain), so a gap never spans
midnight: a two-day outage is two gap rows. Fetch windows, on the other hand, are planned per
instrument over the whole run, coalescing holes when that does not cost an extra request, since
the exchange's request weight, not the bytes, is the scarce resource.

Point in time (``lifecycle``, a ``universe.lifecycle.DailyUniverse``): an instrument-day the
instrument did not trade (before its listing, after its delisting) has no hole, so no REST call and
no gap row; the report says ``pre_listing`` / ``delisted``. On the first (last) day of a trading
period, the bars before the first (after the last) bar present are not gaps either: once REST has
confirmed it has none (or was not asked), their row in kline_gaps carries the reason ``pre_listing``
(``delisted``), so silver/kline_gaps still says where bars are absent, and why.

Pure Polars/Python, no Dagster and no network: the REST side is any object with the
``KlineFetcher`` shape (see ``klines.rest.RestKlinesClient``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

import polars as pl

from lakehouse_assets.instruments import Instrument, instrument_frame
from lakehouse_assets.klines.completeness import missing_ranges
from lakehouse_assets.klines.schema import SILVER_KLINES_SCHEMA, empty_klines, interval_to_timedelta
from lakehouse_assets.universe.lifecycle import DELISTED, EXPECTED, PRE_LISTING, DailyUniverse, edge_reason

KEY_COLUMNS = ["market", "symbol", "interval", "open_time"]
SOURCE_ARCHIVE = "archive"
SOURCE_REST = "rest"

REASON_NO_DATA = "exchange returned no data"
REASON_DISABLED = "not fetched: REST gap-fill disabled"
FETCH_FAILED = "fetch failed: "
#: Bars of a listing (delisting) day before (after) trading: absent, but no gap (see module docstring).
REASON_PRE_LISTING = PRE_LISTING
REASON_DELISTED = DELISTED
NOT_TRADING_REASONS = (REASON_PRE_LISTING, REASON_DELISTED)

_UTC_MS = pl.Datetime("ms", "UTC")
_DAY = timedelta(days=1)
_MS = timedelta(milliseconds=1)

KLINE_GAPS_SCHEMA: dict[str, pl.DataType] = {
    "market": pl.String(),
    "symbol": pl.String(),
    "interval": pl.String(),
    "gap_start": _UTC_MS,  # open_time of the first missing bar
    "gap_end": _UTC_MS,  # exclusive: open_time of the first bar after the gap
    "bars": pl.Int64(),
    "minutes": pl.Int64(),
    "reason": pl.String(),
}

FILL_REPORT_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "market": pl.String(),
    "symbol": pl.String(),
    "expected": pl.Int64(),  # closed bars of the day (fewer than 1440 only for the running day)
    "rows": pl.Int64(),
    "archive_rows": pl.Int64(),
    "rest_rows": pl.Int64(),
    "missing": pl.Int64(),
    "gaps": pl.Int64(),
    "completeness": pl.Float64(),
    "status": pl.String(),  # expected | pre_listing | delisted
    "not_trading": pl.Int64(),  # bars of a listing/delisting day outside trading (not counted in expected)
}

# Columns an OHLCV-only REST source (ccxt fetch_ohlcv on a non-Binance exchange) cannot provide.
UNKNOWN_WITHOUT_FULL_KLINES = (
    "quote_volume",
    "trade_count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "contract_volume",
    "taker_buy_contract_volume",
)


@dataclass(frozen=True)
class Hole:
    """Bars missing for one instrument inside one UTC day: ``[start, end)`` on the bar grid."""

    instrument: Instrument
    start: datetime
    end: datetime

    def bars(self, step: timedelta) -> int:
        return (self.end - self.start) // step


@dataclass(frozen=True)
class FetchWindow:
    """One REST request sequence: ``[start, end)`` for one instrument, covering ``holes``."""

    instrument: Instrument
    start: datetime
    end: datetime
    holes: tuple[Hole, ...]


@dataclass
class FetchOutcome:
    """What a fetcher returns for one window.

    ``covered_until``: the exchange was successfully asked about every bar before this time (the
    window end when nothing failed), so a bar missing before it is one the exchange does not have.
    ``error`` is set when fetching stopped early; rows fetched before the failure are kept (none
    when the source contradicted itself: conflicting copies of a candle fail the whole window).
    ``duplicates_dropped``: identical repeated copies of a candle the source sent, dropped.
    """

    frame: pl.DataFrame
    requests: int = 0
    retries: int = 0
    covered_until: datetime | None = None
    error: str | None = None
    duplicates_dropped: int = 0


class KlineFetcher(Protocol):
    def fetch(self, instrument: Instrument, interval: str, start: datetime, end: datetime) -> FetchOutcome: ...


@dataclass
class FillResult:
    frame: pl.DataFrame  # silver schema, archive + rest rows, sorted and unique
    gaps: pl.DataFrame  # KLINE_GAPS_SCHEMA
    report: pl.DataFrame  # FILL_REPORT_SCHEMA, one row per instrument-day
    windows: list[FetchWindow] = field(default_factory=list)
    outcomes: list[FetchOutcome] = field(default_factory=list)
    kept_rows: int = 0  # stored bars kept where REST could not answer (see keep_stored_rows)

    @property
    def rest_requests(self) -> int:
        return sum(o.requests for o in self.outcomes)

    @property
    def rest_retries(self) -> int:
        return sum(o.retries for o in self.outcomes)

    @property
    def rest_duplicates_dropped(self) -> int:
        return sum(o.duplicates_dropped for o in self.outcomes)


# ---------------------------------------------------------------------------------------------
# time helpers


def closed_until(now: datetime, step: timedelta) -> datetime:
    """Bars opening before the returned time have closed at ``now`` (``open_time + step <= now``)."""
    now = _aware(now)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((now - epoch) // step) * step


def day_window(day: date, step: timedelta, now: datetime) -> tuple[datetime, datetime]:
    """The bars a day is expected to hold: ``[midnight, min(next midnight, closed_until(now)))``."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = min(start + _DAY, closed_until(now, step))
    return start, max(start, end)


# ---------------------------------------------------------------------------------------------
# holes and fetch planning


def find_holes(
    frame: pl.DataFrame,
    *,
    instruments: Sequence[Instrument],
    days: Sequence[date],
    interval: str,
    now: datetime,
    lifecycle: DailyUniverse | None = None,
) -> list[Hole]:
    """Every run of missing closed bars, per instrument and day, in (instrument, time) order; days
    ``lifecycle`` says the instrument did not trade have none."""
    step = interval_to_timedelta(interval)
    by_key = _open_times_by_instrument(frame, interval)
    empty = pl.Series("open_time", [], dtype=_UTC_MS)
    holes: list[Hole] = []
    for instrument in dict.fromkeys(instruments):
        open_times = by_key.get((instrument.market, instrument.symbol), empty)
        for day in sorted(set(days)):
            if lifecycle is not None and not lifecycle.is_expected(instrument, day):
                continue
            start, end = day_window(day, step, now)
            for first, last in missing_ranges(open_times, start, end, step):
                holes.append(Hole(instrument, first, last + step))
    return holes


def plan_fetch_windows(holes: Sequence[Hole], *, interval: str, page_limit: int) -> list[FetchWindow]:
    """Group holes into request windows without ever costing an extra request.

    Two neighbouring holes of one instrument share a window when fetching their combined span
    takes no more pages than fetching them apart (``pages(a ∪ b) <= pages(a) + pages(b)``): many
    small holes in a day become one request, a missing day and the morning after it one paginated
    run. Bars in between that the archive already has are fetched too but discarded (archive wins).
    """
    if page_limit < 1:
        raise ValueError(f"page_limit must be >= 1, got {page_limit}")
    step = interval_to_timedelta(interval)

    def pages(start: datetime, end: datetime) -> int:
        return -(-((end - start) // step) // page_limit)

    windows: list[FetchWindow] = []
    for hole in sorted(holes, key=lambda h: (h.instrument, h.start)):
        last = windows[-1] if windows else None
        if (
            last is not None
            and last.instrument == hole.instrument
            and pages(last.start, hole.end) <= pages(last.start, last.end) + pages(hole.start, hole.end)
        ):
            windows[-1] = FetchWindow(hole.instrument, last.start, hole.end, (*last.holes, hole))
        else:
            windows.append(FetchWindow(hole.instrument, hole.start, hole.end, (hole,)))
    return windows


# ---------------------------------------------------------------------------------------------
# merging


def merge_archive_and_rest(
    archive: pl.DataFrame,
    rest: pl.DataFrame,
    *,
    days: Sequence[date],
    interval: str,
    now: datetime,
) -> pl.DataFrame:
    """Archive rows plus the REST rows for bars the archive lacks, restricted to ``days`` and to
    closed bars; sorted and unique per (market, symbol, interval, open_time)."""
    step = interval_to_timedelta(interval)
    cutoff = closed_until(now, step)
    columns = list(SILVER_KLINES_SCHEMA)
    archive = archive.select(columns).with_columns(source=pl.lit(SOURCE_ARCHIVE))
    rest = rest.select(columns).with_columns(source=pl.lit(SOURCE_REST))
    rest = rest.unique(subset=KEY_COLUMNS, keep="first", maintain_order=True).join(
        archive.select(KEY_COLUMNS), on=KEY_COLUMNS, how="anti"
    )
    merged = pl.concat([archive, rest], how="vertical")
    return (
        merged.filter(
            pl.col("interval") == interval,
            pl.col("open_time") < cutoff,
            pl.col("open_time").dt.date().is_in(list(days)),
        )
        .unique(subset=KEY_COLUMNS, keep="first", maintain_order=True)
        .sort(KEY_COLUMNS)
    )


# ---------------------------------------------------------------------------------------------
# the whole fill


def fill_gaps(
    archive: pl.DataFrame,
    *,
    instruments: Sequence[Instrument],
    days: Sequence[date],
    interval: str,
    now: datetime,
    fetcher: KlineFetcher | None,
    page_limit: int,
    stored: pl.DataFrame | None = None,
    lifecycle: DailyUniverse | None = None,
) -> FillResult:
    """Complete ``archive`` (silver rows) from ``fetcher`` and report what is still missing and why.

    ``fetcher=None`` means REST filling is switched off: holes are only reported. Exceptions the
    fetcher raises (e.g. a geo-block, which no retry will fix) propagate unchanged.

    ``stored`` is what the lake already holds for these days (silver/klines_filled rows, with
    ``source``). Where REST could not answer (fetch failed, or not asked), the stored rows for those
    bars are kept: a re-run during an outage never loses bars an earlier run filled. Where the
    sources did answer, they decide, so a bar the exchange says it does not have is not kept.

    ``lifecycle``: which days each instrument traded (None: every day); see the module docstring.
    """
    step = interval_to_timedelta(interval)
    wanted = _restrict(archive, instruments, interval)
    holes = find_holes(wanted, instruments=instruments, days=days, interval=interval, now=now, lifecycle=lifecycle)
    windows = plan_fetch_windows(holes, interval=interval, page_limit=page_limit) if fetcher else []
    outcomes = [fetcher.fetch(w.instrument, interval, w.start, w.end) for w in windows] if fetcher else []

    rest_frames = [o.frame for o in outcomes if o.frame.height]
    rest = pl.concat(rest_frames, how="vertical") if rest_frames else empty_klines()
    merged = merge_archive_and_rest(wanted, rest, days=days, interval=interval, now=now)

    remaining = find_holes(merged, instruments=instruments, days=days, interval=interval, now=now, lifecycle=lifecycle)
    gaps = _gaps_frame(remaining, step, interval, lambda hole: _reason(hole, windows, outcomes, fetcher is not None))
    kept = 0
    if stored is not None and not stored.is_empty():
        merged, gaps, kept = keep_stored_rows(
            merged, gaps, stored, instruments=instruments, days=days, interval=interval, now=now, lifecycle=lifecycle
        )
    if lifecycle is not None:
        gaps = label_period_edges(gaps, lifecycle, interval=interval, now=now)
    report = fill_report(merged, gaps, instruments=instruments, days=days, interval=interval, now=now, lifecycle=lifecycle)
    return FillResult(frame=merged, gaps=gaps, report=report, windows=windows, outcomes=outcomes, kept_rows=kept)


def keep_stored_rows(
    merged: pl.DataFrame,
    gaps: pl.DataFrame,
    stored: pl.DataFrame,
    *,
    instruments: Sequence[Instrument],
    days: Sequence[date],
    interval: str,
    now: datetime,
    lifecycle: DailyUniverse | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Put back stored bars inside the gaps no source could rule on; returns (frame, gaps, bars kept).

    Only gaps whose reason is not "exchange returned no data" qualify: there REST failed or was not
    asked, so the fresh run knows nothing better than what an earlier run stored. What is still
    missing afterwards keeps the reason of the gap it lies in.
    """
    unresolved = gaps.filter(pl.col("reason") != REASON_NO_DATA)
    if unresolved.is_empty():
        return merged, gaps, 0
    keys = ["market", "symbol", "interval"]
    carried = (
        stored.select(list(SILVER_KLINES_SCHEMA))
        .join(unresolved.select(*keys, "gap_start", "gap_end"), on=keys, how="inner")
        .filter(pl.col("open_time") >= pl.col("gap_start"), pl.col("open_time") < pl.col("gap_end"))
        .select(merged.columns)
        .unique(subset=KEY_COLUMNS, keep="first", maintain_order=True)
    )
    if carried.is_empty():
        return merged, gaps, 0
    frame = pl.concat([merged, carried.cast(merged.schema)], how="vertical").sort(KEY_COLUMNS)
    step = interval_to_timedelta(interval)
    old = list(gaps.iter_rows(named=True))

    def reason_of(hole: Hole) -> str:
        for gap in old:
            if (gap["market"], gap["symbol"]) == (hole.instrument.market, hole.instrument.symbol) and (
                gap["gap_start"] <= hole.start < gap["gap_end"]
            ):
                return str(gap["reason"])
        return REASON_NO_DATA  # unreachable: keeping rows only ever shrinks existing gaps

    remaining = find_holes(frame, instruments=instruments, days=days, interval=interval, now=now, lifecycle=lifecycle)
    return frame, _gaps_frame(remaining, step, interval, reason_of), carried.height


def label_period_edges(gaps: pl.DataFrame, lifecycle: DailyUniverse, *, interval: str, now: datetime) -> pl.DataFrame:
    """Give the edge holes of a listing/delisting day their reason (``lifecycle.edge_reason``).

    Only holes no source could fill qualify: "exchange returned no data" (REST confirmed it) or "REST
    gap-fill disabled" (the archive is the only source, as in silver/klines' completeness). A failed
    fetch keeps its reason: nobody knows yet whether those bars exist.
    """
    if gaps.is_empty():
        return gaps
    step = interval_to_timedelta(interval)

    def reason(row: dict) -> str:
        if row["reason"] not in (REASON_NO_DATA, REASON_DISABLED):
            return str(row["reason"])
        instrument = Instrument(row["market"], row["symbol"])
        day = row["gap_start"].date()
        start, end = day_window(day, step, now)
        edge = edge_reason(*lifecycle.period_edges(instrument, day), row["gap_start"], row["gap_end"], start, end)
        return edge or str(row["reason"])

    return gaps.with_columns(reason=pl.Series("reason", [reason(r) for r in gaps.iter_rows(named=True)], pl.String()))


def real_gaps(gaps: pl.DataFrame) -> pl.DataFrame:
    """The gaps of silver/kline_gaps that are missing data: without the listing/delisting day edges."""
    return gaps.filter(~pl.col("reason").is_in(NOT_TRADING_REASONS))


def fill_report(
    frame: pl.DataFrame,
    gaps: pl.DataFrame,
    *,
    instruments: Sequence[Instrument],
    days: Sequence[date],
    interval: str,
    now: datetime,
    lifecycle: DailyUniverse | None = None,
) -> pl.DataFrame:
    """One row per requested instrument-day: expected closed bars, rows by source, missing bars.

    A day the instrument did not trade (``lifecycle``) expects nothing and says why in ``status``; the
    edge bars of a listing/delisting day (gaps with reason pre_listing/delisted) are ``not_trading``,
    neither expected nor missing.
    """
    step = interval_to_timedelta(interval)
    counts = (
        frame.group_by("market", "symbol", pl.col("open_time").dt.date().alias("date"))
        .agg(
            rows=pl.len().cast(pl.Int64),
            archive_rows=(pl.col("source") == SOURCE_ARCHIVE).sum().cast(pl.Int64),
            rest_rows=(pl.col("source") == SOURCE_REST).sum().cast(pl.Int64),
        )
    )
    edge = pl.col("reason").is_in(NOT_TRADING_REASONS)
    missing = gaps.group_by("market", "symbol", pl.col("gap_start").dt.date().alias("date")).agg(
        missing=pl.col("bars").filter(~edge).sum().cast(pl.Int64),
        gaps=(~edge).sum().cast(pl.Int64),
        not_trading=pl.col("bars").filter(edge).sum().cast(pl.Int64),
    )

    def status(inst: Instrument, day: date) -> str:
        return EXPECTED if lifecycle is None else lifecycle.status_of(inst, day)

    grid = pl.DataFrame(
        [
            (day, inst.market, inst.symbol, _expected(day, step, now) if status(inst, day) == EXPECTED else 0,
             status(inst, day))
            for inst in dict.fromkeys(instruments)
            for day in sorted(set(days))
        ],
        schema={"date": pl.Date(), "market": pl.String(), "symbol": pl.String(), "expected": pl.Int64(),
                "status": pl.String()},
        orient="row",
    )  # fmt: skip
    keys = ["date", "market", "symbol"]
    report = (
        grid.join(counts, on=keys, how="left")
        .join(missing, on=keys, how="left")
        .with_columns(pl.col("rows", "archive_rows", "rest_rows", "missing", "gaps", "not_trading").fill_null(0))
        .with_columns(expected=pl.col("expected") - pl.col("not_trading"))
        .with_columns(
            completeness=pl.when(pl.col("expected") > 0)
            .then(1 - pl.col("missing") / pl.col("expected"))
            .otherwise(1.0)
        )
    )
    return report.select(list(FILL_REPORT_SCHEMA)).cast(FILL_REPORT_SCHEMA).sort("date", "market", "symbol")


def validation_view(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame the silver quality rules are run on.

    REST rows from an OHLCV-only source (every column in ``UNKNOWN_WITHOUT_FULL_KLINES`` null)
    carry unknown, not zero, volumes; they stay null in the table. For validation only, those
    unknowns are set to values that satisfy the volume rules (0, or for COIN-M the contract
    columns 0), so the rules still check everything that *is* known (prices, OHLC order, volume,
    time grid, key uniqueness). Archive rows, and REST rows with partial nulls, are never touched,
    so a null there still fails the schema check.
    """
    unknown = pl.all_horizontal(
        [pl.col(c).is_null() for c in UNKNOWN_WITHOUT_FULL_KLINES if c in frame.columns]
    ) & (pl.col("source") == SOURCE_REST)
    cm = pl.col("market") == "cm"
    fills = {
        "quote_volume": pl.lit(0.0),
        "trade_count": pl.lit(0, dtype=pl.Int64),
        "taker_buy_volume": pl.lit(0.0),
        "taker_buy_quote_volume": pl.lit(0.0),
        "contract_volume": pl.when(cm).then(pl.lit(0.0)).otherwise(pl.lit(None, dtype=pl.Float64)),
        "taker_buy_contract_volume": pl.when(cm).then(pl.lit(0.0)).otherwise(pl.lit(None, dtype=pl.Float64)),
    }
    return frame.with_columns(
        [pl.when(unknown).then(expr).otherwise(pl.col(name)).alias(name) for name, expr in fills.items() if name in frame.columns]
    )


# ---------------------------------------------------------------------------------------------
# internals


def _restrict(frame: pl.DataFrame, instruments: Sequence[Instrument], interval: str) -> pl.DataFrame:
    if frame.is_empty():
        return empty_klines()
    keys = instrument_frame(instruments)
    return (
        frame.select(list(SILVER_KLINES_SCHEMA))
        .filter(pl.col("interval") == interval)
        .join(keys, on=["market", "symbol"], how="semi")
    )


def _open_times_by_instrument(frame: pl.DataFrame, interval: str) -> dict[tuple[str, str], pl.Series]:
    if frame.is_empty():
        return {}
    scoped = frame.filter(pl.col("interval") == interval).select("market", "symbol", "open_time")
    return {
        (str(key[0]), str(key[1])): part["open_time"]
        for key, part in scoped.partition_by(["market", "symbol"], as_dict=True).items()
    }


def _reason(hole: Hole, windows: list[FetchWindow], outcomes: list[FetchOutcome], enabled: bool) -> str:
    if not enabled:
        return REASON_DISABLED
    for window, outcome in zip(windows, outcomes, strict=True):
        if window.instrument == hole.instrument and window.start <= hole.start and hole.end <= window.end:
            covered = outcome.covered_until if outcome.covered_until is not None else window.end
            if outcome.error is not None and hole.end > covered:
                return FETCH_FAILED + outcome.error
            return REASON_NO_DATA
    # A hole no window covered cannot happen (every hole was planned); say so rather than guess.
    return "not fetched: no REST window covered this gap"


def _gaps_frame(holes: list[Hole], step: timedelta, interval: str, reason_of: object) -> pl.DataFrame:
    assert callable(reason_of)
    rows = [
        (
            h.instrument.market,
            h.instrument.symbol,
            interval,
            h.start,
            h.end,
            h.bars(step),
            (h.end - h.start) // timedelta(minutes=1),
            reason_of(h),
        )
        for h in holes
    ]
    return pl.DataFrame(rows, schema=KLINE_GAPS_SCHEMA, orient="row")


def _expected(day: date, step: timedelta, now: datetime) -> int:
    start, end = day_window(day, step, now)
    return (end - start) // step


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
