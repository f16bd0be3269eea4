"""Completeness and gap-fill with the point-in-time universe, on real Binance days (no Dagster, no network).

The days are Binance's real spot BTCUSDT 1m files of 2020-01-01..03. The instruments tables are SYNTHETIC
(``universe/periods.py``): they pretend BTCUSDT was listed on 2020-01-02 or delisted after 2020-01-03 so
that real files stand for a listing or delisting day; minutes removed from a real day (``without``) stand
for the bars before a listing at 06:00 or after a delisting at 18:00.
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl

from lakehouse_assets.instruments import Instrument
from lakehouse_assets.klines.completeness import completeness_report
from lakehouse_assets.klines.gapfill import (
    REASON_DELISTED,
    REASON_DISABLED,
    REASON_NO_DATA,
    REASON_PRE_LISTING,
    FetchOutcome,
    fill_gaps,
    real_gaps,
)
from lakehouse_assets.klines.schema import empty_klines
from lakehouse_assets.universe.lifecycle import daily_universe
from lakehouse_assets_tests.samples import SPOT, real_days, utc, without
from lakehouse_assets_tests.universe.periods import instruments_table, period

DAYS = [date(2020, 1, 1), date(2020, 1, 2), date(2020, 1, 3)]
LATER = utc(2030, 1, 1)
LISTED_0102 = instruments_table(period("spot:BTCUSDT", date(2020, 1, 2)))
LISTED_0102_GONE_0104 = instruments_table(period("spot:BTCUSDT", date(2020, 1, 2), date(2020, 1, 4)))


class NoCandles:
    """A REST source that has no candle at all (as for bars before a listing), and logs what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[datetime, datetime]] = []

    def fetch(self, instrument: Instrument, interval: str, start: datetime, end: datetime) -> FetchOutcome:
        self.asked.append((start, end))
        return FetchOutcome(frame=empty_klines(), requests=1, covered_until=end)


def listing_at_six_and_delisting_at_six_pm() -> pl.DataFrame:
    frame = real_days(SPOT, DAYS)
    frame = without(frame, utc(2020, 1, 1), utc(2020, 1, 2, 6))  # nothing before "the listing"
    frame = without(frame, utc(2020, 1, 2, 10), utc(2020, 1, 2, 10, 5))  # a real gap inside the listing day
    return without(frame, utc(2020, 1, 3, 18), utc(2020, 1, 4))  # nothing after "the delisting"


def test_completeness_says_pre_listing_and_delisted_and_keeps_real_gaps() -> None:
    lifecycle = daily_universe([SPOT], LISTED_0102_GONE_0104, DAYS)
    report = completeness_report(listing_at_six_and_delisting_at_six_pm(), days=DAYS, instruments=[SPOT], lifecycle=lifecycle)
    assert report.select(
        "date", "rows", "expected", "missing_minutes", "missing_ranges", "status", "not_trading", "completeness"
    ).rows() == [
        (date(2020, 1, 1), 0, 0, 0, "", "pre_listing", "", 1.0),
        (date(2020, 1, 2), 1075, 1080, 5, "10:00–10:04 (5)", "expected", "00:00–05:59 (360) pre_listing", 1075 / 1080),
        (date(2020, 1, 3), 1080, 1080, 0, "", "expected", "18:00–23:59 (360) delisted", 1.0),
    ]
    # the same data without the table: every missing minute is a gap, as before
    before = completeness_report(listing_at_six_and_delisting_at_six_pm(), days=DAYS, instruments=[SPOT])
    assert before["missing_minutes"].to_list() == [1440, 365, 360]
    assert before["status"].to_list() == ["expected"] * 3


def test_a_listing_day_without_any_bar_is_still_a_gap() -> None:
    lifecycle = daily_universe([SPOT], LISTED_0102, DAYS)
    frame = real_days(SPOT, [date(2020, 1, 3)])
    report = completeness_report(frame, days=DAYS, instruments=[SPOT], lifecycle=lifecycle)
    assert report.select("status", "expected", "missing_minutes").rows() == [
        ("pre_listing", 0, 0), ("expected", 1440, 1440), ("expected", 1440, 0)
    ]


def test_gap_fill_asks_rest_nothing_for_days_off_the_market_and_labels_the_edges() -> None:
    lifecycle = daily_universe([SPOT], LISTED_0102_GONE_0104, DAYS)
    rest = NoCandles()
    result = fill_gaps(
        listing_at_six_and_delisting_at_six_pm(), instruments=[SPOT], days=DAYS, interval="1m", now=LATER,
        fetcher=rest, page_limit=1000, lifecycle=lifecycle,
    )  # fmt: skip
    # 2020-01-01 (pre_listing) is never asked; the listing and delisting days' holes are
    assert rest.asked == [
        (utc(2020, 1, 2), utc(2020, 1, 2, 10, 5)),  # 00:00-05:59 and 10:00-10:04 share one page
        (utc(2020, 1, 3, 18), utc(2020, 1, 4)),
    ]
    assert result.gaps.select("gap_start", "gap_end", "bars", "reason").rows() == [
        (utc(2020, 1, 2), utc(2020, 1, 2, 6), 360, REASON_PRE_LISTING),
        (utc(2020, 1, 2, 10), utc(2020, 1, 2, 10, 5), 5, REASON_NO_DATA),
        (utc(2020, 1, 3, 18), utc(2020, 1, 4), 360, REASON_DELISTED),
    ]
    assert real_gaps(result.gaps).height == 1
    assert result.report.select("date", "status", "expected", "rows", "missing", "gaps", "not_trading").rows() == [
        (date(2020, 1, 1), "pre_listing", 0, 0, 0, 0, 0),
        (date(2020, 1, 2), "expected", 1080, 1075, 5, 1, 360),
        (date(2020, 1, 3), "expected", 1080, 1080, 0, 0, 360),
    ]


def test_without_rest_the_edges_get_their_reason_and_other_holes_stay_not_fetched() -> None:
    lifecycle = daily_universe([SPOT], LISTED_0102_GONE_0104, DAYS)
    result = fill_gaps(
        listing_at_six_and_delisting_at_six_pm(), instruments=[SPOT], days=DAYS, interval="1m", now=LATER,
        fetcher=None, page_limit=1000, lifecycle=lifecycle,
    )  # fmt: skip
    assert result.gaps["reason"].to_list() == [REASON_PRE_LISTING, REASON_DISABLED, REASON_DELISTED]


def test_stored_rows_of_a_day_off_the_market_are_neither_gaps_nor_dropped_from_the_lake() -> None:
    """The lake holds bars of 2020-01-01 from before the table said 'listed 2020-01-02': the fill does not
    call them a gap nor fetch them; the rows themselves stay in the lake (the IO manager keeps files a run
    has no rows for; see the pipeline test)."""
    lifecycle = daily_universe([SPOT], LISTED_0102, DAYS)
    rest = NoCandles()
    archive = real_days(SPOT, DAYS[1:])
    result = fill_gaps(
        archive, instruments=[SPOT], days=DAYS, interval="1m", now=LATER, fetcher=rest, page_limit=1000,
        stored=real_days(SPOT, DAYS[:1]).with_columns(source=pl.lit("archive")), lifecycle=lifecycle,
    )  # fmt: skip
    assert rest.asked == [] and result.gaps.is_empty() and result.kept_rows == 0
    assert result.frame.height == 2880
