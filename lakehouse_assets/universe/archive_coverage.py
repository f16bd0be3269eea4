"""Which days the Binance archive holds 1m klines for, per instrument, read from the bucket listing.

This is the archive half of ``silver/instruments``: it finds every symbol the archive knows (delisted
ones included, which ``exchangeInfo`` no longer lists) and the days each one has files for. The
answer is a frame of contiguous day runs (:data:`COVERAGE_SCHEMA`); turning runs into trading periods
(and a pause into a delisting) is ``instruments_table.py``'s job.

How it keeps the listing affordable on the real bucket (thousands of spot symbols, years each):

* Only the markets the universe names are listed.
* Per symbol, the **monthly** 1m directory is listed (one page: 12 zips + 12 CHECKSUMs a year), and
  daily files only for the months where exact days matter: the first and last month of every run of
  consecutive monthly files, short holes between runs (up to :data:`HOLE_MONTHS` months without a
  monthly file: Binance sometimes misses one, and the daily files then show the symbol kept
  trading), and the two newest months (the running month, and the one whose monthly file may not be
  published yet). Each such month is one prefix listing (``.../BTCUSDT-1m-2020-01-``). Listing every
  daily file instead would move about ten times the keys for a symbol with six years of history
  (4,400 daily keys against ~400).
* A month with a monthly file and no daily file listed (or none published) counts as a whole month,
  clamped to yesterday: the monthly file says the symbol traded that month, not on which days.
* A symbol without monthly files (a new listing, or a directory Binance never rolled up) has its
  whole daily directory listed: it is short by construction, or it is all there is.
* Symbols are listed in parallel (``max_workers`` threads): ``ArchiveListing`` fetches through
  ``ArchiveClient``, which keeps one HTTP session per thread, and a ``file://`` mirror is only read.

What this cannot see: a pause of a couple of weeks inside months that all have a monthly file (no
daily listing there). Such a pause splits no period; a delisting of a month or more always shows.

Any :class:`~lakehouse_assets.archive.listing.ListingError` propagates (it names the redacted URL):
a half-listed archive must never look like a shorter one. No Dagster here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Final, TypeVar

import polars as pl

from lakehouse_assets.archive.listing import ArchiveListing

__all__ = [
    "COVERAGE_SCHEMA",
    "HOLE_MONTHS",
    "Coverage",
    "archive_coverage",
    "coverage_runs",
    "month_end",
    "months_to_list_daily",
]

#: One row per contiguous run of covered days (both ends included).
COVERAGE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "market": pl.String(),
    "symbol": pl.String(),
    "first_day": pl.Date(),
    "last_day": pl.Date(),
}
#: A hole of at most this many months without a monthly file between two runs is listed day by day.
HOLE_MONTHS: Final = 2
INTERVAL: Final = "1m"

T = TypeVar("T")


@dataclass
class Coverage:
    """What the listing found: covered day runs, and how much listing it took."""

    frame: pl.DataFrame
    symbols: dict[str, int] = field(default_factory=dict)  # per market: symbols with 1m files
    list_calls: int = 0  # listing calls (each follows every page of its prefix)
    months_listed_daily: int = 0  # month prefixes listed day by day


def month_end(month: date) -> date:
    """The last day of ``month`` (any day of it)."""
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return following - timedelta(days=1)


def _month(day: date) -> date:
    return day.replace(day=1)


def _next_month(month: date) -> date:
    return month_end(month) + timedelta(days=1)


def _previous_month(month: date) -> date:
    return _month(month - timedelta(days=1))


def _months_between(a: date, b: date) -> int:
    """Whole months from month ``a`` to month ``b`` (b after a): 1 for consecutive months."""
    return (b.year - a.year) * 12 + b.month - a.month


def months_to_list_daily(monthly: Sequence[date], yesterday: date) -> list[date]:
    """Which months need their daily files listed, given the months that have a monthly file.

    Run boundaries give exact first/last days; short holes tell a missed monthly file from a pause; the
    two newest months may have daily files and no monthly file yet.
    """
    months = sorted(set(monthly))
    wanted: set[date] = set()
    for i, month in enumerate(months):
        previous = months[i - 1] if i else None
        following = months[i + 1] if i + 1 < len(months) else None
        if previous is None or _months_between(previous, month) > 1:
            wanted.add(month)  # a run starts
            if previous is not None and _months_between(previous, month) - 1 <= HOLE_MONTHS:
                hole = _next_month(previous)
                while hole < month:
                    wanted.add(hole)
                    hole = _next_month(hole)
        if following is None or _months_between(month, following) > 1:
            wanted.add(month)  # a run ends
    newest = _month(yesterday)
    wanted |= {newest, _previous_month(newest)}
    return sorted(m for m in wanted if m <= newest)


def coverage_runs(intervals: Iterable[tuple[date, date]]) -> list[tuple[date, date]]:
    """Overlapping or adjacent day intervals merged into contiguous runs, oldest first."""
    runs: list[tuple[date, date]] = []
    for first, last in sorted(intervals):
        if runs and first <= runs[-1][1] + timedelta(days=1):
            if last > runs[-1][1]:
                runs[-1] = (runs[-1][0], last)
        else:
            runs.append((first, last))
    return runs


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.months = 0

    def add(self, calls: int = 1, months: int = 0) -> None:
        with self._lock:
            self.calls += calls
            self.months += months


def _month_days(listing: ArchiveListing, market: str, symbol: str, month: date) -> list[date]:
    """The days of ``month`` with a daily 1m zip (one prefix listing: ``.../BTCUSDT-1m-2020-01-``)."""
    files = listing.kline_files(market, symbol, INTERVAL, "daily", within=f"{month:%Y-%m}-")
    return [f.day for f in files if f.day.replace(day=1) == month]


def _symbol_intervals(
    listing: ArchiveListing,
    market: str,
    symbol: str,
    *,
    has_monthly: bool,
    has_daily: bool,
    yesterday: date,
    counter: _Counter,
) -> list[tuple[date, date]]:
    monthly: list[date] = []
    if has_monthly:
        monthly = [f.day for f in listing.kline_files(market, symbol, INTERVAL, "monthly")]
        counter.add()
    if not monthly:
        if not has_daily:
            return []
        days = [f.day for f in listing.kline_files(market, symbol, INTERVAL, "daily")]
        counter.add()
        return [(d, d) for d in days if d <= yesterday]
    daily: dict[date, list[date]] = {}
    if has_daily:
        for month in months_to_list_daily(monthly, yesterday):
            daily[month] = _month_days(listing, market, symbol, month)
            counter.add(months=1)
    intervals: list[tuple[date, date]] = []
    for month in sorted(set(monthly)):
        if month > yesterday:
            continue
        days = daily.get(month)
        if days:
            intervals.extend((d, d) for d in days if d <= yesterday)
        else:
            intervals.append((month, min(month_end(month), yesterday)))
    for month, days in daily.items():
        if month not in monthly:
            intervals.extend((d, d) for d in days if d <= yesterday)
    return intervals


def _parallel(tasks: Sequence[Callable[[], T]], max_workers: int) -> list[T]:
    """Run ``tasks`` on a thread pool; the first error cancels what has not started and is raised."""
    if not tasks:
        return []
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="listing") as pool:
        futures = [pool.submit(task) for task in tasks]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            for future in futures:
                future.cancel()
            raise failed.exception()  # type: ignore[misc]
        return [f.result() for f in futures]


def archive_coverage(listing: ArchiveListing, markets: Sequence[str], *, today: date, max_workers: int = 8) -> Coverage:
    """The day runs the archive covers with 1m klines, for every symbol of ``markets`` (module docstring)."""
    yesterday = today - timedelta(days=1)
    counter = _Counter()
    markets = list(dict.fromkeys(markets))

    def symbol_sets(market: str) -> tuple[set[str], set[str]]:
        daily = set(listing.symbols(market, "klines", "daily"))
        monthly = set(listing.symbols(market, "klines", "monthly"))
        counter.add(2)
        return daily, monthly

    sets = dict(zip(markets, _parallel([lambda m=m: symbol_sets(m) for m in markets], max_workers), strict=True))
    jobs: list[tuple[str, str]] = [(m, s) for m in markets for s in sorted(sets[m][0] | sets[m][1])]

    def one(market: str, symbol: str) -> list[tuple[date, date]]:
        daily, monthly = sets[market]
        return _symbol_intervals(
            listing, market, symbol,
            has_monthly=symbol in monthly, has_daily=symbol in daily, yesterday=yesterday, counter=counter,
        )  # fmt: skip

    found = _parallel([lambda m=m, s=s: one(m, s) for m, s in jobs], max_workers)
    rows = [
        (market, symbol, first, last)
        for (market, symbol), intervals in zip(jobs, found, strict=True)
        for first, last in coverage_runs(intervals)
    ]
    frame = pl.DataFrame(rows, schema=COVERAGE_SCHEMA, orient="row")
    per_market = {m: frame.filter(pl.col("market") == m)["symbol"].n_unique() for m in markets}
    return Coverage(frame, per_market, counter.calls, counter.months)
