"""The bundled SYNTHETIC COIN-M exchangeInfo answer is exactly what its generator builds from the real 2020 answer."""

from __future__ import annotations

import json

from lakehouse_dev.fixtures.synthetic_coinm_exchange_info import REAL_COINM_2020, SYNTHETIC_COINM, build


def test_the_bundled_file_is_the_generators_output() -> None:
    assert SYNTHETIC_COINM.read_bytes() == build()


def test_every_synthetic_symbol_is_a_real_2020_symbol_with_only_its_name_type_and_dates_changed() -> None:
    real = {s["symbol"]: s for s in json.loads(REAL_COINM_2020.read_bytes())["symbols"]}
    synthetic = json.loads(SYNTHETIC_COINM.read_bytes())
    assert [s["symbol"] for s in synthetic["symbols"]] == [
        "BTCUSD_221230", "BTCUSD_230331", "BTCUSD_PERP", "ETHUSD_221230", "ETHUSD_PERP", "ADAUSD_PERP",
    ]  # fmt: skip
    template = {"BTC": real["BTCUSD_PERP"], "ETH": real["ETHUSD_PERP"], "ADA": real["ADAUSD_200925"]}
    changed = {"symbol", "contractType", "deliveryDate", "onboardDate"}
    for sym in synthetic["symbols"]:
        source = template[sym["baseAsset"]]
        assert list(sym) == list(source)  # same keys, same order as Binance's answer
        assert {k: v for k, v in sym.items() if k not in changed} == {k: v for k, v in source.items() if k not in changed}
    assert [k for k in synthetic if k != "serverTime"] == [k for k in json.loads(REAL_COINM_2020.read_bytes()) if k != "serverTime"]
