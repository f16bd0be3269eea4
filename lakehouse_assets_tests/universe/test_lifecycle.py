"""The point-in-time universe: expected, pre_listing or delisted, per instrument and day.

The instruments tables here are SYNTHETIC (``periods.py``): real symbol names with periods chosen for
each case (listed mid-range, delisted, relisted, absent from the table).
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from lakehouse_assets.instruments import Instrument
from lakehouse_assets.universe.lifecycle import (
    DELISTED,
    EXPECTED,
    PRE_LISTING,
    UniverseError,
    daily_universe,
    edge_reason,
    resolve_days,
    resolve_instruments,
)
from lakehouse_assets.universe.selection import parse_spec
from lakehouse_assets_tests.samples import utc
from lakehouse_assets_tests.universe.periods import instruments_table, period

D = [date(2022, 5, 1) + timedelta(days=n) for n in range(8)]  # 2022-05-01 .. 05-08
TABLE = instruments_table(
    period("um:BTCUSDT", date(2019, 9, 8), base="BTC", quote="USDT"),  # trading all along
    period("um:SOLUSDT", date(2022, 5, 4), base="SOL", quote="USDT"),  # listed mid-range
    period("um:LUNAUSDT", date(2021, 1, 1), date(2022, 5, 6), base="LUNA", quote="USDT"),  # last day 05-05
    period("um:ICPUSDT", date(2021, 5, 11), date(2022, 5, 3), base="ICP", quote="USDT"),  # relisted:
    period("um:ICPUSDT", date(2022, 5, 6), base="ICP", quote="USDT"),  # out 05-03..05-05, back 05-06
)


def statuses(universe, key: str) -> list[str]:
    market, symbol = key.split(":")
    frame = universe.status.filter(pl.col("market") == market, pl.col("symbol") == symbol)
    return frame["status"].to_list()


def test_listed_delisted_and_relisted_instruments_day_by_day() -> None:
    universe = resolve_days(parse_spec("um:*USDT"), TABLE, D)
    assert [i.symbol for i in universe.instruments] == ["BTCUSDT", "ICPUSDT", "LUNAUSDT", "SOLUSDT"]
    E, P, X = EXPECTED, PRE_LISTING, DELISTED
    assert statuses(universe, "um:BTCUSDT") == [E] * 8
    assert statuses(universe, "um:SOLUSDT") == [P, P, P, E, E, E, E, E]
    assert statuses(universe, "um:LUNAUSDT") == [E, E, E, E, E, X, X, X]
    assert statuses(universe, "um:ICPUSDT") == [E, E, X, X, X, E, E, E]  # between two periods = delisted
    assert universe.counts() == {EXPECTED: 23, PRE_LISTING: 3, DELISTED: 6}
    assert universe.untracked == ()

    sol, luna, icp = Instrument("um", "SOLUSDT"), Instrument("um", "LUNAUSDT"), Instrument("um", "ICPUSDT")
    assert universe.period_edges(sol, date(2022, 5, 4)) == (True, False)
    assert universe.period_edges(luna, date(2022, 5, 5)) == (False, True)
    assert universe.period_edges(icp, date(2022, 5, 2)) == (False, True)
    assert universe.period_edges(icp, date(2022, 5, 6)) == (True, False)
    assert universe.period_edges(sol, date(2022, 5, 5)) == (False, False)
    assert [i.symbol for i in universe.expected_on(date(2022, 5, 4))] == ["BTCUSDT", "LUNAUSDT", "SOLUSDT"]
    assert universe.status_of(sol, date(2022, 5, 1)) == PRE_LISTING
    assert universe.not_expected_ranges().rows() == [
        ("um", "ICPUSDT", DELISTED, date(2022, 5, 3), date(2022, 5, 5), 3),
        ("um", "LUNAUSDT", DELISTED, date(2022, 5, 6), date(2022, 5, 8), 3),
        ("um", "SOLUSDT", PRE_LISTING, date(2022, 5, 1), date(2022, 5, 3), 3),
    ]
    pairs = universe.expected_pairs()
    assert len(pairs) == 23 and pairs[:3] == [
        (Instrument("um", "BTCUSDT"), date(2022, 5, 1)), (icp, date(2022, 5, 1)), (luna, date(2022, 5, 1))
    ]  # fmt: skip


def test_an_instrument_not_trading_on_any_day_of_the_run_is_not_active() -> None:
    universe = resolve_days(parse_spec("um:*USDT"), TABLE, [date(2022, 5, 7)])
    assert [i.symbol for i in universe.active] == ["BTCUSDT", "ICPUSDT", "SOLUSDT"]
    assert universe.not_expected().rows() == [(date(2022, 5, 7), "um", "LUNAUSDT", DELISTED)]


def test_exact_entries_absent_from_the_table_or_without_a_table_are_expected_every_day() -> None:
    spec = parse_spec("um:SOLUSDT,spot:ADABTC")
    with_table = resolve_days(spec, TABLE, D)
    assert statuses(with_table, "spot:ADABTC") == [EXPECTED] * 8  # the table does not know it
    assert statuses(with_table, "um:SOLUSDT")[:3] == [PRE_LISTING] * 3  # it knows this one
    assert with_table.untracked == (Instrument("spot", "ADABTC"),)
    without = resolve_days(spec, None, D)  # no instruments table: exactly as before it existed
    assert without.counts() == {EXPECTED: 16, PRE_LISTING: 0, DELISTED: 0}
    assert without.expected_pairs()[:2] == [(Instrument("um", "SOLUSDT"), D[0]), (Instrument("spot", "ADABTC"), D[0])]


def test_a_pattern_needs_the_table() -> None:
    with pytest.raises(UniverseError) as err:
        resolve_instruments(parse_spec("um:*USDT,cm:*_PERP,spot:BTCUSDT"), None)
    assert str(err.value) == (
        "the pattern(s) 'um:*USDT', 'cm:*_PERP' are resolved against the instruments table, and the lake holds no "
        "silver/instruments yet; materialize silver/instruments first (or list the symbols as market:SYMBOL)"
    )
    assert resolve_instruments(parse_spec("spot:BTCUSDT"), None) == [Instrument("spot", "BTCUSDT")]


def test_an_unusable_table_is_named() -> None:
    with pytest.raises(UniverseError, match=r"silver/instruments lacks column\(s\) valid_from, valid_to"):
        daily_universe([Instrument("um", "BTCUSDT")], TABLE.drop("valid_from", "valid_to"), D)


def test_restricting_to_a_selection_keeps_the_answer_for_those_instruments() -> None:
    universe = resolve_days(parse_spec("um:*USDT"), TABLE, D)
    sol = universe.restrict([Instrument("um", "SOLUSDT")])
    assert sol.instruments == (Instrument("um", "SOLUSDT"),)
    assert sol.status["status"].to_list() == [PRE_LISTING] * 3 + [EXPECTED] * 5


def test_edge_reason() -> None:
    day, end = utc(2022, 5, 4), utc(2022, 5, 5)
    assert edge_reason(True, False, day, utc(2022, 5, 4, 6), day, end) == PRE_LISTING
    assert edge_reason(False, True, utc(2022, 5, 4, 6), end, day, end) == DELISTED
    assert edge_reason(True, True, day, end, day, end) is None  # no bar at all: a gap, not an edge
    assert edge_reason(True, False, utc(2022, 5, 4, 1), utc(2022, 5, 4, 2), day, end) is None  # inside the day
    assert edge_reason(False, False, day, utc(2022, 5, 4, 6), day, end) is None  # not a period's first day


def test_rows_split_by_an_attribute_change_are_one_period_and_an_empty_row_is_none() -> None:
    table = instruments_table(
        period("um:BTCUSDT", date(2019, 9, 8), date(2022, 5, 4)),  # tick size changed on 05-04: a new row,
        period("um:BTCUSDT", date(2022, 5, 4)),  # not a delisting and a listing
        period("um:XEMUSDT", date(2022, 5, 5), date(2022, 5, 5)),  # known, never traded (valid_to == valid_from)
    )
    universe = daily_universe([Instrument("um", "BTCUSDT"), Instrument("um", "XEMUSDT")], table, D)
    btc = Instrument("um", "BTCUSDT")
    assert statuses(universe, "um:BTCUSDT") == [EXPECTED] * 8
    assert [universe.period_edges(btc, d) for d in (date(2022, 5, 3), date(2022, 5, 4))] == [(False, False)] * 2
    assert statuses(universe, "um:XEMUSDT") == [PRE_LISTING] * 4 + [DELISTED] * 4
