"""``parse_exchange_info`` on real Binance answers (spot 2023, USD-M 2021, COIN-M 2020) and synthetic COIN-M ones.

The real files are the ones recorded in ``data/binance/PROVENANCE.md``; the expected values below
were read from those files, so a parser that drifts from Binance's actual wire format fails here.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from lakehouse_assets.exchange.exchange_info import SCHEMA, ExchangeInfoError, parse_exchange_info
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.universe.contract_sizes import contract_sizes

API = Path(__file__).resolve().parents[1] / "data" / "binance" / "api"
UM_2021 = API / "izzortsi+rezbot" / "exchangeInfo.json"
SPOT_2023_GZ = API / "SwapLandExchange+Statics" / "exchangeInfo.json.gz"
CM_2020 = API / "dvcrn+binance.ex" / "exchangeInfo.json"  # real, recorded 2020-08-18 (PROVENANCE.md)
CM_SYNTHETIC = API / "SYNTHETIC" / "dapi-v1-exchangeInfo.SYNTHETIC.json"  # what the REST stand-in serves


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def _row(df: pl.DataFrame, symbol: str) -> dict[str, Any]:
    rows = df.filter(pl.col("symbol") == symbol).to_dicts()
    assert len(rows) == 1
    return rows[0]


@pytest.fixture(scope="module")
def spot() -> pl.DataFrame:
    return parse_exchange_info(gzip.decompress(SPOT_2023_GZ.read_bytes()), market="spot", source="spot-2023")


@pytest.fixture(scope="module")
def um() -> pl.DataFrame:
    return parse_exchange_info(UM_2021.read_bytes(), market="um", source="um-2021")


def test_bundled_files_are_byte_identical_to_the_recorded_originals() -> None:
    """PROVENANCE.md promises the gzip holds the shared original unchanged; hold it to that."""
    assert hashlib.sha256(UM_2021.read_bytes()).hexdigest() == (
        "6dda491593dc9109ca55e09d10731084f3ddadb88eddb03f71c76e05835f34a1"
    )
    spot_raw = gzip.decompress(SPOT_2023_GZ.read_bytes())
    assert len(spot_raw) == 3681188
    assert hashlib.sha256(spot_raw).hexdigest() == ("2f521693a90d7e8a9b765f28cc07f2049af69a1077dba15729a96f1d2a08f93c")


def test_spot_2023(spot: pl.DataFrame) -> None:
    assert spot.schema == pl.Schema(SCHEMA)
    assert spot.height == 2276
    assert spot["symbol"].n_unique() == 2276
    assert dict(spot["status"].value_counts().iter_rows()) == {"TRADING": 1393, "BREAK": 883}
    assert spot["kind"].unique().to_list() == ["spot"]
    for col in ("contract_type", "contract_size", "onboard_date", "delivery_date"):
        assert spot[col].null_count() == 2276, col
    assert spot["tick_size"].null_count() == 0 and spot["lot_size"].null_count() == 0
    assert _row(spot, "BTCUSDT") == {
        "market": "spot",
        "symbol": "BTCUSDT",
        "base": "BTC",
        "quote": "USDT",
        "status": "TRADING",
        "contract_type": None,
        "kind": "spot",
        "contract_size": None,
        "tick_size": 0.01,  # PRICE_FILTER tickSize "0.01000000"
        "lot_size": 0.00001,  # LOT_SIZE stepSize "0.00001000"
        "onboard_date": None,
        "delivery_date": None,
        "server_time": _utc(2023, 8, 13, 16, 47, 31, 489000),  # serverTime 1691945251489
        "source": "spot-2023",
    }


def test_usdm_2021(um: pl.DataFrame) -> None:
    assert um.schema == pl.Schema(SCHEMA)
    assert um.height == 133
    assert dict(um["status"].value_counts().iter_rows()) == {"TRADING": 132, "PENDING_TRADING": 1}
    assert um.filter(pl.col("status") == "PENDING_TRADING")["symbol"].to_list() == ["BTCSTUSDT"]
    assert dict(um["kind"].value_counts().iter_rows()) == {"perpetual": 130, "delivery": 2, None: 1}
    assert um["contract_size"].null_count() == 133
    assert um["server_time"].unique().to_list() == [_utc(2021, 9, 6, 13, 13, 38, 759000)]

    btc = _row(um, "BTCUSDT")
    assert btc["onboard_date"] == _utc(2019, 9, 25, 8)  # onboardDate 1569398400000
    assert btc["delivery_date"] is None  # deliveryDate 4133404800000, Binance's "never"
    assert (btc["contract_type"], btc["kind"]) == ("PERPETUAL", "perpetual")
    assert (btc["base"], btc["quote"], btc["tick_size"], btc["lot_size"]) == ("BTC", "USDT", 0.01, 0.001)

    quarterly = _row(um, "BTCUSDT_210924")
    assert (quarterly["contract_type"], quarterly["kind"]) == ("CURRENT_QUARTER", "delivery")
    assert quarterly["delivery_date"] == _utc(2021, 9, 24, 8)  # deliveryDate 1632470400000
    assert quarterly["onboard_date"] == _utc(2021, 6, 16, 8)  # onboardDate 1623830400000
    assert quarterly["tick_size"] == 0.1
    assert um.filter(pl.col("kind") == "delivery")["symbol"].sort().to_list() == [
        "BTCUSDT_210924",
        "ETHUSDT_210924",
    ]

    # Binance sent contractType "" for the paused BTCSTUSDT: unknown, not guessed.
    btcst = _row(um, "BTCSTUSDT")
    assert (btcst["contract_type"], btcst["kind"], btcst["status"]) == (None, None, "PENDING_TRADING")


def _cm_symbol(symbol: str, pair: str, contract_type: str, delivery_ms: int, size: int, tick: str) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "pair": pair,
        "contractType": contract_type,
        "deliveryDate": delivery_ms,
        "onboardDate": 1597042800000,
        "contractStatus": "TRADING",
        "contractSize": size,
        "marginAsset": pair.removesuffix("USD"),
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": pair.removesuffix("USD"),
        "quoteAsset": "USD",
        "pricePrecision": 1,
        "quantityPrecision": 0,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "equalQtyPrecision": 4,
        "triggerProtect": "0.0500",
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.1", "maxPrice": "100000", "tickSize": tick},
            {"filterType": "LOT_SIZE", "stepSize": "1", "maxQty": "100000", "minQty": "1"},
        ],
        "orderTypes": ["LIMIT", "MARKET"],
        "timeInForce": ["GTC"],
    }


def _synthetic_coinm_answer() -> dict[str, Any]:
    """SYNTHETIC COIN-M ``/dapi/v1/exchangeInfo`` answer (no real one is bundled).

    Built by us following Binance's documented response shape (``contractStatus`` instead of
    ``status``, integer ``contractSize``); the sizes 100 (BTC) and 10 (others) are Binance's published
    COIN-M contract specifications. Dates and ticks are illustrative, not captured values.
    """
    return {
        "timezone": "UTC",
        "serverTime": 1666569600123,
        "rateLimits": [],
        "exchangeFilters": [],
        "symbols": [
            _cm_symbol("BTCUSD_PERP", "BTCUSD", "PERPETUAL", 4133404800000, 100, "0.1"),
            _cm_symbol("ETHUSD_PERP", "ETHUSD", "PERPETUAL", 4133404800000, 10, "0.01"),
            _cm_symbol("BTCUSD_221230", "BTCUSD", "CURRENT_QUARTER", 1672387200000, 100, "0.1"),
        ],
    }


def test_coinm_synthetic_answer() -> None:
    df = parse_exchange_info(json.dumps(_synthetic_coinm_answer()).encode(), market="cm", source="synthetic-cm")
    assert df.schema == pl.Schema(SCHEMA)
    assert df.select("symbol", "kind", "contract_size", "status", "base", "quote").rows() == [
        ("BTCUSD_PERP", "perpetual", 100.0, "TRADING", "BTC", "USD"),
        ("ETHUSD_PERP", "perpetual", 10.0, "TRADING", "ETH", "USD"),
        ("BTCUSD_221230", "delivery", 100.0, "TRADING", "BTC", "USD"),
    ]
    assert _row(df, "BTCUSD_221230")["delivery_date"] == _utc(2022, 12, 30, 8)
    assert _row(df, "BTCUSD_PERP")["delivery_date"] is None
    assert _row(df, "ETHUSD_PERP")["tick_size"] == 0.01


def test_coinm_2020_real_answer() -> None:
    """The one real COIN-M answer bundled (a VCR cassette of dapi.binance.com, 2020-08-18): byte-exact and parsed."""
    raw = CM_2020.read_bytes()
    assert len(raw) == 8222  # the Content-Length Binance sent
    assert hashlib.sha256(raw).hexdigest() == "7d177707dee517c1cda94f32a66b8aa73a7247e3995920def160b330de414c0d"
    df = parse_exchange_info(raw, market="cm", source="cm-2020")
    assert df.schema == pl.Schema(SCHEMA)
    assert df.select("symbol", "contract_type", "kind", "contract_size", "status", "base", "tick_size").rows() == [
        ("BTCUSD_200925", "CURRENT_QUARTER", "delivery", 100.0, "TRADING", "BTC", 0.1),
        ("BTCUSD_201225", "NEXT_QUARTER", "delivery", 100.0, "TRADING", "BTC", 0.1),
        ("BTCUSD_PERP", "PERPETUAL", "perpetual", 100.0, "TRADING", "BTC", 0.1),
        ("ETHUSD_200925", "CURRENT_QUARTER", "delivery", 10.0, "TRADING", "ETH", 0.01),
        ("ETHUSD_201225", "NEXT_QUARTER", "delivery", 10.0, "TRADING", "ETH", 0.01),
        ("ETHUSD_PERP", "PERPETUAL", "perpetual", 10.0, "TRADING", "ETH", 0.01),
        ("ADAUSD_200925", "CURRENT_QUARTER", "delivery", 10.0, "TRADING", "ADA", 0.00001),
        ("LINKUSD_200925", "CURRENT_QUARTER", "delivery", 10.0, "TRADING", "LINK", 0.001),
    ]
    assert df["server_time"].unique().to_list() == [_utc(2020, 8, 18, 10, 10, 15, 659000)]  # the answer's Date header
    assert _row(df, "BTCUSD_PERP")["onboard_date"] == _utc(2020, 8, 10, 7)  # onboardDate 1597042800000
    assert _row(df, "BTCUSD_200925")["delivery_date"] == _utc(2020, 9, 25, 8)  # deliveryDate 1601020800000


def _retired_table(symbol: str) -> float:
    """The hard-coded face values exchangeInfo replaced (``instruments.coinm_contract_size_usd`` before issue 11):
    100 USD for ``BTCUSD_*`` contracts, 10 USD for every other COIN-M contract."""
    return 100.0 if symbol.startswith("BTCUSD_") else 10.0


def test_contract_sizes_from_real_exchange_info_equal_the_retired_hard_coded_values() -> None:
    """Evidence, not plumbing: Binance's own 2020 answer gives every one of its 8 contracts the size the retired
    table gave it (BTCUSD_* 100, ETHUSD_*, ADAUSD_*, LINKUSD_* 10)."""
    real = parse_exchange_info(CM_2020.read_bytes(), market="cm", source="cm-2020")
    instruments = [Instrument("cm", s) for s in real["symbol"]]
    sizes = contract_sizes(real, instruments)
    assert {i.symbol: s for i, s in sizes.items()} == {
        "BTCUSD_200925": 100.0, "BTCUSD_201225": 100.0, "BTCUSD_PERP": 100.0, "ETHUSD_200925": 10.0,
        "ETHUSD_201225": 10.0, "ETHUSD_PERP": 10.0, "ADAUSD_200925": 10.0, "LINKUSD_200925": 10.0,
    }  # fmt: skip
    assert all(size == _retired_table(i.symbol) for i, size in sizes.items())


def test_contract_sizes_from_the_synthetic_answer_equal_the_retired_values() -> None:
    """The SYNTHETIC answer the stand-in serves (ADAUSD_PERP, the 2022 quarterlies): its sizes are copies of the
    real 2020 ones, so this only proves the plumbing from answer to lookup, not a fact about Binance."""
    synthetic = parse_exchange_info(CM_SYNTHETIC.read_bytes(), market="cm", source="synthetic")
    sizes = contract_sizes(synthetic, [Instrument("cm", s) for s in synthetic["symbol"]])
    assert {i.symbol: s for i, s in sizes.items()} == {
        "BTCUSD_221230": 100.0, "BTCUSD_230331": 100.0, "BTCUSD_PERP": 100.0, "ETHUSD_221230": 10.0,
        "ETHUSD_PERP": 10.0, "ADAUSD_PERP": 10.0,
    }  # fmt: skip
    assert all(size == _retired_table(i.symbol) for i, size in sizes.items())


def _um_answer(**overrides: Any) -> dict[str, Any]:
    answer = json.loads(UM_2021.read_bytes())
    answer["symbols"] = answer["symbols"][:2]
    answer.update(overrides)
    return answer


@pytest.mark.parametrize(
    ("raw", "market", "parts"),
    [
        (b"<html>502 Bad Gateway</html>", "um", ["src.json: exchangeInfo answer is not valid JSON"]),
        (b"\xff\xfe", "um", ["src.json: exchangeInfo answer is not valid JSON"]),
        (b"[]", "um", ["src.json: exchangeInfo answer has no 'symbols' list"]),
        (b'{"code": -1121, "msg": "Invalid symbol."}', "spot", ["src.json: exchangeInfo answer has no 'symbols' list"]),
        (b'{"serverTime": 1, "symbols": {}}', "spot", ["has no 'symbols' list"]),
        (b'{"symbols": []}', "spot", ["src.json: exchangeInfo answer has no integer 'serverTime'"]),
        (b'{"serverTime": 1, "symbols": []}', "xx", ["src.json: unknown market 'xx'"]),
        (
            b'{"serverTime": 1, "symbols": [{"status": "TRADING"}]}',
            "spot",
            ["src.json: symbols[0] lacks required field 'symbol'"],
        ),
        (b'{"serverTime": 1, "symbols": [7]}', "spot", ["src.json: symbols[0] is not an object"]),
    ],
)
def test_malformed_answer(raw: bytes, market: str, parts: list[str]) -> None:
    with pytest.raises(ExchangeInfoError) as info:
        parse_exchange_info(raw, market=market, source="src.json")
    for part in parts:
        assert part in str(info.value)


def _broken(mutate: Any) -> bytes:
    answer = _um_answer()
    mutate(answer["symbols"])
    return json.dumps(answer).encode()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.append(s[0]), "src.json: symbol 'BTCUSDT' appears more than once"),
        (lambda s: s[1].pop("baseAsset"), "src.json: symbol 'ETHUSDT' lacks required field 'baseAsset'"),
        (lambda s: s[0].pop("status"), "src.json: symbol 'BTCUSDT' lacks required field 'status'"),
        (lambda s: s[0].pop("contractType"), "src.json: symbol 'BTCUSDT' lacks required field 'contractType'"),
        (lambda s: s[0].pop("onboardDate"), "src.json: symbol 'BTCUSDT' lacks required field 'onboardDate'"),
        (
            lambda s: s[0].update(filters=[f for f in s[0]["filters"] if f["filterType"] != "LOT_SIZE"]),
            "src.json: symbol 'BTCUSDT' lacks required field 'LOT_SIZE.stepSize'",
        ),
        (
            lambda s: s[0]["filters"][0].update(tickSize="0.0l"),
            "src.json: symbol 'BTCUSDT' field 'PRICE_FILTER.tickSize' is not a decimal string: '0.0l'",
        ),
        (
            lambda s: s[0]["filters"][0].update(tickSize=0.01),
            "src.json: symbol 'BTCUSDT' field 'PRICE_FILTER.tickSize' is not a decimal string: 0.01",
        ),
        (
            lambda s: s[0].update(onboardDate="1569398400000"),
            "src.json: symbol 'BTCUSDT' field 'onboardDate' has unexpected value '1569398400000'",
        ),
        (
            lambda s: s[0].update(contractType="WEEKLY"),
            "src.json: symbol 'BTCUSDT' has unknown contractType 'WEEKLY'",
        ),
    ],
)
def test_malformed_symbol(mutate: Any, message: str) -> None:
    with pytest.raises(ExchangeInfoError) as info:
        parse_exchange_info(_broken(mutate), market="um", source="src.json")
    assert str(info.value) == message


def test_coinm_requires_contract_size_and_contract_status() -> None:
    for field in ("contractSize", "contractStatus"):
        answer = _synthetic_coinm_answer()
        answer["symbols"][1].pop(field)
        with pytest.raises(ExchangeInfoError) as info:
            parse_exchange_info(json.dumps(answer).encode(), market="cm", source="synthetic-cm")
        assert str(info.value) == f"synthetic-cm: symbol 'ETHUSD_PERP' lacks required field {field!r}"


def test_zero_filter_means_disabled_and_empty_answer_keeps_schema() -> None:
    answer = _um_answer()
    answer["symbols"][0]["filters"][0]["tickSize"] = "0"
    df = parse_exchange_info(json.dumps(answer).encode(), market="um", source="src.json")
    assert _row(df, "BTCUSDT")["tick_size"] is None
    empty = parse_exchange_info(b'{"serverTime": 1, "symbols": []}', market="spot", source="src.json")
    assert empty.height == 0 and empty.schema == pl.Schema(SCHEMA)
