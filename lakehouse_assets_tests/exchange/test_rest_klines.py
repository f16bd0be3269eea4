"""The ccxt REST client against the local Binance-compatible server serving the real sample klines."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import ccxt
import polars as pl
import pytest

from lakehouse_assets.exchange.client import RestAccessError, rebase_urls, resolve_unified_symbol
from lakehouse_assets.instruments import MARKETS, Instrument
from lakehouse_assets.klines.gapfill import REASON_NO_DATA, fill_gaps
from lakehouse_assets.klines.rest import RestKlinesClient, RestSettings
from lakehouse_assets_tests.samples import CM, SPOT, UM, contract_size, real_day, spot_1h_february_2020, utc, without
from lakehouse_dev.fakes.rest_server import BinanceRestServer

MINUTE_MS = 60_000
LATER = utc(2030, 1, 1)


def make_client(server: BinanceRestServer, **overrides: object) -> tuple[RestKlinesClient, list[float]]:
    waits: list[float] = []
    options: dict = {"backoff_seconds": 0.01, "max_attempts": 3, **overrides}
    settings = RestSettings(base_urls={m: server.base_url for m in MARKETS}, **options)
    # COIN-M sizes as the gap-fill asset gets them: exchangeInfo's contractSize (the stand-in's answer)
    return RestKlinesClient(settings, sleep=waits.append, contract_size=contract_size), waits


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


# ---------------------------------------------------------------------------------------------
# pagination and values


@pytest.mark.parametrize(
    ("instrument", "day", "path"),
    [
        (SPOT, date(2020, 1, 1), "/api/v3/klines"),
        (UM, date(2022, 5, 4), "/fapi/v1/klines"),
        (CM, date(2022, 10, 24), "/dapi/v1/klines"),  # contracts -> BTC and USD exactly as the archive parser does
    ],
)
def test_a_full_day_in_two_pages_equals_the_archive_file_value_for_value(
    rest_server: BinanceRestServer, instrument: Instrument, day: date, path: str
) -> None:
    client, _ = make_client(rest_server)
    start, end = day_bounds(day)
    outcome = client.fetch(instrument, "1m", start, end)
    assert outcome.error is None and outcome.covered_until == end
    assert outcome.requests == 2 and outcome.retries == 0
    archive = real_day(instrument, day)
    assert outcome.frame.height == 1440
    assert outcome.frame.drop("source").equals(archive.drop("source"))
    assert set(outcome.frame["source"]) == {"rest"}
    requests = rest_server.kline_requests(instrument.market)
    assert [r.path for r in requests] == [path, path]
    assert [int(r.params["startTime"]) for r in requests] == [ms(start), ms(start) + 1000 * MINUTE_MS]
    assert {r.params["endTime"] for r in requests} == {str(ms(end) - 1)}
    assert {r.params["limit"] for r in requests} == {"1000"}
    assert client.exchange(instrument.market).enableRateLimit is True


def test_small_pages_across_days_exact_counts_no_duplicates(rest_server: BinanceRestServer) -> None:
    client, _ = make_client(rest_server, page_limit=300)
    start, end = utc(2020, 1, 1), utc(2020, 1, 2, 12)  # 2160 bars
    outcome = client.fetch(SPOT, "1m", start, end)
    assert outcome.frame.height == 2160
    assert outcome.frame["open_time"].n_unique() == 2160
    assert outcome.frame["open_time"].is_sorted()
    starts = [int(r.params["startTime"]) for r in rest_server.kline_requests("spot")]
    assert starts == [ms(start) + k * 300 * MINUTE_MS for k in range(8)]  # ceil(2160 / 300) = 8, no extra request
    expected = pl.concat([real_day(SPOT, date(2020, 1, 1)), real_day(SPOT, date(2020, 1, 2)).head(720)])
    assert outcome.frame.drop("source").equals(expected.drop("source"))


def test_window_end_is_respected(rest_server: BinanceRestServer) -> None:
    client, _ = make_client(rest_server)
    outcome = client.fetch(SPOT, "1m", utc(2020, 1, 1, 10), utc(2020, 1, 1, 10, 7))
    assert outcome.frame["open_time"].to_list() == [utc(2020, 1, 1, 10, m) for m in range(7)]
    (request,) = rest_server.kline_requests()
    assert request.params["endTime"] == str(ms(utc(2020, 1, 1, 10, 7)) - 1)


def test_bars_the_exchange_does_not_have_end_the_window_with_one_extra_request(rest_server: BinanceRestServer) -> None:
    rest_server.drop("spot", "BTCUSDT", utc(2020, 1, 1, 10, 30), utc(2020, 1, 1, 11))
    client, _ = make_client(rest_server)
    outcome = client.fetch(SPOT, "1m", utc(2020, 1, 1, 10), utc(2020, 1, 1, 11))
    assert outcome.frame.height == 30 and outcome.error is None and outcome.covered_until == utc(2020, 1, 1, 11)
    assert len(rest_server.kline_requests()) == 2  # the second page (from 10:30) came back empty: stop


# ---------------------------------------------------------------------------------------------
# misbehaving servers


def test_empty_page_does_not_loop_forever(rest_server: BinanceRestServer) -> None:
    rest_server.empty_pages("/api/v3/klines", times=100)
    client, _ = make_client(rest_server)
    outcome = client.fetch(SPOT, "1m", *day_bounds(date(2020, 1, 1)))
    assert outcome.frame.height == 0 and outcome.error is None
    assert len(rest_server.kline_requests()) == 1


def test_a_server_ignoring_start_time_cannot_loop_or_fake_no_data(rest_server: BinanceRestServer) -> None:
    rest_server.ignore_start_time("spot")
    client, _ = make_client(rest_server)
    outcome = client.fetch(SPOT, "1m", utc(2020, 1, 1, 10), utc(2020, 1, 1, 12))
    assert outcome.frame.height == 0
    assert outcome.error is not None and "ignores startTime" in outcome.error
    assert outcome.covered_until == utc(2020, 1, 1, 10)
    assert len(rest_server.kline_requests()) == 1


def test_429_then_success_waits_retry_after(rest_server: BinanceRestServer) -> None:
    rest_server.fail("/api/v3/klines", 429, retry_after=3)
    client, waits = make_client(rest_server)
    outcome = client.fetch(SPOT, "1m", utc(2020, 1, 1, 10), utc(2020, 1, 1, 11))
    assert outcome.frame.height == 60 and outcome.error is None
    assert (outcome.requests, outcome.retries) == (2, 1)
    assert waits == [3.0]
    assert [r.status for r in rest_server.kline_requests()] == [429, 200]


def test_429_without_retry_after_backs_off_exponentially_and_gives_up(rest_server: BinanceRestServer) -> None:
    rest_server.fail("/api/v3/klines", 429, times=3)
    client, waits = make_client(rest_server)
    outcome = client.fetch(SPOT, "1m", utc(2020, 1, 1, 10), utc(2020, 1, 1, 11))
    assert waits == [0.01, 0.02]
    assert outcome.frame.height == 0 and outcome.requests == 3
    assert outcome.error is not None and "HTTP 429" in outcome.error and "Too many requests" in outcome.error
    assert outcome.covered_until == utc(2020, 1, 1, 10)


def test_500_is_retried(rest_server: BinanceRestServer) -> None:
    rest_server.fail("/fapi/v1/klines", 500)
    client, waits = make_client(rest_server)
    outcome = client.fetch(UM, "1m", utc(2022, 5, 4), utc(2022, 5, 4, 1))
    assert outcome.frame.height == 60 and outcome.retries == 1 and waits == [0.01]


def test_418_ban_longer_than_the_longest_wait_stops_at_once(rest_server: BinanceRestServer) -> None:
    rest_server.fail("/api/v3/klines", 418, retry_after=7200)
    client, waits = make_client(rest_server)
    with pytest.raises(RestAccessError, match=r"HTTP 418 .*banned .* for 7200 s"):
        client.fetch(SPOT, "1m", utc(2020, 1, 1, 10), utc(2020, 1, 1, 11))
    assert waits == [] and len(rest_server.kline_requests()) == 1


def test_451_geo_block_is_a_clear_error(rest_server: BinanceRestServer) -> None:
    rest_server.fail("/api/v3/klines", 451)
    client, waits = make_client(rest_server)
    with pytest.raises(RestAccessError) as info:
        client.fetch(SPOT, "1m", utc(2020, 1, 1, 10), utc(2020, 1, 1, 11))
    message = str(info.value)
    assert "HTTP 451" in message and "geo-block" in message and "restricted location" in message
    assert "LAKEHOUSE_REST_URL" in message and "spot:BTCUSDT" in message
    assert waits == [] and len(rest_server.kline_requests()) == 1  # no retry: it would not help


def test_auth_error_is_a_clear_error(rest_server: BinanceRestServer) -> None:
    rest_server.fail("/dapi/v1/klines", 401)
    client, _ = make_client(rest_server)
    with pytest.raises(RestAccessError, match=r"authentication refused \(HTTP 401\).*Invalid API-key"):
        client.fetch(CM, "1m", utc(2022, 10, 24), utc(2022, 10, 24, 1))


def test_a_base_url_that_does_not_serve_the_api_is_a_clear_error(rest_server: BinanceRestServer) -> None:
    client = RestKlinesClient(RestSettings(base_urls={"spot": rest_server.base_url + "/wrong"}, max_attempts=2))
    with pytest.raises(RestAccessError, match=r"HTTP 404 for http://127.0.0.1:\d+/wrong/api/v3/klines"):
        client.fetch(SPOT, "1m", utc(2020, 1, 1), utc(2020, 1, 1, 1))


def test_unknown_symbol_ends_the_window_with_a_reason(rest_server: BinanceRestServer) -> None:
    client, waits = make_client(rest_server)
    outcome = client.fetch(Instrument("spot", "XRPUSDT"), "1m", utc(2020, 1, 1), utc(2020, 1, 1, 1))
    assert outcome.frame.height == 0 and waits == []
    assert outcome.error is not None and "XRPUSDT is unknown to binance" in outcome.error


def test_a_rejected_request_is_not_retried_and_pages_are_clamped_to_binance_maxima(rest_server: BinanceRestServer) -> None:
    client, waits = make_client(rest_server, page_limit=1500)
    outcome = client.fetch(SPOT, "1m", utc(2020, 1, 1), utc(2020, 1, 2))
    assert outcome.frame.height == 1440  # spot allows 1000 per page: 1500 is clamped, not sent
    assert [r.params["limit"] for r in rest_server.kline_requests()] == ["1000", "1000"]
    rest_server.clear_requests()
    rest_server.fail("/api/v3/klines", 400, body={"code": -1120, "msg": "Invalid interval."})
    outcome = client.fetch(SPOT, "1m", utc(2020, 1, 1), utc(2020, 1, 1, 1))
    assert outcome.error is not None and "rejected the request" in outcome.error and "Invalid interval" in outcome.error
    assert waits == [] and len(rest_server.kline_requests()) == 1


def test_unreachable_server_retries_then_reports_the_failure() -> None:
    waits: list[float] = []
    client = RestKlinesClient(
        RestSettings(base_urls={"spot": "http://127.0.0.1:9"}, max_attempts=3, backoff_seconds=0.01, timeout_seconds=2),
        sleep=waits.append,
    )
    outcome = client.fetch(SPOT, "1m", utc(2020, 1, 1), utc(2020, 1, 1, 1))
    assert outcome.requests == 3 and waits == [0.01, 0.02]
    assert outcome.error is not None and "after 3 attempts" in outcome.error


def test_unknown_exchange_id_is_a_configuration_error() -> None:
    client = RestKlinesClient(RestSettings(exchanges={"spot": "nosuchexchange"}))
    with pytest.raises(RestAccessError, match="unknown ccxt exchange id 'nosuchexchange'.*LAKEHOUSE_REST_EXCHANGE_SPOT"):
        client.fetch(SPOT, "1m", utc(2020, 1, 1), utc(2020, 1, 1, 1))


# ---------------------------------------------------------------------------------------------
# fetch_ohlcv fallback, symbols, URLs


def test_ohlcv_mode_goes_through_ccxt_fetch_ohlcv_and_leaves_unknown_columns_null(rest_server: BinanceRestServer) -> None:
    client, _ = make_client(rest_server, kline_api="ohlcv")
    assert not client.uses_raw_klines("cm")
    start, end = day_bounds(date(2022, 10, 24))
    outcome = client.fetch(CM, "1m", start, end)
    archive = real_day(CM, date(2022, 10, 24))
    known = ["open_time", "close_time", "open", "high", "low", "close", "volume"]
    assert outcome.frame.height == 1440
    assert outcome.frame.select(known).equals(archive.select(known))  # volume = BTC, as in silver
    for column in ("quote_volume", "trade_count", "taker_buy_volume", "contract_volume"):
        assert outcome.frame[column].null_count() == 1440
    paths = [r.path for r in rest_server.requests]
    assert paths == ["/dapi/v1/exchangeInfo", "/dapi/v1/klines", "/dapi/v1/klines"]


def test_symbols_resolve_to_ccxt_unified_symbols(rest_server: BinanceRestServer) -> None:
    client, _ = make_client(rest_server)
    resolved = {}
    for inst in (SPOT, UM, CM):
        exchange = client.exchange(inst.market)
        exchange.load_markets()
        resolved[inst.key] = resolve_unified_symbol(exchange.markets, inst, exchange.id)
    assert resolved == {"spot:BTCUSDT": "BTC/USDT", "um:BTCUSDT": "BTC/USDT:USDT", "cm:BTCUSD_PERP": "BTC/USD:BTC"}
    # an exchange with other market ids (OKX style) is matched by base, quote and contract type
    okx_style = {
        "BTC/USDT": {"id": "BTC-USDT", "symbol": "BTC/USDT", "base": "BTC", "quote": "USDT", "spot": True},
        "BTC/USDT:USDT": {"id": "BTC-USDT-SWAP", "symbol": "BTC/USDT:USDT", "base": "BTC", "quote": "USDT",
                          "swap": True, "linear": True},
        "BTC/USD:BTC": {"id": "BTC-USD-SWAP", "symbol": "BTC/USD:BTC", "base": "BTC", "quote": "USD",
                        "swap": True, "inverse": True},
    }
    assert [resolve_unified_symbol(okx_style, i, "okx") for i in (SPOT, UM, CM)] == [
        "BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC"
    ]
    with pytest.raises(RestAccessError, match="okx has no spot market matching spot:ETHUSDT"):
        resolve_unified_symbol(okx_style, Instrument("spot", "ETHUSDT"), "okx")


def test_rebase_urls_keeps_paths() -> None:
    api = ccxt.binanceusdm().urls["api"]
    rebased = rebase_urls(api, "http://127.0.0.1:8080/mirror/")
    assert rebased["fapiPublic"] == "http://127.0.0.1:8080/mirror/fapi/v1"
    assert rebased["public"] == "http://127.0.0.1:8080/mirror/api/v3"
    assert all(v.startswith("http://127.0.0.1:8080/mirror/") for v in rebased.values())
    with pytest.raises(ValueError, match="scheme://host"):
        rebase_urls(api, "127.0.0.1:8080")


# ---------------------------------------------------------------------------------------------
# fill_gaps with the real client


def test_real_maintenance_gap_is_reported_not_filled(rest_server: BinanceRestServer) -> None:
    """2020-02-19: Binance maintenance, 12:00-16:00 missing in the archive AND over REST (1h bars)."""
    archive = spot_1h_february_2020()
    damaged = without(archive, utc(2020, 2, 19, 3), utc(2020, 2, 19, 6))  # a hole REST can fill
    client, _ = make_client(rest_server)
    result = fill_gaps(damaged, instruments=[SPOT], days=[date(2020, 2, 19)], interval="1h", now=LATER,
                       fetcher=client, page_limit=1000)
    assert result.frame.drop("source").equals(archive.drop("source"))
    assert result.frame.filter(pl.col("source") == "rest")["open_time"].to_list() == [
        utc(2020, 2, 19, h) for h in (3, 4, 5)
    ]
    assert result.gaps.rows() == [
        ("spot", "BTCUSDT", "1h", utc(2020, 2, 19, 12), utc(2020, 2, 19, 17), 5, 300, REASON_NO_DATA)
    ]
    # both holes share one window (03:00-17:00); its first page ends at 11:00, the second, asked from
    # 12:00, comes back empty: the exchange has nothing there either
    requests = rest_server.kline_requests()
    assert {r.params["interval"] for r in requests} == {"1h"}
    assert [(int(r.params["startTime"]), int(r.params["endTime"]), r.status) for r in requests] == [
        (ms(utc(2020, 2, 19, 3)), ms(utc(2020, 2, 19, 17)) - 1, 200),
        (ms(utc(2020, 2, 19, 12)), ms(utc(2020, 2, 19, 17)) - 1, 200),
    ]


def test_failed_fetch_keeps_fetched_rows_and_says_why_the_rest_is_missing(rest_server: BinanceRestServer) -> None:
    archive = real_day(SPOT, date(2020, 1, 1)).head(0)
    rest_server.fail("/api/v3/klines", 503)  # the first page fails once, then works
    second_page = {"startTime": str(ms(utc(2020, 1, 1, 8, 20)))}
    rest_server.fail("/api/v3/klines", 429, times=2, params=second_page)  # the second, every time
    client, _ = make_client(rest_server, page_limit=500, max_attempts=2)
    result = fill_gaps(archive, instruments=[SPOT], days=[date(2020, 1, 1)], interval="1m", now=LATER,
                       fetcher=client, page_limit=500)
    assert result.frame.height == 500  # the first page is kept
    (gap,) = result.gaps.rows(named=True)
    assert (gap["gap_start"], gap["gap_end"], gap["bars"]) == (utc(2020, 1, 1, 8, 20), utc(2020, 1, 2), 940)
    assert gap["reason"].startswith("fetch failed: HTTP 429 (rate limit) 2 times in a row")
    assert [r.status for r in rest_server.kline_requests()] == [503, 200, 429, 429]
