"""Which archive file serves each instrument-day of a run, decided from the bucket listing.

Why: a symbol-year is 365 daily zips (730 requests with their CHECKSUMs) but only 12 monthly zips,
and probing files one by one cannot tell "not published yet" from "never will be". So a run first
lists what the archive holds (once per instrument, see ``list_for_plan``), then plans:

* a closed month (its last day is before today, UTC) whose monthly 1m zip is listed: that one file
  serves every day of the month in the run, and no daily file is requested;
* the running month, or a closed month whose monthly file is not published (yet): the daily zips;
* a file the listing does not hold is never requested. A day without any file is missing (the
  listing does not hold it), unless bronze already holds its file: a listing that forgets a file
  never takes away the stored copy;
* a day whose daily file bronze already holds (stored while its month was running) keeps it beside
  the monthly file: the daily file serves the day (it is the fresher publication) and the two are
  compared downstream.

``plan_klines`` is pure (listing answers, stored paths and today in; a plan out); ``list_for_plan``
asks the listing exactly what the plan needs, instruments in parallel. No Dagster.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TypeVar

from lakehouse_assets.archive.listing import ArchiveListing, KlineFile, Period
from lakehouse_assets.instruments import MARKETS, Instrument

__all__ = [
    "DayPlan",
    "KlinePlan",
    "ListingSnapshot",
    "PlannedFile",
    "list_for_plan",
    "month_is_closed",
    "month_start",
    "monthly_klines_path",
    "plan_klines",
]

#: (instrument, month as "YYYY-MM")
MonthKey = tuple[Instrument, str]

_T = TypeVar("_T")
_R = TypeVar("_R")


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def month_is_closed(day: date, today: date) -> bool:
    """The month of ``day`` is over at ``today`` (UTC): only then can Binance have published its monthly file."""
    return next_month(day) <= today


def monthly_klines_path(instrument: Instrument, interval: str, month: date) -> str:
    """Archive-relative path of a monthly kline zip, exactly as data.binance.vision lays it out."""
    name = f"{instrument.symbol}-{interval}-{month:%Y-%m}.zip"
    return f"{MARKETS[instrument.market]}/monthly/klines/{instrument.symbol}/{interval}/{name}"


@dataclass(frozen=True)
class PlannedFile:
    """One archive file a run needs in bronze: listed (``listed`` holds its entry) or only stored."""

    instrument: Instrument
    period: Period
    path: str  # archive-relative, e.g. data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01.zip
    covers: date  # the day (daily) or the first day of the month (monthly)
    listed: KlineFile | None  # None: the listing does not hold it; only a stored copy can serve

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def label(self) -> str:
        """The period it covers as errors and logs show it: ``2024-01-05`` or ``2024-01``."""
        return self.covers.isoformat() if self.period == "daily" else f"{self.covers:%Y-%m}"


@dataclass(frozen=True)
class DayPlan:
    """The files that hold one instrument-day: its daily file, the monthly file of its month, both, or none."""

    instrument: Instrument
    day: date
    daily: PlannedFile | None
    monthly: PlannedFile | None


@dataclass(frozen=True)
class KlinePlan:
    interval: str
    days: tuple[DayPlan, ...]

    def files(self) -> list[PlannedFile]:
        """Every file of the plan once (a monthly file serves many days), monthly files first."""
        unique: dict[str, PlannedFile] = {}
        for day in self.days:
            for planned in (day.monthly, day.daily):
                if planned is not None:
                    unique.setdefault(planned.path, planned)
        return sorted(unique.values(), key=lambda f: (f.period != "monthly", f.instrument, f.covers))


@dataclass
class ListingSnapshot:
    """What the listing answered during one run: its cache, so nothing is listed twice.

    ``files`` are the listed zips by archive path; ``monthly_listed`` the instruments whose monthly
    directory was listed, ``daily_listed`` the (instrument, month) whose daily files were.
    """

    files: dict[str, KlineFile] = field(default_factory=dict)
    monthly_listed: set[Instrument] = field(default_factory=set)
    daily_listed: set[MonthKey] = field(default_factory=set)
    requests: int = 0  # listing calls made (each may be several pages)


def _unique_needs(needs: Iterable[tuple[Instrument, date]]) -> list[tuple[Instrument, date]]:
    return sorted(set(needs))


def _daily_months(
    needs: list[tuple[Instrument, date]],
    snapshot: ListingSnapshot,
    *,
    today: date,
    stored: Collection[str],
    interval: str,
    monthly_unavailable: Collection[MonthKey],
) -> dict[Instrument, set[str]]:
    """The months whose daily files the plan may use, per instrument (the monthly listing must be in ``snapshot``)."""
    months: dict[Instrument, set[str]] = {}
    for inst, day in needs:
        month = month_start(day)
        key = f"{month:%Y-%m}"
        monthly = monthly_klines_path(inst, interval, month)
        wanted = (
            not month_is_closed(day, today)
            or (inst, key) in monthly_unavailable
            or (monthly not in snapshot.files and monthly not in stored)
            or inst.daily_klines_path(interval, day) in stored
        )
        if wanted:
            months.setdefault(inst, set()).add(key)
    return months


def plan_klines(
    needs: Iterable[tuple[Instrument, date]],
    snapshot: ListingSnapshot,
    *,
    today: date,
    stored: Collection[str] = frozenset(),
    interval: str = "1m",
    monthly_unavailable: Collection[MonthKey] = frozenset(),
) -> KlinePlan:
    """Decide the file(s) of each needed instrument-day (see the module docstring).

    ``stored``: archive-relative paths of the zips bronze already holds. ``monthly_unavailable``:
    months whose monthly file was listed but could not be had (404 when fetched): their days take
    the daily files instead.
    """
    days: list[DayPlan] = []
    for inst, day in _unique_needs(needs):
        month = month_start(day)
        monthly: PlannedFile | None = None
        if month_is_closed(day, today) and (inst, f"{month:%Y-%m}") not in monthly_unavailable:
            path = monthly_klines_path(inst, interval, month)
            listed = snapshot.files.get(path)
            if listed is not None or path in stored:
                monthly = PlannedFile(inst, "monthly", path, month, listed)
        path = inst.daily_klines_path(interval, day)
        listed = snapshot.files.get(path)
        daily: PlannedFile | None = None
        if path in stored or (monthly is None and listed is not None):
            daily = PlannedFile(inst, "daily", path, day, listed)
        days.append(DayPlan(inst, day, daily, monthly))
    return KlinePlan(interval, tuple(days))


def _parallel(fn: Callable[[_T], _R], items: list[_T], max_workers: int) -> list[_R]:
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(items)))) as pool:
        return list(pool.map(fn, items))


def list_for_plan(
    listing: ArchiveListing,
    needs: Iterable[tuple[Instrument, date]],
    *,
    today: date,
    stored: Collection[str] = frozenset(),
    interval: str = "1m",
    max_workers: int = 8,
    monthly_unavailable: Collection[MonthKey] = frozenset(),
    snapshot: ListingSnapshot | None = None,
) -> ListingSnapshot:
    """List what ``plan_klines`` will look at, and nothing else; ``snapshot`` (a cache) is extended in place.

    Per instrument: its monthly directory once (when the run has a closed month), then its daily
    files, only for the months that may use them: one month is listed with that month's prefix (one
    page), several months with the symbol's whole directory (every page followed). A
    :class:`~lakehouse_assets.archive.listing.ListingError` propagates before anything is downloaded.
    """
    snapshot = snapshot if snapshot is not None else ListingSnapshot()
    unique = _unique_needs(needs)

    closed = sorted({inst for inst, day in unique if month_is_closed(day, today)} - snapshot.monthly_listed)

    def monthly_files(inst: Instrument) -> list[KlineFile]:
        return listing.kline_files(inst.market, inst.symbol, interval, "monthly")

    for inst, files in zip(closed, _parallel(monthly_files, closed, max_workers)):
        snapshot.files.update((f.key, f) for f in files)
        snapshot.monthly_listed.add(inst)
        snapshot.requests += 1

    months = _daily_months(
        unique, snapshot, today=today, stored=stored, interval=interval, monthly_unavailable=monthly_unavailable
    )
    jobs = sorted(
        (inst, sorted(todo))
        for inst, wanted in months.items()
        if (todo := {m for m in wanted if (inst, m) not in snapshot.daily_listed})
    )

    def daily_files(job: tuple[Instrument, list[str]]) -> list[KlineFile]:
        inst, todo = job
        within = todo[0] if len(todo) == 1 else ""
        return listing.kline_files(inst.market, inst.symbol, interval, "daily", within=within)

    for (inst, todo), files in zip(jobs, _parallel(daily_files, jobs, max_workers)):
        snapshot.files.update((f.key, f) for f in files)
        snapshot.daily_listed.update((inst, m) for m in todo)
        snapshot.requests += 1
    return snapshot
