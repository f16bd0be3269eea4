"""``silver/instruments``: one row per instrument and validity period, from exchangeInfo answers and the archive listing.

Two sources, each blind where the other sees:

* ``exchangeInfo`` (``snapshot_history.py``) says what Binance lists *now* (and on each day an answer
  was stored): base/quote, contract type and size, tick and lot size, status, onboard/delivery dates.
  It forgets delisted symbols.
* The archive listing (``archive_coverage.py``) remembers every symbol that ever had a file, and on
  which days, but says nothing about the instrument itself.

How the periods are derived (README "silver/instruments"):

1. **Trading periods come from the archive.** The covered days of an instrument are merged into
   periods; a run of at least ``relist_gap_days`` consecutive days without a file ends one. Shorter
   holes are not delistings: Binance misses single daily files (e.g. COIN-M BTCUSD_PERP 2020-11-02..06)
   and publishes them late. A longer hole is not a delisting either when an answer taken during it
   lists the symbol ``TRADING``: the archive missed files, the exchange kept trading.
2. **Where a period ends.** A period followed by another ends the day after its last file
   (``valid_to`` is exclusive). The last period: still open (``valid_to`` null) when the newest answer
   of its market lists the symbol in an open status; closed the day after its last file when that
   status is closed (:data:`CLOSED_STATUSES`: spot ``BREAK``, futures ``SETTLING``/``CLOSE``/
   ``DELIVERED``) or when the newest answer does not list it at all (**delisted**: status ``DELISTED``,
   ``delist_date`` = last archive day + 1). Without any answer for the market (or for files newer than
   the newest answer) the archive decides alone: open while its last file is less than
   ``relist_gap_days`` days before yesterday, status ``TRADING`` (inferred, ``source`` tells). A
   delivery contract whose delivery day has passed ends the day after it (status ``DELIVERED``), even
   when the newest answer was taken before the delivery.
3. **Instruments without any archive file** start at their onboard date (futures) or at the first
   answer listing them (spot answers carry no onboard date), ``source`` ``exchange_info``. One that
   is listed in a closed status gets a single empty row (``valid_to`` = ``valid_from``): known to the
   exchange, never expected. One that vanished from the answers ends the day after the last answer
   listing it.
4. **Attribute changes split a period (SCD type 2).** When an answer differs from the previous one
   in any of :data:`~lakehouse_assets.universe.snapshot_history.ATTRIBUTES` (status, tick, lot,
   contract size, ...), a new row starts on the UTC day of that answer; the rows of a period are
   contiguous. Each row carries the attributes of the answer taken during it, or else the one nearest
   in time (history before the first stored answer takes the first answer's attributes). The last row
   of a closed period carries the status Binance gave after the archive stopped (e.g. ``BREAK``), or
   ``DELISTED``. ``first_archive_day``/``last_archive_day``/``delist_date`` describe the period.
5. **Archive-only instruments** (delisted before any stored answer) have null base/quote/sizes;
   ``kind`` follows Binance's naming (``spot`` market; a ``_YYMMDD`` suffix is a delivery contract,
   anything else on um/cm a perpetual).

Never shrink (the lake's "never lose data" rule): the stored table is an input. Its archive days are
merged into the new listing's (a file Binance removed, or a listing that omits it, never shortens a
period), and an instrument the new sources do not mention at all keeps its stored rows unchanged.

Pure module: no I/O, no Dagster.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final

import polars as pl

from lakehouse_assets.universe.archive_coverage import coverage_runs
from lakehouse_assets.universe.snapshot_history import ATTRIBUTES, HISTORY_SCHEMA

__all__ = [
    "CLOSED_STATUSES",
    "DEFAULT_RELIST_GAP_DAYS",
    "DELISTED",
    "KINDS",
    "SCHEMA",
    "SOURCES",
    "SOURCE_ARCHIVE",
    "SOURCE_BOTH",
    "SOURCE_EXCHANGE",
    "TRADING",
    "InstrumentsBuild",
    "build_instruments",
    "conform",
    "inferred_kind",
]

_UTC_MS = pl.Datetime("ms", "UTC")

#: The agreed columns of silver/instruments, in order.
SCHEMA: Final[dict[str, pl.DataType]] = {
    "market": pl.String(),
    "symbol": pl.String(),
    "base": pl.String(),
    "quote": pl.String(),
    "kind": pl.String(),
    "contract_type": pl.String(),
    "contract_size": pl.Float64(),
    "tick_size": pl.Float64(),
    "lot_size": pl.Float64(),
    "status": pl.String(),
    "onboard_date": _UTC_MS,
    "delivery_date": _UTC_MS,
    "delist_date": pl.Date(),
    "first_archive_day": pl.Date(),
    "last_archive_day": pl.Date(),
    "valid_from": pl.Date(),
    "valid_to": pl.Date(),
    "source": pl.String(),
}
KEY_COLUMNS: Final = ("market", "symbol", "valid_from")
KINDS: Final = ("spot", "perpetual", "delivery")

SOURCE_BOTH: Final = "exchange_info+archive_listing"
SOURCE_ARCHIVE: Final = "archive_listing"
SOURCE_EXCHANGE: Final = "exchange_info"
SOURCES: Final = (SOURCE_BOTH, SOURCE_ARCHIVE, SOURCE_EXCHANGE)

DELISTED: Final = "DELISTED"
#: The status of a delivery contract whose delivery day has passed while the newest answer predates it.
DELIVERED: Final = "DELIVERED"
#: The status of an open period only the archive knows (files up to the last few days).
TRADING: Final = "TRADING"
#: Binance statuses after which an instrument no longer trades (spot BREAK: delisted pairs Binance keeps
#: listing; futures SETTLING/CLOSE: delisting; DELIVERED: a delivery contract after its date).
CLOSED_STATUSES: Final = frozenset({"BREAK", "SETTLING", "CLOSE", "DELIVERED"})
DEFAULT_RELIST_GAP_DAYS: Final = 14

_DELIVERY_SUFFIX = re.compile(r"_\d{6}")
_ONE_DAY = timedelta(days=1)


def inferred_kind(market: str, symbol: str) -> str:
    """Binance's naming: spot is spot; a futures symbol ending in ``_YYMMDD`` delivers, any other is perpetual."""
    if market == "spot":
        return "spot"
    tail = symbol[-7:]
    return "delivery" if _DELIVERY_SUFFIX.fullmatch(tail) else "perpetual"


@dataclass
class InstrumentsBuild:
    """The table, and what the never-shrink rule took from the stored one (``market:SYMBOL`` keys)."""

    table: pl.DataFrame
    kept_from_stored: list[str] = field(default_factory=list)  # stored rows kept unchanged
    extended_from_stored: list[str] = field(default_factory=list)  # archive days the listing no longer shows


@dataclass
class _Run:
    attributes: dict[str, Any]
    seen_from: date
    seen_to: date
    current: bool

    @property
    def status(self) -> str:
        return str(self.attributes["status"])

    @property
    def values(self) -> tuple[Any, ...]:
        return tuple(self.attributes[name] for name in ATTRIBUTES)


@dataclass
class _Period:
    first: date  # first archive day
    last: date  # last archive day


def _as_day(value: datetime | None) -> date | None:
    return None if value is None else value.date()


def _nearest(runs: list[_Run], day: date) -> _Run | None:
    """The answer describing ``day``: one in force that day, else the nearest in time (the later on a tie)."""
    best: tuple[int, int] | None = None
    chosen = None
    for index, run in enumerate(runs):
        if run.seen_from <= day <= run.seen_to:
            distance = 0
        elif run.seen_from > day:
            distance = (run.seen_from - day).days
        else:
            distance = (day - run.seen_to).days
        rank = (distance, -index)
        if best is None or rank < best:
            best, chosen = rank, run
    return chosen


def _trading_during(runs: list[_Run], first: date, last: date) -> bool:
    """Some answer taken in [first, last] lists the symbol TRADING (PENDING_TRADING, shown before a relisting, is not)."""
    return any(r.seen_from <= last and r.seen_to >= first and r.status == TRADING for r in runs)


def _periods(runs_of_days: list[tuple[date, date]], gap_days: int, runs: list[_Run]) -> list[_Period]:
    periods: list[_Period] = []
    for first, last in runs_of_days:
        if periods:
            hole = (first - periods[-1].last).days - 1
            if hole < gap_days or _trading_during(runs, periods[-1].last + _ONE_DAY, first - _ONE_DAY):
                periods[-1].last = last
                continue
        periods.append(_Period(first, last))
    return periods


def _rows_of(valid_from: date, valid_to: date | None, runs: list[_Run]) -> list[tuple[date, date | None, _Run | None]]:
    """[valid_from, valid_to) split where an answer inside it changes an attribute."""
    rows: list[list[Any]] = [[valid_from, _nearest(runs, valid_from)]]
    if valid_to is None or valid_to > valid_from:
        for run in runs:
            inside = run.seen_from > valid_from and (valid_to is None or run.seen_from < valid_to)
            if not inside:
                continue
            current = rows[-1][1]
            if current is None or current.values != run.values:
                rows.append([run.seen_from, run])
    bounds = [row[0] for row in rows[1:]] + [valid_to]
    return [(row[0], end, row[1]) for row, end in zip(rows, bounds, strict=True)]


class _Builder:
    def __init__(self, newest: Mapping[str, date], today: date, gap_days: int) -> None:
        self.newest = newest
        self.today = today
        self.yesterday = today - _ONE_DAY
        self.gap_days = gap_days
        self.rows: list[dict[str, Any]] = []

    def _delivered(self, run: _Run, earliest: date) -> date | None:
        """The day after a delivery date that has passed (a stale answer may still say TRADING), never
        before ``earliest`` (the day after the last archive file, or the start of a period without one)."""
        delivery = _as_day(run.attributes["delivery_date"])
        if delivery is None or delivery >= self.today:
            return None
        return max(delivery + _ONE_DAY, earliest)

    def _row(
        self, market: str, symbol: str, run: _Run | None, *, valid_from: date, valid_to: date | None,
        status: str, source: str, period: _Period | None, delist_date: date | None,
    ) -> None:  # fmt: skip
        attributes = dict(run.attributes) if run is not None else dict.fromkeys(ATTRIBUTES)
        if run is None:
            attributes["kind"] = inferred_kind(market, symbol)
        attributes["status"] = status
        self.rows.append(
            {
                "market": market,
                "symbol": symbol,
                **attributes,
                "delist_date": delist_date,
                "first_archive_day": period.first if period else None,
                "last_archive_day": period.last if period else None,
                "valid_from": valid_from,
                "valid_to": valid_to,
                "source": source,
            }
        )

    def _emit(
        self, market: str, symbol: str, runs: list[_Run], *, valid_from: date, valid_to: date | None,
        final_status: str | None, source: str, period: _Period | None, delist_date: date | None,
    ) -> None:  # fmt: skip
        """The rows of one period; ``final_status`` replaces the status of its last row (a closed period)."""
        rows = _rows_of(valid_from, valid_to, runs)
        for index, (start, end, run) in enumerate(rows):
            status = run.status if run is not None else TRADING
            if index == len(rows) - 1 and final_status is not None:
                status = final_status
            self._row(
                market, symbol, run, valid_from=start, valid_to=end, status=status, source=source,
                period=period, delist_date=delist_date,
            )  # fmt: skip

    def archive_instrument(self, market: str, symbol: str, days: list[tuple[date, date]], runs: list[_Run]) -> None:
        current = next((r for r in runs if r.current), None)
        newest = self.newest.get(market)
        periods = _periods(days, self.gap_days, runs)
        source = SOURCE_BOTH if runs else SOURCE_ARCHIVE
        for index, period in enumerate(periods):
            following = periods[index + 1] if index + 1 < len(periods) else None
            if following is not None:
                valid_to: date | None = period.last + _ONE_DAY
                closed_after = [
                    r for r in runs
                    if r.seen_to >= valid_to and r.seen_from < following.first and r.status in CLOSED_STATUSES
                ]  # fmt: skip
                final: str | None = closed_after[-1].status if closed_after else DELISTED
            elif current is not None:
                closed = current.status in CLOSED_STATUSES
                valid_to = period.last + _ONE_DAY if closed else self._delivered(current, period.last + _ONE_DAY)
                final = current.status if closed else (DELIVERED if valid_to else None)
            elif newest is not None and period.last < newest:
                valid_to, final = period.last + _ONE_DAY, DELISTED  # listed by the archive, gone from exchangeInfo
            elif (self.yesterday - period.last).days < self.gap_days:
                valid_to, final = None, None
            else:
                valid_to, final = period.last + _ONE_DAY, DELISTED
            self._emit(
                market, symbol, runs, valid_from=period.first, valid_to=valid_to, final_status=final,
                source=source, period=period, delist_date=valid_to,
            )  # fmt: skip

    def exchange_instrument(self, market: str, symbol: str, runs: list[_Run]) -> None:
        current = next((r for r in runs if r.current), None)
        reference = current or runs[-1]
        onboard = _as_day(reference.attributes["onboard_date"])
        start = onboard or runs[0].seen_from
        delist: date | None = None
        if current is not None and current.status not in CLOSED_STATUSES:
            valid_to = self._delivered(current, start)
            final, delist = (DELIVERED, valid_to) if valid_to else (None, None)
        elif current is not None:
            valid_to, final = start, current.status  # listed, closed, never seen trading: never expected
        else:
            delist = runs[-1].seen_to + _ONE_DAY
            start = min(start, delist)
            valid_to, final = delist, DELISTED
        self._emit(
            market, symbol, runs, valid_from=start, valid_to=valid_to, final_status=final,
            source=SOURCE_EXCHANGE, period=None, delist_date=delist,
        )  # fmt: skip


def _runs_by_instrument(history: pl.DataFrame) -> dict[tuple[str, str], list[_Run]]:
    grouped: dict[tuple[str, str], list[_Run]] = defaultdict(list)
    for row in history.select(list(HISTORY_SCHEMA)).sort("market", "symbol", "seen_from").iter_rows(named=True):
        attributes = {name: row[name] for name in ATTRIBUTES}
        grouped[(row["market"], row["symbol"])].append(
            _Run(attributes, row["seen_from"], row["seen_to"], row["current"])
        )
    return grouped


def _days_by_instrument(frame: pl.DataFrame, first: str, last: str) -> dict[tuple[str, str], list[tuple[date, date]]]:
    grouped: dict[tuple[str, str], list[tuple[date, date]]] = defaultdict(list)
    rows = frame.filter(pl.col(first).is_not_null() & pl.col(last).is_not_null()).select(
        "market", "symbol", first, last
    )
    for market, symbol, a, b in rows.iter_rows():
        grouped[(market, symbol)].append((a, b))
    return grouped


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with exactly the table's columns, in order and typed (a stored table written earlier)."""
    columns = [
        (pl.col(name) if name in frame.columns else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in SCHEMA.items()
    ]
    return frame.select(columns)


def build_instruments(
    coverage: pl.DataFrame,
    history: pl.DataFrame,
    *,
    newest: Mapping[str, date],
    today: date,
    relist_gap_days: int = DEFAULT_RELIST_GAP_DAYS,
    stored: pl.DataFrame | None = None,
) -> InstrumentsBuild:
    """The instruments table (module docstring), sorted by market, symbol and valid_from.

    ``coverage``: archive day runs (``archive_coverage.COVERAGE_SCHEMA``); ``history``: folded answers
    (``SnapshotHistory.frame()``); ``newest``: the day of the newest answer per market (markets absent:
    no answer, the archive decides alone); ``today``: the UTC day of the build; ``stored``: the table as
    the lake holds it (None: first build).
    """
    if relist_gap_days < 1:
        raise ValueError(f"relist_gap_days must be >= 1, got {relist_gap_days}")
    listed = _days_by_instrument(coverage, "first_day", "last_day")
    runs = _runs_by_instrument(history)
    previous = conform(stored) if stored is not None else pl.DataFrame(schema=SCHEMA)
    stored_days = _days_by_instrument(previous, "first_archive_day", "last_archive_day")

    builder = _Builder(newest, today, relist_gap_days)
    extended: list[str] = []
    keys = sorted(set(listed) | set(runs))
    for market, symbol in keys:
        key = (market, symbol)
        days = coverage_runs(listed.get(key, []))
        merged = coverage_runs(days + stored_days.get(key, []))
        if merged != days:
            extended.append(f"{market}:{symbol}")
        if merged:
            builder.archive_instrument(market, symbol, merged, runs.get(key, []))
        else:
            builder.exchange_instrument(market, symbol, runs[key])

    table = pl.DataFrame(builder.rows, schema=SCHEMA) if builder.rows else pl.DataFrame(schema=SCHEMA)
    built = pl.DataFrame(keys, schema={"market": pl.String(), "symbol": pl.String()}, orient="row")
    kept = previous.join(built, on=["market", "symbol"], how="anti")
    kept_keys = sorted({f"{m}:{s}" for m, s in kept.select("market", "symbol").iter_rows()})
    table = pl.concat([table, kept]).sort(list(KEY_COLUMNS))
    return InstrumentsBuild(table, kept_keys, extended)
