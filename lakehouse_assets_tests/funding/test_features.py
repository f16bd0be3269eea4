"""The no-look-ahead funding join, on the real USD-M BTCUSDT 2026-04 settlements.

Bars here are keys only (market, symbol, interval, open_time, close_time): the join reads no
prices, so no candle is made up. Expected values are computed independently in plain Python.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from lakehouse_assets.funding.features import FUNDING_FEATURE_COLUMNS, add_funding_features
from lakehouse_assets.funding.schema import UTC_MS
from lakehouse_assets.instruments import Instrument
from lakehouse_assets_tests.samples import funding_month, utc

UM_BTC = Instrument("um", "BTCUSDT")
MS = timedelta(milliseconds=1)


@pytest.fixture(scope="module")
def funding() -> pl.DataFrame:
    return funding_month()


def bars(start: datetime, end: datetime, step: timedelta, interval: str, *, market: str = "um", symbol: str = "BTCUSDT") -> pl.DataFrame:
    opens = pl.datetime_range(start, end, step, eager=True, time_zone="UTC", closed="left").dt.cast_time_unit("ms")
    return pl.DataFrame({"market": market, "symbol": symbol, "interval": interval, "open_time": opens}).with_columns(
        close_time=pl.col("open_time") + pl.duration(milliseconds=step // MS - 1)
    )


def settlements(funding: pl.DataFrame) -> list[dict]:
    return list(funding.iter_rows(named=True))


def expected_at(events: list[dict], close: datetime) -> dict[str, object]:
    """Plain-Python reference: the last settlement visible at the bar's close, and its 7-day window."""
    visible = [e for e in events if max(e["funding_time"], e["calc_time"]) <= close]
    if not visible:
        return {c: None for c in FUNDING_FEATURE_COLUMNS}
    last = visible[-1]
    window = [e["funding_rate"] for e in visible if last["funding_time"] - timedelta(days=7) < e["funding_time"] <= last["funding_time"]]
    step_ms = last["funding_interval_hours"] * 3_600_000
    close_ms = int(close.timestamp() * 1000)
    return {
        "funding_rate": last["funding_rate"],
        "funding_interval_hours": last["funding_interval_hours"],
        "last_funding_time": last["funding_time"],
        "funding_rate_annualized": last["funding_rate"] * 24 / last["funding_interval_hours"] * 365,
        "funding_rate_mean_7d": sum(window) / len(window),
        "funding_rate_annualized_7d": sum(window) * 365 / 7,
        "funding_events_7d": len(window),
        "next_funding_time": datetime.fromtimestamp((close_ms // step_ms + 1) * step_ms / 1000, tz=UTC),
    }


def test_hourly_bars_see_each_settlement_from_its_own_hour_on(funding: pl.DataFrame) -> None:
    out = add_funding_features(bars(utc(2026, 4, 1), utc(2026, 5, 1), timedelta(hours=1), "1h"), funding)
    assert out.height == 720
    assert out.schema["funding_rate"] == pl.Float64 and out.schema["next_funding_time"] == UTC_MS
    at = {r["open_time"]: r for r in out.iter_rows(named=True)}
    seven, eight = at[utc(2026, 4, 1, 7)], at[utc(2026, 4, 1, 8)]
    assert (seven["funding_rate"], seven["last_funding_time"], seven["next_funding_time"]) == (
        -0.00003449, utc(2026, 4, 1, 0), utc(2026, 4, 1, 8),
    )  # fmt: skip
    assert (eight["funding_rate"], eight["last_funding_time"], eight["next_funding_time"]) == (
        -0.00000461, utc(2026, 4, 1, 8), utc(2026, 4, 1, 16),
    )  # fmt: skip
    assert seven["funding_rate_annualized"] == pytest.approx(-0.00003449 * 1095, rel=1e-12)  # 3 settlements/day x 365
    last = at[utc(2026, 4, 30, 23)]
    assert (last["funding_rate"], last["next_funding_time"], last["funding_events_7d"]) == (-0.00002904, utc(2026, 5, 1), 21)


def test_every_hour_of_the_month_matches_the_plain_python_reference(funding: pl.DataFrame) -> None:
    out = add_funding_features(bars(utc(2026, 3, 31, 20), utc(2026, 5, 1), timedelta(hours=1), "1h"), funding)
    events = settlements(funding)
    for row in out.iter_rows(named=True):
        want = expected_at(events, row["close_time"])
        for column, value in want.items():
            if isinstance(value, float):
                assert row[column] == pytest.approx(value, rel=1e-9, abs=1e-15), (row["open_time"], column)
            else:
                assert row[column] == value, (row["open_time"], column)


def test_bars_before_the_first_settlement_get_nulls_not_a_backfilled_rate(funding: pl.DataFrame) -> None:
    out = add_funding_features(bars(utc(2026, 3, 31, 22), utc(2026, 4, 1, 2), timedelta(hours=1), "1h"), funding)
    assert out["funding_rate"].to_list() == [None, None, -0.00003449, -0.00003449]
    assert out["next_funding_time"].to_list()[:2] == [None, None]


def test_a_rate_is_invisible_until_its_calc_time(funding: pl.DataFrame) -> None:
    # 2026-04-02 00:00 settled with calc_time 00:00:00.003. 1m bars: the 23:59 bar cannot see it, the 00:00 bar can.
    minute = add_funding_features(bars(utc(2026, 4, 1, 23, 58), utc(2026, 4, 2, 0, 2), timedelta(minutes=1), "1m"), funding)
    assert minute["funding_rate"].to_list() == [0.00000577, 0.00000577, 0.00003521, 0.00003521]
    # A "bar" closing 1 ms after the slot is still before calc_time: no look-ahead even inside the 3 ms.
    probe = pl.DataFrame(
        {"market": "um", "symbol": "BTCUSDT", "close_time": [utc(2026, 4, 2) + MS, utc(2026, 4, 2) + 3 * MS]},
        schema={"market": pl.String, "symbol": pl.String, "close_time": UTC_MS},
    )
    assert add_funding_features(probe, funding)["funding_rate"].to_list() == [0.00000577, 0.00003521]


def test_truncating_the_future_never_changes_a_value(funding: pl.DataFrame) -> None:
    hourly = add_funding_features(bars(utc(2026, 4, 1), utc(2026, 5, 1), timedelta(hours=1), "1h"), funding)
    for row in hourly.gather_every(37).iter_rows(named=True):
        known = funding.filter(pl.max_horizontal("funding_time", "calc_time") <= row["close_time"])
        one = bars(row["open_time"], row["open_time"] + timedelta(hours=1), timedelta(hours=1), "1h")
        assert add_funding_features(one, known).row(0, named=True) == row


def test_daily_bars_see_the_days_last_settlement(funding: pl.DataFrame) -> None:
    daily = add_funding_features(bars(utc(2026, 4, 1), utc(2026, 4, 4), timedelta(days=1), "1d"), funding)
    assert daily["last_funding_time"].to_list() == [utc(2026, 4, d, 16) for d in (1, 2, 3)]
    assert daily["next_funding_time"].to_list() == [utc(2026, 4, d) for d in (2, 3, 4)]


def test_annualization_and_the_schedule_follow_a_changed_interval(funding: pl.DataFrame) -> None:
    relabelled = funding.with_columns(
        funding_interval_hours=pl.when(pl.col("funding_time") >= utc(2026, 4, 21)).then(4).otherwise(8)
    )
    out = add_funding_features(bars(utc(2026, 4, 20, 23), utc(2026, 4, 21, 2), timedelta(hours=1), "1h"), relabelled)
    rows = out.rows(named=True)
    assert rows[0]["funding_rate_annualized"] == pytest.approx(rows[0]["funding_rate"] * 1095, rel=1e-12)
    assert rows[0]["next_funding_time"] == utc(2026, 4, 21, 0)
    assert rows[1]["funding_interval_hours"] == 4
    assert rows[1]["funding_rate_annualized"] == pytest.approx(rows[1]["funding_rate"] * 2190, rel=1e-12)
    assert rows[1]["next_funding_time"] == utc(2026, 4, 21, 4)


def test_instruments_never_share_funding_and_row_order_and_columns_are_kept(funding: pl.DataFrame) -> None:
    mixed = pl.concat([
        bars(utc(2026, 4, 5), utc(2026, 4, 5, 3), timedelta(hours=1), "1h", market="cm", symbol="BTCUSD_PERP"),
        bars(utc(2026, 4, 5), utc(2026, 4, 5, 3), timedelta(hours=1), "1h"),
    ]).with_columns(close=pl.lit(1.0))  # fmt: skip
    out = add_funding_features(mixed, funding)
    assert out.columns == [*mixed.columns, *FUNDING_FEATURE_COLUMNS]
    assert out.select(mixed.columns).equals(mixed)
    assert out["funding_rate"].to_list()[:3] == [None, None, None]  # no COIN-M settlements were given
    assert out["funding_rate"].to_list()[3:] == [0.00002407] * 3  # 2026-04-05 00:00 (calc_time +8 ms)
    with pytest.raises(ValueError, match="close_time"):
        add_funding_features(mixed.drop("close_time"), funding)
