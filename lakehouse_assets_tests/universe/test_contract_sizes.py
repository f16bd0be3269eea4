"""COIN-M contract sizes come from exchangeInfo through the lake, not from a hard-coded table.

Inputs are the bundled COIN-M answers: the REAL one of 2020-08-18 and the SYNTHETIC one the REST stand-in
serves (PROVENANCE.md). Where a test needs a size Binance never used (50 USD), it edits a copy of the
synthetic answer and says so: that proves the size is read, not assumed.
"""

from __future__ import annotations

import io
import json
import pickle
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse_assets.defs.common.keys import BRONZE_EXCHANGE_INFO
from lakehouse_assets.exchange.exchange_info import ExchangeInfoError, parse_exchange_info
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.lake.store import LocalStore
from lakehouse_assets.universe.contract_sizes import (
    LakeContractSizes,
    MissingContractSizeError,
    contract_sizes,
    lake_contract_sizes,
)
from lakehouse_assets.universe.exchange_info_bronze import answer_key, utc_today
from lakehouse_assets_tests.harness import failure_text, materialize, resources, run_klines, table
from lakehouse_assets_tests.samples import API, COINM_ANSWER
from lakehouse_dev.fakes.rest_server import BinanceRestServer

CM_2020 = API / "dvcrn+binance.ex" / "exchangeInfo.json"
BTC_PERP, ETH_PERP, ADA_PERP = (Instrument("cm", s) for s in ("BTCUSD_PERP", "ETHUSD_PERP", "ADAUSD_PERP"))
LINK_Q = Instrument("cm", "LINKUSD_200925")  # delivered in 2020: only the 2020 answer lists it


def parsed(path: Path) -> pl.DataFrame:
    return parse_exchange_info(path.read_bytes(), market="cm", source=path.name)


def synthetic_with_btc_size(size: int) -> bytes:
    """A copy of the SYNTHETIC COIN-M answer in which BTCUSD_PERP's contractSize is ``size`` (not a Binance value)."""
    answer = json.loads(COINM_ANSWER.read_bytes())
    for sym in answer["symbols"]:
        if sym["symbol"] == "BTCUSD_PERP":
            sym["contractSize"] = size
    return json.dumps(answer, separators=(",", ":")).encode()


def put_answer(store: LocalStore, day: date, body: bytes) -> None:
    store.put_bytes(answer_key("cm", day), body)


# --------------------------------------------------------------------------- the pure lookup


def test_sizes_come_from_the_rows_first_row_of_an_instrument_wins_and_other_markets_have_none() -> None:
    known = pl.concat([parsed(COINM_ANSWER), parsed(CM_2020)])  # newest answer first
    sizes = contract_sizes(known, [BTC_PERP, ADA_PERP, LINK_Q, Instrument("um", "BTCUSDT"), Instrument("spot", "BTCUSDT")])
    assert sizes == {BTC_PERP: 100.0, ADA_PERP: 10.0, LINK_Q: 10.0}
    assert contract_sizes(known, [Instrument("spot", "BTCUSDT")]) == {}

    edited = parse_exchange_info(synthetic_with_btc_size(50), market="cm", source="edited")
    assert contract_sizes(pl.concat([edited, known]), [BTC_PERP]) == {BTC_PERP: 50.0}
    assert contract_sizes(pl.concat([known, edited]), [BTC_PERP]) == {BTC_PERP: 100.0}


def test_an_instrument_without_a_size_is_a_clear_error_naming_it_and_what_to_materialize() -> None:
    with pytest.raises(MissingContractSizeError) as info:
        contract_sizes(parsed(COINM_ANSWER), [BTC_PERP, Instrument("cm", "XRPUSD_PERP"), Instrument("cm", "DOTUSD_PERP")],
                       looked_in="the answers")  # fmt: skip
    message = str(info.value)
    assert message.startswith("no known contract size for COIN-M cm:DOTUSD_PERP, cm:XRPUSD_PERP (looked in the answers)")
    assert "materialize bronze/exchange_info for the current UTC day" in message
    assert isinstance(info.value, ValueError)  # a configuration problem: never retried
    assert str(pickle.loads(pickle.dumps(info.value))) == message  # survives the multiprocess executor


def test_a_size_that_is_not_positive_is_refused() -> None:
    zero = parse_exchange_info(synthetic_with_btc_size(0), market="cm", source="edited")
    with pytest.raises(ValueError, match=r"cm:BTCUSD_PERP: contract size 0.0 in the given rows is not a positive number"):
        contract_sizes(zero, [BTC_PERP])


# --------------------------------------------------------------------------- read from the lake


def test_the_lake_gives_the_newest_answers_size_and_finds_a_delivered_contract_in_an_older_one(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    put_answer(store, date(2020, 8, 18), CM_2020.read_bytes())
    put_answer(store, date(2022, 10, 26), synthetic_with_btc_size(50))
    assert lake_contract_sizes(store, [BTC_PERP, ETH_PERP]) == {BTC_PERP: 50.0, ETH_PERP: 10.0}
    assert lake_contract_sizes(store, [LINK_Q]) == {LINK_Q: 10.0}
    assert lake_contract_sizes(store, [Instrument("um", "BTCUSDT")]) == {}

    # Older answers are read only when the newer ones lack an instrument: a damaged 2020 answer stays unread
    # for BTCUSD_PERP, and is named when LINKUSD_200925 needs it.
    put_answer(store, date(2020, 8, 18), b"<html>damaged</html>")
    assert lake_contract_sizes(store, [BTC_PERP]) == {BTC_PERP: 50.0}
    with pytest.raises(ExchangeInfoError, match=r"date=2020-08-18/exchangeInfo.json: exchangeInfo answer is not valid JSON"):
        lake_contract_sizes(store, [LINK_Q])


def test_silver_instruments_comes_first_when_the_lake_has_it(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    put_answer(store, date(2022, 10, 26), synthetic_with_btc_size(50))
    rows = parsed(COINM_ANSWER).select("market", "symbol", "contract_size", valid_from=pl.lit(date(2020, 8, 10)))
    buffer = io.BytesIO()
    rows.write_parquet(buffer)
    store.put_bytes("silver/instruments/instruments.parquet", buffer.getvalue())
    assert lake_contract_sizes(store, [BTC_PERP, ADA_PERP]) == {BTC_PERP: 100.0, ADA_PERP: 10.0}

    store.put_bytes("silver/instruments/instruments.parquet", _parquet(rows.drop("contract_size")))
    with pytest.raises(ValueError, match=r"instruments.parquet lacks column\(s\) \['contract_size'\] of silver/instruments"):
        lake_contract_sizes(store, [BTC_PERP])


def test_an_empty_lake_says_where_it_looked(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(MissingContractSizeError) as info:
        LakeContractSizes(store)(BTC_PERP)
    assert f"looked in {tmp_path}/silver/instruments and 0 stored COIN-M exchangeInfo answer(s) under " in str(info.value)


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------- the kline assets


def test_coinm_klines_without_an_exchange_info_answer_fail_once_naming_the_instrument(
    tmp_path: Path, sample_mirror: Path, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    res = resources(lake, sample_mirror.as_uri(), "cm:BTCUSD_PERP")
    result = run_klines(res, "2022-10-24", None, instance, raise_on_error=False, seed_exchange_info=False)
    assert not result.success
    text = failure_text(result)
    assert "no known contract size for COIN-M cm:BTCUSD_PERP" in text
    assert "materialize bronze/exchange_info for the current UTC day" in text
    failures = [e for e in result.all_events if e.is_step_failure]
    assert len(failures) == 1 and failures[0].step_key == "silver__klines"  # once: no retry
    assert not (lake / "silver" / "klines").exists()  # nothing written


def test_coinm_volumes_follow_the_contract_size_exchange_info_gives(
    tmp_path: Path, sample_mirror: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    """An edited answer (BTCUSD_PERP at 50 USD, not a Binance value) through the whole path: stand-in -> ccxt ->
    bronze/exchange_info -> silver/klines. The real file's first bar: 19431 contracts, 9916 of them taker-buy."""
    rest_server.exchange_info.set_answer("cm", synthetic_with_btc_size(50))
    lake = tmp_path / "lake"
    res = resources(lake, sample_mirror.as_uri(), "cm:BTCUSD_PERP", rest_url=rest_server.base_url)
    assert materialize([BRONZE_EXCHANGE_INFO], res, utc_today().isoformat(), None, instance).success
    assert run_klines(res, "2022-10-24", None, instance).success
    first = table(lake, "silver/klines", "2022-10-24").sort("open_time").row(0, named=True)
    assert (first["contract_volume"], first["quote_volume"]) == (19431.0, 19431 * 50.0)
    assert (first["taker_buy_contract_volume"], first["taker_buy_quote_volume"]) == (9916.0, 9916 * 50.0)
    assert first["volume"] == 99.33183109  # the base-asset column does not depend on the size


def test_rest_coinm_rows_take_their_size_from_the_lookup_the_client_is_given(
    tmp_path: Path, rest_server: BinanceRestServer
) -> None:
    """The gap-fill asset hands the REST client ``LakeContractSizes``: read when a COIN-M window is first
    converted, and a clear error when the lake has no answer (the asset turns it into a non-retried failure)."""
    from lakehouse_assets.instruments import MARKETS
    from lakehouse_assets.klines.rest import RestKlinesClient, RestSettings

    settings = RestSettings(base_urls={m: rest_server.base_url for m in MARKETS}, max_attempts=2, backoff_seconds=0.01)
    window = (datetime(2022, 10, 24, tzinfo=UTC), datetime(2022, 10, 24, 0, 2, tzinfo=UTC))
    with pytest.raises(ValueError, match=r"REST cm:BTCUSD_PERP: COIN-M rows need contract sizes; none were given"):
        RestKlinesClient(settings).fetch(BTC_PERP, "1m", *window)

    store = LocalStore(tmp_path)
    with pytest.raises(MissingContractSizeError, match=r"no known contract size for COIN-M cm:BTCUSD_PERP"):
        RestKlinesClient(settings, contract_size=LakeContractSizes(store)).fetch(BTC_PERP, "1m", *window)
    assert len(rest_server.kline_requests("spot")) == 0  # spot rows need no size: never looked up

    put_answer(store, date(2022, 10, 26), synthetic_with_btc_size(50))
    rows = RestKlinesClient(settings, contract_size=LakeContractSizes(store)).fetch(BTC_PERP, "1m", *window).frame
    assert rows["contract_volume"].to_list() == [19431.0, 27305.0]  # the file: 19431 and 27305 contracts
    assert rows["quote_volume"].to_list() == [19431 * 50.0, 27305 * 50.0]
