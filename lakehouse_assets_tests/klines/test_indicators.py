"""gold features vs TA-Lib run over the whole contiguous history, on real Binance bars (no Dagster)."""

from __future__ import annotations

import math
import statistics
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
import talib

from lakehouse_assets.klines.indicators import (
    FEATURES_SCHEMA,
    TALIB_COLUMNS,
    WARMUP_BARS,
    bars_per_year,
    check_talib_defaults,
    compute_features,
    features_for_window,
    history_bars,
    lookback_days,
    missing_history_bars,
)
from lakehouse_assets.klines.schema import INTERVAL_MS
from lakehouse_assets_tests.samples import assert_matches, hourly, minutes_adabtc, minutes_spot, talib_full, utc


def test_talib_globals_are_the_defaults() -> None:
    assert talib.__version__ == "0.8.2" and talib.__ta_version__.startswith(b"0.8.1")
    assert talib.get_compatibility() == 0
    check_talib_defaults()


@pytest.mark.parametrize(
    "source", ["spot BTCUSDT 1m 2020-01-01..03", "spot ADABTC 1m (satoshi prices)", "spot BTCUSDT 1h 2021-05..07"]
)
def test_equal_to_talib_over_the_whole_contiguous_history(source: str) -> None:
    bars = {
        "spot BTCUSDT 1m 2020-01-01..03": minutes_spot,
        "spot ADABTC 1m (satoshi prices)": minutes_adabtc,
        "spot BTCUSDT 1h 2021-05..07": lambda: hourly("2021-05", "2021-06", "2021-07"),
    }[source]()
    out = compute_features(bars)
    assert out.height == bars.height and dict(out.schema) == FEATURES_SCHEMA
    for name, reference in talib_full(bars.sort("open_time")).items():
        assert_matches(out[name], reference)
    # warm-up positions are TA-Lib's: RSI/ATR from bar 14, Bollinger from 19, MACD (all three) from 33
    assert [
        out[c].null_count() for c in ("rsi_14", "atr_14", "bb_middle_20_2", "macd_12_26_9", "macd_signal_12_26_9")
    ] == [14, 14, 19, 33, 33]


def test_seeding_rules_match_an_independent_reimplementation() -> None:
    """Guards against version drift: TA-Lib's RSI and MACD seeds, re-derived in plain numpy (indicator_conventions.md)."""
    c = hourly("2021-05")["close"].to_numpy()
    out = compute_features(hourly("2021-05"))

    d = np.diff(c)
    gain, loss = np.clip(d, 0, None), np.clip(-d, 0, None)
    g, lo = gain[:14].mean(), loss[:14].mean()
    rsi = [100 * g / (g + lo)]
    for x, y in zip(gain[14:], loss[14:], strict=True):
        g, lo = (g * 13 + x) / 14, (lo * 13 + y) / 14
        rsi.append(100 * g / (g + lo))
    np.testing.assert_allclose(out["rsi_14"].to_numpy()[14:], rsi, rtol=1e-12)

    def ema(x: np.ndarray, n: int, seed_end: int) -> np.ndarray:
        k, out_ = 2 / (n + 1), np.full(len(x), np.nan)
        out_[seed_end] = x[seed_end - n + 1 : seed_end + 1].mean()
        for i in range(seed_end + 1, len(x)):
            out_[i] = (x[i] - out_[i - 1]) * k + out_[i - 1]
        return out_

    # fast EMA seeded on the window ENDING with the slow seed (bar 25), not at bar 11
    line = ema(c, 12, 25) - ema(c, 26, 25)
    signal = ema(np.where(np.isnan(line), 0, line), 9, 33)
    np.testing.assert_allclose(out["macd_12_26_9"].to_numpy()[33:], line[33:], rtol=1e-9)
    np.testing.assert_allclose(out["macd_signal_12_26_9"].to_numpy()[33:], signal[33:], rtol=1e-9)
    # Bollinger: population std (ddof=0)
    window = c[100 - 19 : 101]
    assert out["bb_upper_20_2"][100] == pytest.approx(window.mean() + 2 * window.std(ddof=0), rel=1e-12)


def test_a_real_gap_restarts_every_indicator_instead_of_poisoning_it() -> None:
    bars = hourly("2020-02")  # Binance maintenance: 02:00 on 02-09 and 12:00-16:00 on 02-19 are missing
    out = compute_features(bars)
    assert out.height == 690
    after_first, after_second = utc(2020, 2, 9, 3), utc(2020, 2, 19, 17)
    starts = [0, out["open_time"].to_list().index(after_first), out["open_time"].to_list().index(after_second)]
    ends = [starts[1], starts[2], out.height]
    for a, b in zip(starts, ends, strict=True):
        segment = bars.slice(a, b - a)
        for name, reference in talib_full(segment).items():
            assert_matches(out[name].slice(a, b - a), reference)  # each segment == TA-Lib on that segment alone
    row = out.row(starts[2], named=True)
    assert row["ret_1"] is None and row["log_ret_1"] is None and row["rsi_14"] is None and row["macd_12_26_9"] is None
    assert out["rsi_14"][starts[2] + 14] is not None and out["macd_12_26_9"][starts[2] + 32] is None
    assert out["macd_12_26_9"][starts[2] + 33] is not None
    # TA-Lib over the concatenation would have pretended the hole is not there: different values
    naive = talib.RSI(bars["close"].to_numpy(), 14)
    assert abs(naive[starts[2] + 20] - out["rsi_14"][starts[2] + 20]) > 1e-3
    # the 24h window after the 5h hole holds only the bars that exist
    assert out.filter(pl.col("open_time") == after_second)["bars_24h"].item() == 24 - 5
    assert out.filter(pl.col("open_time") == after_first)["bars_24h"].item() == 23


def test_no_look_ahead_value_at_t_only_uses_bars_up_to_t() -> None:
    bars = hourly("2020-02")
    full = compute_features(bars)
    for t in (20, 40, 150, 400, 531, 689):
        truncated = compute_features(bars.head(t + 1))
        assert truncated.row(t) == full.row(t), t
    minutes = minutes_spot()
    full_m = compute_features(minutes)
    for t in (1439, 2000, 4319):
        assert compute_features(minutes.head(t + 1)).row(t) == full_m.row(t)


def test_lookback_window_equals_full_history() -> None:
    """A day computed from only its lookback (25 days of 1h) equals the same day computed from 3 months."""
    bars = hourly("2021-05", "2021-06", "2021-07")
    full = compute_features(bars)
    for day in (utc(2021, 7, 1), utc(2021, 7, 20), utc(2021, 7, 31)):
        since = day - timedelta(days=lookback_days("1h"))
        assert since > utc(2021, 5, 1)  # the window really is shorter than the history
        window = features_for_window(bars.filter(pl.col("open_time") >= since), day, day + timedelta(days=1))
        expected = full.filter(pl.col("open_time") >= day, pl.col("open_time") < day + timedelta(days=1))
        assert window.height == 24
        for name in (*TALIB_COLUMNS, "vwap_24h", "realized_vol_24h", "volume_zscore_24h", "ret_1"):
            assert_matches(window[name], expected[name].to_numpy().astype(float))
        # RSI, ATR and MACD are not just close but identical: the seed difference decayed below float resolution
        for name in ("rsi_14", "atr_14", "macd_12_26_9", "macd_signal_12_26_9"):
            assert window[name].equals(expected[name])


def test_lookback_days_per_interval() -> None:
    assert WARMUP_BARS == 600
    assert {i: lookback_days(i) for i in ("1m", "5m", "15m", "1h", "4h", "1d")} == {
        "1m": 1,
        "5m": 3,
        "15m": 7,
        "1h": 25,
        "4h": 100,
        "1d": 600,
    }


def test_history_bars_per_interval_fit_in_the_lookback() -> None:
    """The bars a value depends on: 600 for TA-Lib, but a whole day at 1m (24h window + its first return)."""
    assert {i: history_bars(i) for i in ("1m", "5m", "15m", "1h", "4h", "1d")} == {
        "1m": 1440,
        "5m": 600,
        "15m": 600,
        "1h": 600,
        "4h": 600,
        "1d": 600,
    }
    for interval in ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d"):
        assert history_bars(interval) * INTERVAL_MS[interval] <= lookback_days(interval) * 86_400_000


def test_every_bar_has_lookback_complete_when_no_day_is_absent() -> None:
    bars = hourly("2020-02")  # with two real maintenance holes: holes are history too, nothing is absent
    out = compute_features(bars)
    assert out["lookback_complete"].all() and out["lookback_complete"].null_count() == 0
    assert compute_features(bars, absent_days=[date(2020, 1, 31)]).drop("lookback_complete").equals(
        out.drop("lookback_complete")
    )  # absent days only mark bars; they never change a value


def test_an_absent_day_marks_exactly_the_bars_whose_600_bar_history_needed_it() -> None:
    """2021-06-10 never materialized: TA-Lib restarts on 06-11 00:00 as after a hole, and the next 600 hourly bars
    (until 07-05 23:00) are marked. Every bar not marked equals the run over the whole history; the marked ones
    do not (so the mark is needed, not just cautious)."""
    bars = hourly("2021-05", "2021-06", "2021-07")
    full = compute_features(bars)
    absent = date(2021, 6, 10)
    partial = compute_features(bars.filter(pl.col("open_time").dt.date() != absent), absent_days=[absent])

    marked = partial.filter(~pl.col("lookback_complete"))
    assert (marked.height, marked["open_time"].min(), marked["open_time"].max()) == (
        600,
        utc(2021, 6, 11),
        utc(2021, 7, 5, 23),
    )
    missing = missing_history_bars(marked["open_time"], "1h", [absent])
    assert missing.head(3).to_list() == [24, 24, 24] and missing.tail(3).to_list() == [3, 2, 1]
    assert marked["rsi_14"].head(14).null_count() == 14  # warming up again after the absent day

    kept = partial.filter("lookback_complete")
    expected = full.join(kept.select("open_time"), on="open_time", how="semi")
    assert kept.height == full.height - 24 - 600 and kept["open_time"].equals(expected["open_time"])
    for name in ("rsi_14", "atr_14", "macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9", "ret_1",
                 "log_ret_1", "vwap_24h", "realized_vol_24h", "volume_zscore_24h", "bars_24h", "close"):
        assert kept[name].equals(expected[name]), name  # fmt: skip
    for name in ("bb_upper_20_2", "bb_middle_20_2", "bb_lower_20_2"):
        assert_matches(kept[name], expected[name].to_numpy().astype(float))  # running sums: 1e-13
    wrong = full.join(marked.select("open_time"), on="open_time", how="semi")
    assert not marked["rsi_14"].equals(wrong["rsi_14"]) and not marked["ret_1"].equals(wrong["ret_1"])


def test_an_absent_lookback_day_marks_a_whole_day_of_minutes() -> None:
    """1m of 2020-01-03 with 2020-01-02 absent: every bar's 24h window reaches into the absent day, even the last
    one's (its first bar, 00:00, has a return on 01-02 23:59), so all 1440 are marked, 1440 down to 1 bars short.
    With 01-02 present the same day is unmarked and equals the run over all three days."""
    minutes = minutes_spot()
    full = compute_features(minutes)
    day, end = utc(2020, 1, 3), utc(2020, 1, 4)
    out = features_for_window(minutes.filter(pl.col("open_time") >= day), day, end, absent_days=[date(2020, 1, 2)])
    assert out.height == 1440 and int(out["lookback_complete"].sum()) == 0
    assert missing_history_bars(out["open_time"], "1m", [date(2020, 1, 2)]).to_list() == list(range(1440, 0, -1))
    last, reference = out.row(-1, named=True), full.row(-1, named=True)
    assert last["open_time"] == reference["open_time"] == utc(2020, 1, 3, 23, 59)
    assert last["rsi_14"] == reference["rsi_14"]  # 1439 bars warmed TA-Lib up, but the 24h window lacks a return:
    assert last["realized_vol_24h"] != reference["realized_vol_24h"]

    with_lookback = features_for_window(minutes.filter(pl.col("open_time") >= utc(2020, 1, 2)), day, end)
    assert with_lookback["lookback_complete"].all()
    expected = full.filter(pl.col("open_time") >= day)
    for name in ("rsi_14", "atr_14", "macd_12_26_9", "ret_1", "bars_24h"):
        assert with_lookback[name].equals(expected[name]), name
    for name in ("realized_vol_24h", "volume_zscore_24h"):  # rolling sums started elsewhere: 1e-9
        assert_matches(with_lookback[name], expected[name].to_numpy().astype(float))


def test_rolling_24h_definitions_by_plain_python() -> None:
    bars = hourly("2021-05")
    out = compute_features(bars)
    rows = bars.to_dicts()
    for t in (0, 1, 23, 24, 300, 743):
        window = rows[max(0, t - 23) : t + 1]  # open_time in (t-24h, t]: the last 24 hourly bars
        got = out.row(t, named=True)
        assert got["bars_24h"] == len(window)
        assert got["vwap_24h"] == pytest.approx(
            sum(r["quote_volume"] for r in window) / sum(r["volume"] for r in window), rel=1e-12
        )
        closes = [r["close"] for r in rows[max(0, t - 24) : t + 1]]
        log_returns = [math.log(b / a) for a, b in zip(closes, closes[1:], strict=False)][-len(window) :]
        if len(log_returns) >= 2:
            expected_vol = statistics.stdev(log_returns) * math.sqrt(365 * 24)
            assert got["realized_vol_24h"] == pytest.approx(expected_vol, rel=1e-9)
        else:
            assert got["realized_vol_24h"] is None
        volumes = [r["volume"] for r in window]
        if len(volumes) >= 2:
            z = (volumes[-1] - statistics.mean(volumes)) / statistics.stdev(volumes)
            assert got["volume_zscore_24h"] == pytest.approx(z, rel=1e-9)
        assert got["ret_1"] == (
            None if t == 0 else pytest.approx(rows[t]["close"] / rows[t - 1]["close"] - 1, rel=1e-12)
        )
    assert bars_per_year("1m") == 525_600 and bars_per_year("1d") == 365


def test_daily_bars_have_single_bar_24h_windows() -> None:
    bars = (
        hourly("2021-05")
        .group_by_dynamic("open_time", every="1d")
        .agg(
            pl.col("market", "symbol").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.col("quote_volume").sum(),
        )
        .with_columns(interval=pl.lit("1d"))
    )
    out = compute_features(bars)
    assert out["bars_24h"].unique().to_list() == [1]
    assert out["realized_vol_24h"].null_count() == out.height and out["volume_zscore_24h"].null_count() == out.height
    np.testing.assert_allclose(
        out["vwap_24h"].to_numpy(), (bars["quote_volume"] / bars["volume"]).to_numpy(), rtol=1e-15
    )


def test_several_instruments_and_intervals_in_one_frame_are_independent() -> None:
    spot = minutes_spot()
    ada = minutes_adabtc()
    hours = hourly("2020-02")
    together = compute_features(
        pl.concat([hours, spot.select(hours.columns), ada.select(hours.columns)]).sample(
            fraction=1.0, shuffle=True, seed=7
        )
    )
    for part in (spot, ada, hours):
        alone = compute_features(part)
        key = part.select("market", "symbol", "interval").row(0)
        assert together.filter(
            pl.col("market") == key[0], pl.col("symbol") == key[1], pl.col("interval") == key[2]
        ).equals(alone)


def test_bad_input_is_refused() -> None:
    bars = hourly("2020-02")
    with pytest.raises(ValueError, match=r"rows sharing a key, e.g. spot:BTCUSDT 1h 2020-02-01 00:00"):
        compute_features(pl.concat([bars, bars.head(1)]))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['quote_volume'\]"):
        compute_features(bars.drop("quote_volume"))
    assert compute_features(bars.clear()).height == 0


def test_refuses_to_run_with_changed_talib_globals() -> None:
    """set_unstable_period is process-global and shifts every RSI value; a notebook may have called it."""
    talib.set_unstable_period("RSI", 5)
    try:
        with pytest.raises(RuntimeError, match="unstable period for RSI"):
            compute_features(hourly("2020-02"))
    finally:
        talib.set_unstable_period("RSI", 0)
    check_talib_defaults()
