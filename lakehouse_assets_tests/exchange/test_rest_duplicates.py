"""REST answers held to the archive's standard: repeated candles are compared, never silently merged.

The REST stand-in serves the real sample klines; its controls repeat candles inside a page
(``duplicate_candles``) or across pages, as an off-by-one proxy does (``overlap_pages``), either
identical or with one field altered. Identical copies are dropped and counted; copies that differ
fail their window, which is then reported as a gap with the reason, never filled.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse_assets.instruments import MARKETS
from lakehouse_assets.klines.rest import RestKlinesClient, RestSettings
from lakehouse_assets_tests.harness import FILLED, GAPS, resources, run_gapfill, run_klines, table
from lakehouse_assets_tests.samples import SPOT, real_day, remove_minutes, rewrite_zip_csv, utc, without
from lakehouse_dev.fakes.archive_server import ArchiveServer
from lakehouse_dev.fakes.rest_server import BinanceRestServer

HIGH, CLOSE, VOLUME = 2, 4, 5  # positions in a Binance kline row
DAY = date(2020, 1, 1)


def client(server: BinanceRestServer, **overrides: object) -> RestKlinesClient:
    settings = RestSettings(
        base_urls={m: server.base_url for m in MARKETS}, backoff_seconds=0.01, max_attempts=3, **overrides
    )
    return RestKlinesClient(settings, sleep=lambda seconds: None)


def hour(start: datetime, end: datetime) -> pl.DataFrame:
    frame = real_day(SPOT, DAY)
    return frame.filter((pl.col("open_time") >= start) & (pl.col("open_time") < end))


def real_row(server: BinanceRestServer, moment: datetime) -> list:
    ms = int(moment.timestamp() * 1000)
    (row,) = [r for r in server.rows("spot", "BTCUSDT", "1m") if r[0] == ms]
    return row


# ---------------------------------------------------------------------------------------------
# the client: one window


def test_identical_copies_within_a_page_are_dropped_and_counted(rest_server: BinanceRestServer) -> None:
    rest_server.duplicate_candles("spot", "BTCUSDT", utc(2020, 1, 1, 10, 5), utc(2020, 1, 1, 10, 8))
    # the same number written differently is the same value, as the archive parser reads it
    rest_server.duplicate_candles("spot", "BTCUSDT", utc(2020, 1, 1, 10, 30), utc(2020, 1, 1, 10, 31),
                                  change={CLOSE: "7203.21"})
    assert real_row(rest_server, utc(2020, 1, 1, 10, 30))[CLOSE] == "7203.21000000"
    outcome = client(rest_server).fetch(SPOT, "1m", utc(2020, 1, 1, 10), utc(2020, 1, 1, 11))
    assert (outcome.error, outcome.duplicates_dropped, outcome.requests) == (None, 4, 1)
    assert outcome.covered_until == utc(2020, 1, 1, 11)
    assert outcome.frame.drop("source").equals(hour(utc(2020, 1, 1, 10), utc(2020, 1, 1, 11)).drop("source"))


def test_a_conflicting_copy_within_a_page_fails_the_window_naming_the_candle(rest_server: BinanceRestServer) -> None:
    rest_server.duplicate_candles("spot", "BTCUSDT", utc(2020, 1, 1, 10, 5), utc(2020, 1, 1, 10, 6),
                                  change={CLOSE: "7200.00000000"})
    outcome = client(rest_server).fetch(SPOT, "1m", utc(2020, 1, 1, 10), utc(2020, 1, 1, 11))
    assert outcome.frame.height == 0  # not one candle of a self-contradicting answer is used
    assert outcome.covered_until == utc(2020, 1, 1, 10) and outcome.duplicates_dropped == 0
    assert outcome.error == (
        f"conflicting duplicate candles at 2020-01-01 10:05 UTC: binance via {rest_server.base_url} sent 2 "
        "copies of that candle that differ (close 7193.99000000 vs 7200.00000000)"
    )


def test_identical_repeats_across_pages_are_dropped_and_counted(rest_server: BinanceRestServer) -> None:
    rest_server.overlap_pages("spot", candles=2)
    outcome = client(rest_server, page_limit=20).fetch(SPOT, "1m", utc(2020, 1, 1, 10), utc(2020, 1, 1, 11))
    assert (outcome.error, outcome.duplicates_dropped, outcome.requests) == (None, 4, 3)  # pages 2 and 3 repeat 2
    assert outcome.frame.drop("source").equals(hour(utc(2020, 1, 1, 10), utc(2020, 1, 1, 11)).drop("source"))
    starts = [int(r.params["startTime"]) for r in rest_server.kline_requests()]
    first = int(utc(2020, 1, 1, 10).timestamp() * 1000)
    assert starts == [first, first + 20 * 60_000, first + 40 * 60_000]


def test_a_conflicting_repeat_across_pages_fails_the_window(rest_server: BinanceRestServer) -> None:
    rest_server.overlap_pages("spot", candles=1, change={HIGH: "9999.00"})
    outcome = client(rest_server, page_limit=20).fetch(SPOT, "1m", utc(2020, 1, 1, 10), utc(2020, 1, 1, 11))
    assert outcome.frame.height == 0 and outcome.covered_until == utc(2020, 1, 1, 10)
    assert outcome.error == (
        f"conflicting duplicate candles at 2020-01-01 10:19 UTC: binance via {rest_server.base_url} sent 2 "
        "copies of that candle that differ (high 7206.51000000 vs 9999.00)"
    )


@pytest.mark.parametrize(("change", "dropped", "error"), [
    (None, 1, None),
    ({CLOSE: "7200.00000000"}, 0, "conflicting duplicate candles at 2020-01-01 10:05 UTC: binance via {base} sent 2 "
                                  "copies of that candle that differ (close 7193.99 vs 7200.0)"),
], ids=["identical", "conflicting"])
def test_the_ohlcv_path_follows_the_same_rule(
    rest_server: BinanceRestServer, change: dict | None, dropped: int, error: str | None
) -> None:
    rest_server.duplicate_candles("spot", "BTCUSDT", utc(2020, 1, 1, 10, 5), utc(2020, 1, 1, 10, 6), change=change)
    outcome = client(rest_server, kline_api="ohlcv").fetch(SPOT, "1m", utc(2020, 1, 1, 10), utc(2020, 1, 1, 11))
    assert outcome.duplicates_dropped == dropped
    assert outcome.error == (error.format(base=rest_server.base_url) if error else None)
    if error is None:
        expected = hour(utc(2020, 1, 1, 10), utc(2020, 1, 1, 11)).select("open_time", "open", "high", "low", "close", "volume")
        assert outcome.frame.select(expected.columns).equals(expected)
    else:
        assert outcome.frame.height == 0


# ---------------------------------------------------------------------------------------------
# the pipeline: archive -> silver -> klines_filled + kline_gaps


def _two_holes(mirror: Path) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    morning, evening = (utc(2020, 1, 1, 2), utc(2020, 1, 1, 2, 30)), (utc(2020, 1, 1, 20), utc(2020, 1, 1, 20, 30))
    path = mirror / SPOT.daily_klines_path("1m", DAY)
    rewrite_zip_csv(path, remove_minutes(*morning))
    rewrite_zip_csv(path, remove_minutes(*evening))
    return morning, evening


def test_a_window_with_conflicting_candles_is_not_filled_and_its_gap_says_why(
    tmp_path: Path, mirror: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    morning, evening = _two_holes(mirror)
    # every candle of 20:05..20:24 is sent twice, the second copy with another volume: plausible values that
    # pass every quality check, so "last copy wins" would silently have filled 20 wrong bars
    rest_server.duplicate_candles("spot", "BTCUSDT", utc(2020, 1, 1, 20, 5), utc(2020, 1, 1, 20, 25),
                                  change={VOLUME: "999.00000000"})
    volume_at_2005 = real_row(rest_server, utc(2020, 1, 1, 20, 5))[VOLUME]
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as archive:
        # 100 candles per page keeps the two holes in two windows (one page each; together: 11 pages)
        res = resources(lake, archive.base_url, "spot:BTCUSDT", rest_url=rest_server.base_url, page_limit=100)
        assert run_klines(res, "2020-01-01", "2020-01-01", instance).success
        result = run_gapfill(res, "2020-01-01", None, instance)
    assert result.success

    filled = table(lake, FILLED, "2020-01-01")
    original = real_day(SPOT, DAY)
    assert filled.height == 1440 - 30
    assert filled.drop("source").equals(without(original, *evening).drop("source"))  # the rest of the day, exact
    assert filled.filter(pl.col("source") == "rest")["open_time"].to_list() == [
        utc(2020, 1, 1, 2, m) for m in range(30)
    ]
    gaps = table(lake, GAPS, "2020-01-01")
    assert gaps.select("gap_start", "gap_end", "bars", "minutes", "reason").rows() == [(
        evening[0], evening[1], 30, 30,
        f"fetch failed: conflicting duplicate candles at 2020-01-01 20:05 UTC: binance via {rest_server.base_url} "
        f"sent 2 copies of that candle that differ (volume {volume_at_2005} vs 999.00000000)",
    )]
    materialization = result.asset_materializations_for_node("klines_filled")[0]
    assert materialization.metadata["rest_rows"].value == 30
    assert materialization.metadata["rest_duplicates_dropped"].value == 0


def test_identical_repeats_fill_the_day_exactly_and_are_counted(
    tmp_path: Path, mirror: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    _two_holes(mirror)
    rest_server.overlap_pages("spot", candles=1)  # each continuation page repeats the previous page's last candle
    rest_server.duplicate_candles("spot", "BTCUSDT", utc(2020, 1, 1, 20, 3), utc(2020, 1, 1, 20, 6))
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as archive:
        res = resources(lake, archive.base_url, "spot:BTCUSDT", rest_url=rest_server.base_url, page_limit=12)
        assert run_klines(res, "2020-01-01", "2020-01-01", instance).success
        result = run_gapfill(res, "2020-01-01", None, instance)
    assert result.success
    filled = table(lake, FILLED, "2020-01-01")
    assert filled.drop("source").equals(real_day(SPOT, DAY).drop("source"))
    assert filled.filter(pl.col("source") == "rest").height == 60
    assert not list((lake / GAPS).rglob("*.parquet")) or table(lake, GAPS, "2020-01-01").height == 0
    # two windows of 30 bars in pages of 12: 3 pages each, 2 continuation pages each repeating one candle,
    # plus 3 candles served twice inside the first page of the evening
    assert len(rest_server.kline_requests()) == 6
    materialization = result.asset_materializations_for_node("klines_filled")[0]
    assert materialization.metadata["rest_duplicates_dropped"].value == 2 * 2 + 3
    assert materialization.metadata["remaining_gaps"].value == 0
