"""Pandera quality rules on real parsed days, and on copies broken in the test."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
import pytest
from pandera.config import ValidationDepth, config_context

from lakehouse_assets.instruments import Instrument
from lakehouse_assets.klines.quality import CHECK_DESCRIPTIONS, validate_silver_klines
from lakehouse_assets.klines.schema import SILVER_KLINES_SCHEMA, empty_klines
from lakehouse_assets.quality import CheckOutcome
from lakehouse_assets_tests.samples import real_day, utc

SPOT_BTC = Instrument("spot", "BTCUSDT")
UM_BTC = Instrument("um", "BTCUSDT")
CM_BTC = Instrument("cm", "BTCUSD_PERP")
CHECK_NAMES = ["schema", "ohlc_consistency", "volumes", "time_grid"]

REAL_DAYS = [
    (SPOT_BTC, "1m", date(2020, 1, 1)),
    (SPOT_BTC, "1m", date(2020, 1, 2)),
    (SPOT_BTC, "1m", date(2020, 1, 3)),
    (SPOT_BTC, "1m", date(2024, 9, 21)),
    (Instrument("spot", "ADABTC"), "1m", date(2021, 11, 27)),
    (UM_BTC, "1m", date(2022, 4, 8)),
    (UM_BTC, "1m", date(2022, 5, 4)),
    (UM_BTC, "1m", date(2022, 5, 5)),
    (UM_BTC, "1m", date(2022, 5, 6)),
    (UM_BTC, "1m", date(2023, 4, 15)),
    (CM_BTC, "1m", date(2022, 10, 24)),
    (CM_BTC, "1m", date(2022, 10, 25)),
    (SPOT_BTC, "1h", date(2022, 9, 7)),
    (SPOT_BTC, "1h", date(2022, 9, 8)),
    (SPOT_BTC, "1h", date(2026, 5, 8)),
]


@pytest.fixture(scope="module")
def day1() -> pl.DataFrame:
    return real_day(SPOT_BTC, date(2020, 1, 1), "1m")


def outcomes_by_name(frame: pl.DataFrame) -> dict[str, CheckOutcome]:
    outcomes = validate_silver_klines(frame)
    assert [o.name for o in outcomes] == CHECK_NAMES
    return {o.name: o for o in outcomes}


def failed(frame: pl.DataFrame) -> dict[str, CheckOutcome]:
    return {name: o for name, o in outcomes_by_name(frame).items() if not o.passed}


def at_minute(frame: pl.DataFrame, moment: datetime, **changes: pl.Expr) -> pl.DataFrame:
    """Apply column changes to the single row whose open_time is ``moment``."""
    hit = pl.col("open_time") == moment
    return frame.with_columns(
        **{name: pl.when(hit).then(expr).otherwise(pl.col(name)) for name, expr in changes.items()}
    )


# ---------------------------------------------------------------------------------------------
# real data passes


@pytest.mark.parametrize(
    ("instrument", "interval", "day"),
    REAL_DAYS,
    ids=[f"{i.key}-{iv}-{d}" for i, iv, d in REAL_DAYS],
)
def test_real_files_pass_every_check(instrument: Instrument, interval: str, day: date) -> None:
    outcomes = validate_silver_klines(real_day(instrument, day, interval))
    assert [(o.name, o.passed) for o in outcomes] == [(name, True) for name in CHECK_NAMES]
    for outcome in outcomes:
        assert outcome.failures.is_empty() and outcome.failures_by_day.is_empty()
        assert outcome.description == CHECK_DESCRIPTIONS[outcome.name]


def test_all_real_files_together_pass() -> None:
    frame = pl.concat([real_day(instrument, day, interval) for instrument, interval, day in REAL_DAYS])
    assert frame.height == 12 * 1440 + 3 * 24
    assert failed(frame) == {}


def test_empty_frame_passes_with_typed_failure_frames() -> None:
    outcomes = outcomes_by_name(empty_klines())
    assert all(o.passed for o in outcomes.values())
    ohlc = outcomes["ohlc_consistency"]
    assert ohlc.failures.columns == [
        "row", "market", "symbol", "interval", "date", "open_time", "rule",
        "open", "high", "low", "close",
    ]  # fmt: skip
    assert ohlc.failures.schema["open_time"] == pl.Datetime("ms", "UTC")
    assert ohlc.failures_by_day.columns == ["market", "symbol", "date", "failing_rows"]


def test_descriptions_cover_every_check() -> None:
    assert list(CHECK_DESCRIPTIONS) == CHECK_NAMES
    assert all(text.strip() for text in CHECK_DESCRIPTIONS.values())


def test_every_described_check_has_a_schema_in_the_same_order() -> None:
    """Was a module-level assert in quality.py: each rule set is named, described and run in one order."""
    from lakehouse_assets.klines import quality as kline_quality

    assert list(kline_quality._SCHEMAS) == list(CHECK_DESCRIPTIONS)


# ---------------------------------------------------------------------------------------------
# broken copies fail the right check and name the row


def test_swapped_high_and_low_fails_ohlc_and_names_the_minute(day1: pl.DataFrame) -> None:
    # real 00:05 row: open 7179.76, high 7182.51, low 7178.20, close 7179.99
    minute = utc(2020, 1, 1, 0, 5)
    broken = at_minute(day1, minute, high=pl.col("low"), low=pl.col("high"))
    failures = failed(broken)
    assert list(failures) == ["ohlc_consistency"]
    ohlc = failures["ohlc_consistency"]
    assert ohlc.failures.select("market", "symbol", "date", "open_time", "rule").rows() == [
        ("spot", "BTCUSDT", date(2020, 1, 1), minute, "high >= max(open, close)"),
        ("spot", "BTCUSDT", date(2020, 1, 1), minute, "low <= high"),
        ("spot", "BTCUSDT", date(2020, 1, 1), minute, "low <= min(open, close)"),
    ]
    assert ohlc.failures.select("open", "high", "low", "close").row(0) == (
        7179.76, 7178.2, 7182.51, 7179.99,
    )  # fmt: skip
    assert ohlc.failures["row"].unique().to_list() == [5]
    assert ohlc.failures_by_day.rows() == [("spot", "BTCUSDT", date(2020, 1, 1), 1)]


def test_non_positive_or_nan_price_fails_ohlc(day1: pl.DataFrame) -> None:
    broken = at_minute(day1, utc(2020, 1, 1, 1), open=pl.lit(0.0))
    broken = at_minute(broken, utc(2020, 1, 1, 2), close=pl.lit(float("nan")))
    ohlc = failed(broken)["ohlc_consistency"]
    rules = ohlc.failures.filter(pl.col("rule") == "prices are finite and > 0")
    assert rules["open_time"].to_list() == [utc(2020, 1, 1, 1), utc(2020, 1, 1, 2)]
    assert ohlc.failures_by_day["failing_rows"].to_list() == [2]


def test_close_time_off_by_one_ms_fails_time_grid(day1: pl.DataFrame) -> None:
    minute = utc(2020, 1, 1, 12, 34)
    broken = at_minute(day1, minute, close_time=pl.col("close_time") + timedelta(milliseconds=1))
    failures = failed(broken)
    assert list(failures) == ["time_grid"]
    grid = failures["time_grid"]
    assert grid.failures.select("open_time", "close_time", "rule").rows() == [
        (minute, utc(2020, 1, 1, 12, 35), "close_time = open_time + interval - 1 ms")
    ]


def test_off_grid_open_time_and_unknown_interval_fail_time_grid(day1: pl.DataFrame) -> None:
    shifted = at_minute(
        day1,
        utc(2020, 1, 1, 8),
        open_time=pl.col("open_time") + timedelta(seconds=30),
        close_time=pl.col("close_time") + timedelta(seconds=30),
    )
    grid = failed(shifted)["time_grid"]
    assert grid.failures.select("open_time", "rule").rows() == [
        (utc(2020, 1, 1, 8, 0, 30), "open_time on the interval grid")
    ]
    relabelled = day1.head(2).with_columns(interval=pl.lit("1M"))
    rules = failed(relabelled)["time_grid"].failures["rule"].unique().sort().to_list()
    assert "interval is a known Binance interval" in rules


def test_hourly_rows_labelled_as_1m_fail_time_grid() -> None:
    hourly = real_day(SPOT_BTC, date(2026, 5, 8), "1h").with_columns(interval=pl.lit("1m"))
    grid = failed(hourly)["time_grid"]
    assert grid.failures_by_day.rows() == [("spot", "BTCUSDT", date(2026, 5, 8), 24)]


def test_taker_buy_above_volume_fails_volumes(day1: pl.DataFrame) -> None:
    minute = utc(2020, 1, 1, 3, 3)
    broken = at_minute(day1, minute, taker_buy_volume=pl.col("volume") * 1.5)
    failures = failed(broken)
    assert list(failures) == ["volumes"]
    volumes = failures["volumes"]
    assert volumes.failures.select("open_time", "rule").rows() == [
        (minute, "taker_buy_volume <= volume")
    ]
    row = volumes.failures.row(0, named=True)
    assert row["taker_buy_volume"] == row["volume"] * 1.5


def test_float_noise_within_tolerance_passes_volumes(day1: pl.DataFrame) -> None:
    noisy = day1.with_columns(
        taker_buy_volume=pl.col("volume") * (1 + 1e-12),
        taker_buy_quote_volume=pl.col("quote_volume") * (1 + 1e-12),
    )
    assert failed(noisy) == {}


def test_negative_volume_and_trade_count_fail_volumes(day1: pl.DataFrame) -> None:
    broken = at_minute(day1, utc(2020, 1, 1, 4), quote_volume=pl.lit(-1.0))
    broken = at_minute(broken, utc(2020, 1, 1, 5), trade_count=pl.lit(-3, pl.Int64))
    rules = failed(broken)["volumes"].failures.select("open_time", "rule").rows()
    assert (utc(2020, 1, 1, 4), "volumes are finite and >= 0") in rules
    assert (utc(2020, 1, 1, 5), "trade_count >= 0") in rules


def test_coinm_rows_must_carry_contract_volumes() -> None:
    cm = real_day(CM_BTC, date(2022, 10, 24), "1m")
    stripped = at_minute(cm, utc(2022, 10, 24, 0, 10), contract_volume=pl.lit(None, pl.Float64))
    rules = failed(stripped)["volumes"].failures["rule"].to_list()
    assert "contract volumes set iff market is cm" in rules
    mislabelled = cm.head(3).with_columns(market=pl.lit("um"))
    volumes = failed(mislabelled)["volumes"]
    assert volumes.failures["rule"].unique().to_list() == ["contract volumes set iff market is cm"]
    assert volumes.failures_by_day.rows() == [("um", "BTCUSD_PERP", date(2022, 10, 24), 3)]


def test_duplicate_key_fails_schema_and_lists_both_rows(day1: pl.DataFrame) -> None:
    broken = pl.concat([day1, day1.slice(7, 1)])
    failures = failed(broken)
    assert list(failures) == ["schema"]
    schema = failures["schema"]
    assert schema.failures.select("row", "open_time", "rule").rows() == [
        (7, utc(2020, 1, 1, 0, 7), "duplicate key (market, symbol, interval, open_time)"),
        (1440, utc(2020, 1, 1, 0, 7), "duplicate key (market, symbol, interval, open_time)"),
    ]
    assert schema.failures_by_day.rows() == [("spot", "BTCUSDT", date(2020, 1, 1), 2)]


def test_same_minute_in_other_market_is_not_a_duplicate(day1: pl.DataFrame) -> None:
    other_market = day1.with_columns(market=pl.lit("um"))
    assert failed(pl.concat([day1, other_market])) == {}


def test_nulls_and_wrong_dtypes_fail_schema(day1: pl.DataFrame) -> None:
    with_null = at_minute(day1, utc(2020, 1, 1, 9), close=pl.lit(None, pl.Float64))
    schema = failed(with_null)["schema"]
    assert schema.failures.select("open_time", "rule").rows() == [
        (utc(2020, 1, 1, 9), "close is null")
    ]

    wrong = day1.with_columns(
        pl.col("trade_count").cast(pl.Int32),
        pl.col("open_time").dt.cast_time_unit("us"),
        extra=pl.lit(1),
    ).drop("source")
    rules = failed(wrong)["schema"].failures["rule"].to_list()
    assert "trade_count has dtype Int32, expected Int64" in rules
    assert "missing column source" in rules
    assert "unexpected column extra" in rules
    assert any(rule.startswith("open_time has dtype Datetime(time_unit='us'") for rule in rules)


def test_missing_column_makes_value_checks_fail_not_crash(day1: pl.DataFrame) -> None:
    failures = failed(day1.drop("low"))
    assert set(failures) == {"schema", "ohlc_consistency"}
    rules = failures["ohlc_consistency"].failures["rule"].to_list()
    assert all("could not be evaluated" in rule for rule in rules)
    assert failures["ohlc_consistency"].failures["open_time"].null_count() == len(rules)


def test_checks_run_even_when_pandera_validation_is_disabled_globally(day1: pl.DataFrame) -> None:
    broken = at_minute(day1, utc(2020, 1, 1, 0, 5), high=pl.col("low"), low=pl.col("high"))
    with config_context(validation_enabled=False, validation_depth=ValidationDepth.SCHEMA_ONLY):
        assert list(failed(broken)) == ["ohlc_consistency"]


def test_schema_constant_matches_parser_output(day1: pl.DataFrame) -> None:
    assert day1.schema == pl.Schema(SILVER_KLINES_SCHEMA)
