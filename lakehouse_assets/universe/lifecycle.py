"""The point-in-time universe: which instruments of ``LAKEHOUSE_SYMBOLS`` are expected on each day, and why not.

Why: a universe spanning years holds symbols that were listed late, delisted, or delisted and listed
again. On a day an instrument did not trade, the archive has no file and the exchange no candle; that
is no gap, no reason to download or to call REST, and no "exchange returned no data". The answer comes
from ``silver/instruments`` (one row per instrument and validity period):

* **expected** on day D iff one of its rows has ``valid_from <= D`` and (``valid_to`` null or
  ``D < valid_to``);
* otherwise **pre_listing** when D lies before its first ``valid_from``, and **delisted** when it lies
  after a period ended, including the days between two periods of a relisted symbol.

Backwards compatible by construction: an exact entry the table does not know (or every entry, when
there is no table) is expected every day, exactly as before the table existed. A pattern cannot be
resolved without the table and is a clear error. Which days a run covers, and what it writes, stays
the caller's business: this module only answers "expected or not, and why".

Pure Polars, no Dagster, no I/O (the table is handed in).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property

import polars as pl

from lakehouse_assets.instruments import MARKETS, Instrument, instrument_frame
from lakehouse_assets.universe.selection import UniverseSpec

__all__ = [
    "DELISTED",
    "EXPECTED",
    "INSTRUMENTS_TABLE",
    "PRE_LISTING",
    "STATUS_SCHEMA",
    "DailyUniverse",
    "UniverseError",
    "daily_universe",
    "edge_reason",
    "resolve_days",
    "resolve_instruments",
    "trading_periods",
]

#: Where the instruments table lives in the lake (slice A2's ``silver/instruments`` asset).
INSTRUMENTS_TABLE = "silver/instruments"

EXPECTED = "expected"
PRE_LISTING = "pre_listing"
DELISTED = "delisted"

STATUS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "market": pl.String(),
    "symbol": pl.String(),
    "status": pl.String(),  # expected | pre_listing | delisted
    "period_start": pl.Boolean(),  # an expected day that is the first day of a trading period
    "period_end": pl.Boolean(),  # an expected day that is the last day of a period that ended
}

#: The columns of silver/instruments this module reads (base/quote only for patterns and !leveraged).
PERIOD_COLUMNS = ("market", "symbol", "valid_from", "valid_to")


class UniverseError(ValueError):
    """The universe cannot be resolved (a pattern without the table, an unusable table); says what to do."""


def _check_table(table: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in PERIOD_COLUMNS if c not in table.columns]
    if missing:
        raise UniverseError(
            f"{INSTRUMENTS_TABLE} lacks column(s) {', '.join(missing)} (has {', '.join(table.columns)}); "
            "re-materialize silver/instruments"
        )
    try:
        periods = table.with_columns(pl.col("valid_from", "valid_to").cast(pl.Date))
    except pl.exceptions.PolarsError as exc:
        raise UniverseError(f"{INSTRUMENTS_TABLE}: valid_from/valid_to are not dates ({exc})") from None
    nulls = periods.filter(pl.col("valid_from").is_null())
    if nulls.height:
        names = ", ".join(f"{m}:{s}" for m, s in nulls.select("market", "symbol").head(5).iter_rows())
        raise UniverseError(f"{INSTRUMENTS_TABLE}: {nulls.height} row(s) without valid_from ({names})")
    return periods.filter(pl.col("market").is_in(list(MARKETS)))


def resolve_instruments(spec: UniverseSpec, table: pl.DataFrame | None) -> list[Instrument]:
    """Every instrument of the universe, whatever the day: exact entries, then pattern matches.

    An exact-only spec needs no table (the form of before). With patterns and no table, or a pattern
    matching nothing, UniverseError says what is wrong (every problem at once).
    """
    if spec.is_exact:
        return spec.exact
    if table is None:
        listed = ", ".join(repr(e.text) for e in spec.patterns)
        raise UniverseError(
            f"the pattern(s) {listed} are resolved against the instruments table, and the lake holds no "
            f"{INSTRUMENTS_TABLE} yet; materialize silver/instruments first (or list the symbols as market:SYMBOL)"
        )
    try:
        return spec.select(_check_table(table))
    except UniverseError:
        raise
    except ValueError as exc:
        raise UniverseError(str(exc)) from None


@dataclass(frozen=True)
class DailyUniverse:
    """Which of ``instruments`` are expected on each of ``days`` (``status``, STATUS_SCHEMA, one row per
    instrument-day in instrument then day order). ``untracked``: instruments the table does not know,
    expected every day."""

    days: tuple[date, ...]
    instruments: tuple[Instrument, ...]
    status: pl.DataFrame
    untracked: tuple[Instrument, ...] = ()

    @cached_property
    def _expected_keys(self) -> frozenset[tuple[str, str, date]]:
        rows = self.status.filter(pl.col("status") == EXPECTED).select("market", "symbol", "date").iter_rows()
        return frozenset((str(m), str(s), d) for m, s, d in rows)

    @cached_property
    def _reasons(self) -> dict[tuple[str, str, date], str]:
        rows = self.status.filter(pl.col("status") != EXPECTED).select("market", "symbol", "date", "status").iter_rows()
        return {(str(m), str(s), d): str(r) for m, s, d, r in rows}

    @cached_property
    def _edges(self) -> dict[tuple[str, str, date], tuple[bool, bool]]:
        edges = self.status.filter(pl.col("period_start") | pl.col("period_end"))
        return {
            (str(m), str(s), d): (bool(a), bool(b))
            for m, s, d, a, b in edges.select("market", "symbol", "date", "period_start", "period_end").iter_rows()
        }

    def is_expected(self, instrument: Instrument, day: date) -> bool:
        return self.status_of(instrument, day) == EXPECTED

    def status_of(self, instrument: Instrument, day: date) -> str:
        """EXPECTED, PRE_LISTING or DELISTED (an instrument or day outside this answer counts as expected)."""
        return self._reasons.get((instrument.market, instrument.symbol, day), EXPECTED)

    def period_edges(self, instrument: Instrument, day: date) -> tuple[bool, bool]:
        """(first day of a trading period, last day of a period that ended) for an expected day."""
        return self._edges.get((instrument.market, instrument.symbol, day), (False, False))

    def expected_on(self, day: date) -> list[Instrument]:
        return [i for i in self.instruments if self.is_expected(i, day)]

    def expected_pairs(self) -> list[tuple[Instrument, date]]:
        """Every expected (instrument, day), day by day, instruments in universe order."""
        return [(i, d) for d in self.days for i in self.instruments if self.is_expected(i, d)]

    @property
    def active(self) -> list[Instrument]:
        """The instruments expected on at least one of the days, in universe order."""
        keys = {(m, s) for m, s, _ in self._expected_keys}
        return [i for i in self.instruments if (i.market, i.symbol) in keys]

    def expected_frame(self) -> pl.DataFrame:
        """(date, market, symbol) of every expected instrument-day: the frame to semi-join a table on."""
        return self.status.filter(pl.col("status") == EXPECTED).select("date", "market", "symbol")

    def not_expected(self) -> pl.DataFrame:
        """(date, market, symbol, reason) of every instrument-day that is not expected."""
        return (
            self.status.filter(pl.col("status") != EXPECTED)
            .select("date", "market", "symbol", pl.col("status").alias("reason"))
        )

    def counts(self) -> dict[str, int]:
        """Instrument-days by status (every status named, 0 when absent)."""
        found = dict(self.status.group_by("status").len().iter_rows())
        return {s: int(found.get(s, 0)) for s in (EXPECTED, PRE_LISTING, DELISTED)}

    def not_expected_ranges(self) -> pl.DataFrame:
        """The not-expected instrument-days as (market, symbol, reason, first_day, last_day, days) runs."""
        frame = self.status.filter(pl.col("status") != EXPECTED)
        if frame.is_empty():
            return pl.DataFrame(
                schema={"market": pl.String(), "symbol": pl.String(), "reason": pl.String(),
                        "first_day": pl.Date(), "last_day": pl.Date(), "days": pl.Int64()}
            )  # fmt: skip
        return (
            frame.sort("market", "symbol", "date")
            .with_columns(
                run=((pl.col("date").diff().dt.total_days() != 1) | (pl.col("status") != pl.col("status").shift()))
                .fill_null(True)
                .cum_sum()
                .over("market", "symbol")
            )
            .group_by("market", "symbol", "run", maintain_order=True)
            .agg(
                reason=pl.col("status").first(),
                first_day=pl.col("date").min(),
                last_day=pl.col("date").max(),
                days=pl.len().cast(pl.Int64),
            )
            .drop("run")
        )

    def restrict(self, instruments: Iterable[Instrument]) -> DailyUniverse:
        """The same answer for a subset of the instruments (a symbol-scoped run), in the subset's order."""
        chosen = list(dict.fromkeys(instruments))
        keep = instrument_frame(chosen)
        status = self.status.join(keep, on=["market", "symbol"], how="semi")
        order = {(i.market, i.symbol): n for n, i in enumerate(chosen)}
        status = _in_order(status, order)
        untracked = tuple(i for i in self.untracked if i in set(chosen))
        return DailyUniverse(self.days, tuple(chosen), status, untracked)


def edge_reason(
    first_day: bool, last_day: bool, hole_start: datetime, hole_end: datetime, window_start: datetime, window_end: datetime
) -> str | None:
    """PRE_LISTING / DELISTED for missing bars at the edge of a trading period, else None.

    On the first day of a period (``first_day``) the bars from the day's start up to the first bar
    present were not traded yet; on the last day of a period that ended (``last_day``) the bars after
    the last bar present were not traded any more. A hole covering the whole window is never an edge:
    a day with no bar at all is a gap (a missing file, an outage), whatever the day.
    """
    if hole_start <= window_start and hole_end >= window_end:
        return None
    if first_day and hole_start <= window_start:
        return PRE_LISTING
    if last_day and hole_end >= window_end:
        return DELISTED
    return None


def _in_order(status: pl.DataFrame, order: dict[tuple[str, str], int]) -> pl.DataFrame:
    if status.is_empty():
        return status
    ranks = pl.DataFrame(
        [(m, s, n) for (m, s), n in order.items()],
        schema={"market": pl.String(), "symbol": pl.String(), "__rank": pl.Int64()},
        orient="row",
    )
    return status.join(ranks, on=["market", "symbol"], how="left").sort("__rank", "date").drop("__rank")


def trading_periods(rows: pl.DataFrame) -> pl.DataFrame:
    """The trading periods of each instrument: its rows merged where one ends the day the next begins.

    silver/instruments starts a new row inside a period when an attribute changes (a new tick size):
    such a row boundary is no listing or delisting, so it must not count as a period's first or last
    day. Rows without a day (``valid_to == valid_from``: known, never traded) are no period.
    """
    never = date(9999, 12, 31)
    keys = ["market", "symbol"]
    open_end = pl.col("valid_to").fill_null(never)
    merged = (
        rows.filter(pl.col("valid_to").is_null() | (pl.col("valid_to") > pl.col("valid_from")))
        .sort(*keys, "valid_from")
        .with_columns(reach=open_end.cum_max().shift(1).over(keys))
        .with_columns(period=(pl.col("reach").is_null() | (pl.col("valid_from") > pl.col("reach"))).cum_sum().over(keys))
        .group_by(*keys, "period")
        .agg(valid_from=pl.col("valid_from").min(), valid_to=open_end.max())
    )
    return merged.select(
        *keys, "valid_from", pl.when(pl.col("valid_to") == never).then(None).otherwise(pl.col("valid_to")).alias("valid_to")
    )


def daily_universe(
    instruments: Sequence[Instrument], table: pl.DataFrame | None, days: Sequence[date]
) -> DailyUniverse:
    """The status of each of ``instruments`` on each of ``days`` according to ``table`` (None: no table,
    every instrument expected every day)."""
    chosen = list(dict.fromkeys(instruments))
    wanted_days = sorted(set(days))
    grid = instrument_frame(chosen).with_columns(__rank=pl.int_range(pl.len(), dtype=pl.Int64)).join(
        pl.DataFrame({"date": wanted_days}, schema={"date": pl.Date()}), how="cross"
    )
    if table is None:
        status = grid.with_columns(
            status=pl.lit(EXPECTED), period_start=pl.lit(False), period_end=pl.lit(False)
        )
        return DailyUniverse(
            tuple(wanted_days), tuple(chosen), status.sort("__rank", "date").select(list(STATUS_SCHEMA)), tuple(chosen)
        )
    rows = _check_table(table).select(PERIOD_COLUMNS)
    firsts = rows.group_by("market", "symbol").agg(first=pl.col("valid_from").min())
    periods = trading_periods(rows)
    day = pl.col("date")
    inside = (pl.col("valid_from") <= day) & (pl.col("valid_to").is_null() | (day < pl.col("valid_to")))
    inside = inside.fill_null(False)
    status = (
        grid.join(firsts, on=["market", "symbol"], how="left")
        .join(periods, on=["market", "symbol"], how="left")
        .group_by("__rank", "market", "symbol", "date")
        .agg(
            known=pl.col("first").is_not_null().any(),
            expected=inside.any(),
            first=pl.col("first").min(),
            period_start=(inside & (pl.col("valid_from") == day)).any(),
            period_end=(inside & (pl.col("valid_to") - timedelta(days=1) == day)).fill_null(False).any(),
        )
        .with_columns(
            status=pl.when(~pl.col("known") | pl.col("expected"))
            .then(pl.lit(EXPECTED))
            .when(day < pl.col("first"))
            .then(pl.lit(PRE_LISTING))
            .otherwise(pl.lit(DELISTED))
        )
        .sort("__rank", "date")
    )
    known = set(status.filter("known").select("market", "symbol").unique().iter_rows())
    untracked = tuple(i for i in chosen if (i.market, i.symbol) not in known)
    return DailyUniverse(
        tuple(wanted_days), tuple(chosen), status.select(list(STATUS_SCHEMA)).cast(STATUS_SCHEMA), untracked
    )


def resolve_days(spec: UniverseSpec, table: pl.DataFrame | None, days: Sequence[date]) -> DailyUniverse:
    """The universe of ``spec`` on each of ``days``: which instruments are expected, and why the others are not."""
    return daily_universe(resolve_instruments(spec, table), table, days)
