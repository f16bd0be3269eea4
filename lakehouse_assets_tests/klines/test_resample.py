"""gold resampling == Binance's own candles, on real files (no Dagster here)."""

from __future__ import annotations

import csv
import io
import zipfile
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest

from lakehouse_assets.instruments import Instrument
from lakehouse_assets.klines.parse import parse_klines_zip
from lakehouse_assets.klines.resample import RESAMPLED_SCHEMA, parse_intervals, resample_klines
from lakehouse_assets_tests.samples import DATA, minutes_spot, ohlcv_only, um_day, utc

UM_5M_MONTH = DATA / "futures/um/monthly/klines/BTCUSDT/5m/BTCUSDT-5m-2022-04.csv"
SPOT_1M = DATA / "spot/daily/klines/BTCUSDT/1m"
CM_1M = DATA / "futures/cm/daily/klines/BTCUSD_PERP/1m"
SPOT_DAYS = [date(2020, 1, 1), date(2020, 1, 2), date(2020, 1, 3)]
VOLUME_FIELDS = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")


def binance_rows(text: str) -> list[dict[str, object]]:
    """Binance kline CSV rows as Decimals/ints, read with the csv module only (independent of our parser)."""
    out = []
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0].isdigit():
            continue  # header
        out.append(
            {
                "open_time": int(row[0]),
                "open": Decimal(row[1]),
                "high": Decimal(row[2]),
                "low": Decimal(row[3]),
                "close": Decimal(row[4]),
                "volume": Decimal(row[5]),
                "close_time": int(row[6]),
                "quote_volume": Decimal(row[7]),
                "trade_count": int(row[8]),
                "taker_buy_volume": Decimal(row[9]),
                "taker_buy_quote_volume": Decimal(row[10]),
            }
        )
    return out


def aggregate_plain(rows: list[dict[str, object]], step_ms: int) -> dict[int, dict[str, object]]:
    """Plain-Python candles: bucket by epoch floor, first/max/min/last, exact Decimal sums."""
    buckets: dict[int, list[dict[str, object]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["open_time"]):
        buckets[row["open_time"] - row["open_time"] % step_ms].append(row)
    out = {}
    for start, group in buckets.items():
        out[start] = {
            "open": group[0]["open"],
            "high": max(r["high"] for r in group),
            "low": min(r["low"] for r in group),
            "close": group[-1]["close"],
            "trade_count": sum(r["trade_count"] for r in group),
            "close_time": start + step_ms - 1,
            "minutes": len(group),
            **{f: sum((r[f] for r in group), Decimal(0)) for f in VOLUME_FIELDS},
        }
    return out


def assert_equal_candles(ours: pl.DataFrame, reference: dict[int, dict[str, object]]) -> None:
    assert ours.height == len(reference)
    for row in ours.iter_rows(named=True):
        ref = reference[int(row["open_time"].timestamp() * 1000)]
        for field in ("open", "high", "low", "close"):
            assert row[field] == float(ref[field]), (row["open_time"], field)  # exact
        assert row["trade_count"] == ref["trade_count"]
        assert int(row["close_time"].timestamp() * 1000) == ref["close_time"]
        for field in VOLUME_FIELDS:
            assert row[field] == pytest.approx(float(ref[field]), rel=1e-9, abs=0), (row["open_time"], field)


def test_usdm_1m_day_resampled_to_5m_equals_binance_monthly_5m_file() -> None:
    ours = resample_klines(um_day(), ["5m"])
    day_start = int(utc(2022, 4, 8).timestamp() * 1000)
    published = [
        r for r in binance_rows(UM_5M_MONTH.read_text()) if day_start <= r["open_time"] < day_start + 86_400_000
    ]
    assert len(published) == 288 and ours.height == 288
    by_open = {r["open_time"]: r for r in published}
    for row in ours.iter_rows(named=True):
        ref = by_open[int(row["open_time"].timestamp() * 1000)]
        assert (row["open"], row["high"], row["low"], row["close"]) == tuple(
            float(ref[f]) for f in ("open", "high", "low", "close")
        )
        assert row["trade_count"] == ref["trade_count"]
        assert int(row["close_time"].timestamp() * 1000) == ref["close_time"]
        for field in VOLUME_FIELDS:
            assert row[field] == pytest.approx(float(ref[field]), rel=1e-9, abs=0)
        assert row["minutes"] == 5 and row["is_complete"] and row["interval"] == "5m"
        assert (row["market"], row["symbol"], row["source"]) == ("um", "BTCUSDT", "archive")
    # a few published values, verbatim from the file
    first = ours.row(0, named=True)
    assert (
        first["open_time"] == utc(2022, 4, 8)
        and first["open"] == 43417.10
        and first["trade_count"] == by_open[day_start]["trade_count"]
    )


def test_spot_hours_and_days_equal_an_independent_plain_python_route() -> None:
    rows = []
    for day in SPOT_DAYS:
        with zipfile.ZipFile(SPOT_1M / f"BTCUSDT-1m-{day}.zip") as zf:
            rows += binance_rows(zf.read(zf.namelist()[0]).decode())
    ours = resample_klines(minutes_spot(), ["1h", "4h", "1d"])
    assert ours.columns == list(RESAMPLED_SCHEMA) and dict(ours.schema) == RESAMPLED_SCHEMA

    hours = ours.filter(pl.col("interval") == "1h")
    assert_equal_candles(hours, aggregate_plain(rows, 3_600_000))
    assert hours.height == 72 and hours["minutes"].to_list() == [60] * 72 and hours["is_complete"].all()

    days = ours.filter(pl.col("interval") == "1d")
    assert_equal_candles(days, aggregate_plain(rows, 86_400_000))
    assert days["open_time"].to_list() == [utc(2020, 1, d) for d in (1, 2, 3)]
    assert days.select("open", "close").rows() == [(7195.24, 7200.85), (7200.77, 6965.71), (6965.49, 7344.96)]
    assert days["close_time"].to_list() == [utc(2020, 1, d, 23, 59, 59, 999000) for d in (1, 2, 3)]

    four = ours.filter(pl.col("interval") == "4h")
    assert_equal_candles(four, aggregate_plain(rows, 4 * 3_600_000))
    assert sorted({t.hour for t in four["open_time"]}) == [0, 4, 8, 12, 16, 20]  # UTC-aligned


def test_missing_minutes_make_an_incomplete_bar_and_an_empty_hour_no_bar() -> None:
    day = um_day()
    # drop 10:07-10:09 (3 minutes) and the whole 13:00 hour
    holes = day.filter(
        ~pl.col("open_time").is_between(utc(2022, 4, 8, 10, 7), utc(2022, 4, 8, 10, 9))
        & ~pl.col("open_time").is_between(utc(2022, 4, 8, 13, 0), utc(2022, 4, 8, 13, 59))
    )
    full = resample_klines(day, ["5m", "1h", "1d"])
    cut = resample_klines(holes, ["5m", "1h", "1d"])

    def bar(frame: pl.DataFrame, interval: str, at: datetime) -> dict | None:
        hit = frame.filter(pl.col("interval") == interval, pl.col("open_time") == at)
        return hit.row(0, named=True) if hit.height else None

    b5 = bar(cut, "5m", utc(2022, 4, 8, 10, 5))
    assert (b5["minutes"], b5["is_complete"]) == (2, False)
    # still the exchange's candle for the minutes that exist: open of 10:05, close of 10:06
    minutes = day.filter(pl.col("open_time").is_between(utc(2022, 4, 8, 10, 5), utc(2022, 4, 8, 10, 6))).sort(
        "open_time"
    )
    assert (b5["open"], b5["close"]) == (minutes["open"][0], minutes["close"][-1])
    h10 = bar(cut, "1h", utc(2022, 4, 8, 10))
    assert (h10["minutes"], h10["is_complete"]) == (57, False)
    assert bar(cut, "1h", utc(2022, 4, 8, 13)) is None  # no minute, no bar: nothing is invented
    assert bar(cut, "5m", utc(2022, 4, 8, 13, 55)) is None
    d = bar(cut, "1d", utc(2022, 4, 8))
    assert (d["minutes"], d["is_complete"]) == (1440 - 63, False)
    assert bar(full, "1d", utc(2022, 4, 8))["is_complete"]
    # untouched bars are identical to the full-day result
    untouched = full.filter(
        pl.col("interval") == "1h",
        pl.col("open_time") != utc(2022, 4, 8, 10),
        pl.col("open_time") != utc(2022, 4, 8, 13),
    )
    assert untouched.equals(cut.filter(pl.col("interval") == "1h", pl.col("open_time") != utc(2022, 4, 8, 10)))


def test_coinm_contract_volumes_are_summed_and_spot_ones_stay_null() -> None:
    cm = parse_klines_zip(
        (CM_1M / "BTCUSD_PERP-1m-2022-10-24.zip").read_bytes(),
        instrument=Instrument("cm", "BTCUSD_PERP"),
        interval="1m",
        day=date(2022, 10, 24),
        file_name="BTCUSD_PERP-1m-2022-10-24.zip",
        contract_size=100.0,  # BTCUSD_PERP's contractSize in Binance's exchangeInfo
    ).frame
    out = resample_klines(pl.concat([cm, um_day()]), ["1d"])
    cm_day = out.filter(pl.col("market") == "cm").row(0, named=True)
    assert cm_day["contract_volume"] == pytest.approx(cm["contract_volume"].sum(), rel=1e-12)
    assert cm_day["taker_buy_contract_volume"] == pytest.approx(cm["taker_buy_contract_volume"].sum(), rel=1e-12)
    assert cm_day["volume"] == pytest.approx(cm["volume"].sum(), rel=1e-12)
    um = out.filter(pl.col("market") == "um").row(0, named=True)
    assert um["contract_volume"] is None and um["taker_buy_contract_volume"] is None


def test_mixed_sources_are_labelled_mixed() -> None:
    day = um_day().with_columns(
        source=pl.when(pl.col("open_time") == utc(2022, 4, 8, 0, 3)).then(pl.lit("rest")).otherwise(pl.col("source"))
    )
    out = resample_klines(day, ["5m"])
    assert out.filter(pl.col("source") == "mixed")["open_time"].to_list() == [utc(2022, 4, 8)]
    assert set(out["source"]) == {"mixed", "archive"}


def test_a_minute_with_unknown_volumes_makes_its_bars_sums_unknown_not_partial() -> None:
    day = um_day()
    full = resample_klines(day, ["5m", "1h", "1d"])
    hole = (pl.col("open_time") >= utc(2022, 4, 8, 10, 3)) & (pl.col("open_time") < utc(2022, 4, 8, 10, 4))
    out = resample_klines(ohlcv_only(day, hole), ["5m", "1h", "1d"])
    unknown = ["quote_volume", "trade_count", "taker_buy_volume", "taker_buy_quote_volume"]
    touched = pl.col("source") != "archive"
    assert out.filter(touched).select("interval", "open_time", "source").rows() == [
        ("5m", utc(2022, 4, 8, 10), "mixed"),
        ("1h", utc(2022, 4, 8, 10), "mixed"),
        ("1d", utc(2022, 4, 8), "mixed"),
    ]
    assert out.filter(touched).select(unknown).null_count().row(0) == (3, 3, 3, 3)
    # prices, volume and coverage are known and exact; every other bar is untouched
    known = ["open", "high", "low", "close", "volume", "minutes", "is_complete"]
    assert out.filter(touched).select(known).equals(full.filter(out["source"] != "archive").select(known))
    assert out.filter(~touched).equals(full.filter(out["source"] == "archive"))
    # a whole day from such a source (its archive 404): every bar's details unknown, nothing crashes
    rest_day = resample_klines(ohlcv_only(day, pl.lit(True)), ["1h"])
    assert rest_day.height == 24 and rest_day.select(unknown).null_count().row(0) == (24, 24, 24, 24)
    assert rest_day.select(known).equals(full.filter(pl.col("interval") == "1h").select(known))


def test_bad_input_is_refused_with_the_instrument_and_minute() -> None:
    day = um_day()
    with pytest.raises(ValueError, match=r"rows sharing a minute, e.g. um:BTCUSDT 2022-04-08 00:00"):
        resample_klines(pl.concat([day, day.head(1)]), ["5m"])
    with pytest.raises(ValueError, match=r"must be 1m klines; found interval\(s\) \['5m'\]"):
        resample_klines(resample_klines(day, ["5m"]).drop("minutes", "is_complete"), ["1h"])
    empty = resample_klines(day.clear(), ["5m"])
    assert empty.height == 0 and dict(empty.schema) == RESAMPLED_SCHEMA


def test_interval_list_validation() -> None:
    assert parse_intervals("5m, 15m,1h,4h,1d,1h") == ["5m", "15m", "1h", "4h", "1d"]
    assert parse_intervals("1m,1h", allow_source=True) == ["1m", "1h"]
    for bad in ("1w", "3d", "1s", "7m", "1m", ""):
        with pytest.raises(ValueError):
            parse_intervals(bad)


def test_bars_never_cross_a_utc_day() -> None:
    out = resample_klines(minutes_spot(), parse_intervals("3m,5m,15m,30m,1h,2h,4h,6h,8h,12h,1d"))
    span = (pl.col("close_time").dt.date() == pl.col("open_time").dt.date()).all()
    assert out.select(span).item()
    counts = dict(out.group_by("interval").len().iter_rows())
    assert counts == {
        "3m": 1440,
        "5m": 864,
        "15m": 288,
        "30m": 144,
        "1h": 72,
        "2h": 36,
        "4h": 18,
        "6h": 12,
        "8h": 9,
        "12h": 6,
        "1d": 3,
    }
    assert out["open_time"].min() == utc(2020, 1, 1) and out["close_time"].max() == utc(2020, 1, 3) + timedelta(
        days=1, milliseconds=-1
    )
