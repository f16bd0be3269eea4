"""bronze/exchange_info through the shipped asset: ccxt -> the REST stand-in on 127.0.0.1 -> the lake, byte for byte.

The stand-in serves the bundled answers (real spot 2023-08-13 and USD-M 2021-09-06, the SYNTHETIC COIN-M one
built from the real 2020 answer; PROVENANCE.md), so every expected value below was read from those files.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse_assets.defs.common.keys import BRONZE_EXCHANGE_INFO
from lakehouse_assets.universe.exchange_info_bronze import answer_key, utc_today
from lakehouse_assets_tests.harness import failure_text, materialize, resources, table
from lakehouse_assets_tests.samples import utc
from lakehouse_dev.fakes.exchange_info_routes import DEFAULT_ANSWERS, EXCHANGE_INFO_PATHS, bundled_answer
from lakehouse_dev.fakes.rest_server import BinanceRestServer

TABLE = BRONZE_EXCHANGE_INFO.to_user_string()
NODE = BRONZE_EXCHANGE_INFO.to_python_identifier()  # the op behind the asset
UNIVERSE = "spot:BTCUSDT,um:BTCUSDT,cm:BTCUSD_PERP"
NO_ARCHIVE = "http://127.0.0.1:9"  # bronze/exchange_info never touches the archive
# sha256 of the bytes each market's stand-in route serves (the real spot and USD-M answers, the synthetic COIN-M one)
SHA256 = {
    "spot": "2f521693a90d7e8a9b765f28cc07f2049af69a1077dba15729a96f1d2a08f93c",
    "um": "6dda491593dc9109ca55e09d10731084f3ddadb88eddb03f71c76e05835f34a1",
    "cm": "d187d9241433a0b0d0b62d2d98397b509462d89cbc74e865ecd808541cd22643",
}


def run(res: dict, day: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return materialize([BRONZE_EXCHANGE_INFO], res, day, None, instance, raise_on_error=False)


def stored(lake: Path, market: str, day: str) -> Path:
    return lake / answer_key(market, datetime.fromisoformat(day).date())


def test_today_stores_each_markets_answer_byte_for_byte_with_its_manifest(
    tmp_path: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    lake, today = tmp_path / "lake", utc_today().isoformat()
    before = datetime.now(UTC)
    result = run(resources(lake, NO_ARCHIVE, UNIVERSE, rest_url=rest_server.base_url), today, instance)
    assert result.success, failure_text(result)

    for market, path in DEFAULT_ANSWERS.items():  # what went over the socket, through ccxt, is what the lake holds
        data = stored(lake, market, today).read_bytes()
        assert data == bundled_answer(path)
        assert hashlib.sha256(data).hexdigest() == SHA256[market]
    assert [(r.path, r.status) for r in rest_server.exchange_info.requests()] == [
        ("/api/v3/exchangeInfo", 200), ("/fapi/v1/exchangeInfo", 200), ("/dapi/v1/exchangeInfo", 200)
    ]  # fmt: skip

    manifest = table(lake, TABLE, today).sort("market")
    base = rest_server.base_url
    assert manifest.drop("fetched_at").rows(named=True) == [
        {"market": "cm", "symbol": "exchangeInfo", "source_url": f"{base}/dapi/v1/exchangeInfo",
         "lake_path": f"bronze/binance/api/cm/exchangeInfo/date={today}/exchangeInfo.json", "sha256": SHA256["cm"],
         "bytes": 6210, "server_time": utc(2022, 10, 26, 0, 0, 0, 123000), "symbols": 6, "upstream_status": "ok"},
        {"market": "spot", "symbol": "exchangeInfo", "source_url": f"{base}/api/v3/exchangeInfo",
         "lake_path": f"bronze/binance/api/spot/exchangeInfo/date={today}/exchangeInfo.json", "sha256": SHA256["spot"],
         "bytes": 3681188, "server_time": utc(2023, 8, 13, 16, 47, 31, 489000), "symbols": 2276, "upstream_status": "ok"},
        {"market": "um", "symbol": "exchangeInfo", "source_url": f"{base}/fapi/v1/exchangeInfo",
         "lake_path": f"bronze/binance/api/um/exchangeInfo/date={today}/exchangeInfo.json", "sha256": SHA256["um"],
         "bytes": 152573, "server_time": utc(2021, 9, 6, 13, 13, 38, 759000), "symbols": 133, "upstream_status": "ok"},
    ]  # fmt: skip
    assert manifest.schema["fetched_at"] == pl.Datetime("ms", "UTC")
    assert all(before - timedelta(seconds=1) <= t <= datetime.now(UTC) for t in manifest["fetched_at"])

    meta = result.asset_materializations_for_node(NODE)[0].metadata
    assert meta["symbols"].value == {"cm": 6, "spot": 2276, "um": 133}
    assert meta["bytes"].value == {"cm": 6210, "spot": 3681188, "um": 152573}
    assert meta["statuses"].value == {
        "cm": {"TRADING": 6}, "spot": {"TRADING": 1393, "BREAK": 883}, "um": {"TRADING": 132, "PENDING_TRADING": 1}
    }  # fmt: skip
    assert meta["server_time"].value["spot"] == "2023-08-13T16:47:31.489000+00:00"
    assert meta["not_listed"].value == "none"  # BTCUSDT (spot, um) and BTCUSD_PERP are in their answers
    # the stand-in's answers are years old: said, not hidden
    assert "spot " + today + ": the answer's serverTime is 2023-08-13 16:47:31 UTC" in meta["problems"].value


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "exchangeInfo answer is not valid JSON"),
        (b'{"timezone":"UTC","serverTime":1630934018759,"rateLimits":[]}', "exchangeInfo answer has no 'symbols' list"),
    ],
    ids=["html", "no-symbols"],
)
def test_a_malformed_answer_fails_naming_the_url_and_nothing_is_written(
    tmp_path: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance, body: bytes, why: str
) -> None:
    rest_server.exchange_info.set_answer("um", body)
    lake, today = tmp_path / "lake", utc_today().isoformat()
    result = run(resources(lake, NO_ARCHIVE, "spot:BTCUSDT,um:BTCUSDT", rest_url=rest_server.base_url), today, instance)

    assert not result.success
    text = failure_text(result)
    assert f"- um {today}: {rest_server.base_url}/fapi/v1/exchangeInfo: {why}" in text
    assert "(after 2 attempts; nothing stored)" in text
    assert not lake.exists() or [p for p in lake.rglob("*") if p.is_file()] == []  # not even spot's good answer
    # asked once more, then refused; a malformed body is not step-retried (that would ask 4 times)
    assert len(rest_server.exchange_info.requests("um")) == 2
    assert len(rest_server.exchange_info.requests("spot")) == 1


def test_exchange_down_on_a_rerun_keeps_the_stored_answer_and_a_new_answer_replaces_the_days(
    tmp_path: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    lake, today = tmp_path / "lake", utc_today().isoformat()
    res = resources(lake, NO_ARCHIVE, "um:BTCUSDT,cm:BTCUSD_PERP", rest_url=rest_server.base_url)
    assert run(res, today, instance).success
    first = table(lake, TABLE, today).sort("market")

    rest_server.fail("exchangeInfo", 503, times=100)  # every attempt of both markets: the exchange is down
    result = run(res, today, instance)
    assert result.success, failure_text(result)
    kept = table(lake, TABLE, today).sort("market")
    assert kept["upstream_status"].to_list() == ["fetch_failed", "fetch_failed"]
    # the answer, its lineage and when it was fetched are the first run's; nothing was lost
    assert kept.drop("upstream_status").equals(first.drop("upstream_status"))
    assert hashlib.sha256(stored(lake, "cm", today).read_bytes()).hexdigest() == SHA256["cm"]
    problems = result.asset_materializations_for_node(NODE)[0].metadata["problems"].value
    assert f"cm {today}: {rest_server.base_url}/dapi/v1/exchangeInfo: OperationFailed after 3 attempts" in problems
    assert "kept the answer stored earlier that day" in problems

    # The exchange is back and has delisted ADAUSD_PERP: the day's answer is the newer one, as Binance sent it.
    rest_server.clear_faults()
    newer = rest_server.exchange_info.without_symbols("cm", "ADAUSD_PERP")
    assert run(res, today, instance).success
    assert stored(lake, "cm", today).read_bytes() == newer
    cm = table(lake, TABLE, today).filter(pl.col("market") == "cm").row(0, named=True)
    assert (cm["symbols"], cm["upstream_status"], cm["sha256"]) == (5, "ok", hashlib.sha256(newer).hexdigest())


def test_a_past_day_is_never_fetched(tmp_path: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance) -> None:
    lake = tmp_path / "lake"
    res = resources(lake, NO_ARCHIVE, "um:BTCUSDT,cm:BTCUSD_PERP", rest_url=rest_server.base_url)
    yesterday = (utc_today() - timedelta(days=1)).isoformat()

    result = run(res, yesterday, instance)  # nothing stored for that day: a clear refusal, no request, no file
    assert not result.success
    text = failure_text(result)
    assert f"- um {yesterday}: no answer stored for this past day, and none can be fetched now" in text
    assert f"- cm {yesterday}: no answer stored" in text and "Only the current UTC day's partition fetches" in text
    assert rest_server.exchange_info.requests() == [] and not lake.exists()

    # the answers a run stored that day (as yesterday's scheduled run would have) are listed again, not fetched
    for market in ("um", "cm"):
        path = stored(lake, market, yesterday)
        path.parent.mkdir(parents=True)
        path.write_bytes(bundled_answer(DEFAULT_ANSWERS[market]))
    result = run(res, yesterday, instance)
    assert result.success, failure_text(result)
    assert rest_server.exchange_info.requests() == []
    manifest = table(lake, TABLE, yesterday).sort("market")
    assert manifest.select("market", "symbols", "sha256", "upstream_status", "source_url").rows() == [
        ("cm", 6, SHA256["cm"], "past_day", None), ("um", 133, SHA256["um"], "past_day", None)
    ]  # fmt: skip


def test_with_rest_switched_off_nothing_is_fetched_and_stored_answers_stay_listed(
    tmp_path: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    lake, today = tmp_path / "lake", utc_today().isoformat()
    on = resources(lake, NO_ARCHIVE, "um:BTCUSDT", rest_url=rest_server.base_url)
    assert run(on, today, instance).success
    first = table(lake, TABLE, today)
    rest_server.clear_requests()

    off = resources(lake, NO_ARCHIVE, "um:BTCUSDT,cm:BTCUSD_PERP", rest_url=rest_server.base_url, rest_enabled=False)
    result = run(off, today, instance)
    assert result.success, failure_text(result)
    assert rest_server.requests == []
    manifest = table(lake, TABLE, today)
    assert manifest["market"].to_list() == ["um"]  # cm has no stored answer: no row, and it says so
    assert manifest.drop("upstream_status").equals(first.drop("upstream_status"))
    assert manifest["upstream_status"].to_list() == ["rest_disabled"]
    problems = result.asset_materializations_for_node(NODE)[0].metadata["problems"].value
    assert f"cm {today}: not fetched (REST switched off, LAKEHOUSE_REST_FILL=0), none stored" in problems


def test_the_stand_in_serves_the_bundled_answers_and_lets_a_test_swap_them(rest_server: BinanceRestServer) -> None:
    import requests

    for market, path in EXCHANGE_INFO_PATHS.items():
        body = requests.get(rest_server.base_url + path, timeout=10).content
        assert hashlib.sha256(body).hexdigest() == SHA256[market]
    rest_server.exchange_info.set_answer("spot", b"not json")
    assert requests.get(rest_server.base_url + EXCHANGE_INFO_PATHS["spot"], timeout=10).content == b"not json"
    rest_server.exchange_info.reset()
    body = requests.get(rest_server.base_url + EXCHANGE_INFO_PATHS["spot"], timeout=10).content
    assert hashlib.sha256(body).hexdigest() == SHA256["spot"]
    with pytest.raises(ValueError, match=r"cm exchangeInfo has no symbol\(s\) \['XRPUSD_PERP'\]"):
        rest_server.exchange_info.without_symbols("cm", "XRPUSD_PERP")
