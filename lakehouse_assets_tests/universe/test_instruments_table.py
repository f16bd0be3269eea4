"""silver/instruments built from real exchangeInfo answers and archive coverage (the pure transform and its checks).

Sources:

* the real answers bundled in ``data/binance/api`` (PROVENANCE.md): USD-M ``/fapi/v1/exchangeInfo`` of
  2021-09-06 (133 symbols) and spot ``/api/v3/exchangeInfo`` of 2023-08-13 (2,276 symbols, 883 BREAK);
* where a test needs a second answer, it is the real USD-M one with named fields changed and a later
  serverTime: SYNTHETIC, built in ``_later_answer`` and labelled there;
* archive coverage (which days have files) is written out as day runs in each test: SYNTHETIC, chosen
  to make a symbol delisted, listed mid-range or relisted (the listing itself is tested over HTTP in
  ``test_archive_coverage.py``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from lakehouse_assets.exchange.exchange_info import parse_exchange_info
from lakehouse_assets.universe.archive_coverage import COVERAGE_SCHEMA
from lakehouse_assets.universe.instruments_quality import validate_instruments
from lakehouse_assets.universe.instruments_table import SCHEMA, build_instruments
from lakehouse_assets.universe.snapshot_history import AnswerError, SnapshotHistory, fold_answers
from lakehouse_assets_tests.samples import SAMPLE_DATA

API = SAMPLE_DATA / "api"
UM_2021 = (API / "izzortsi+rezbot" / "exchangeInfo.json").read_bytes()
UM_DAY = date(2021, 9, 6)  # serverTime 1630934018759 = 2021-09-06 13:13:38 UTC
SPOT_DAY = date(2023, 8, 13)


def _spot_2023() -> bytes:
    return gzip.decompress((API / "SwapLandExchange+Statics" / "exchangeInfo.json.gz").read_bytes())


def _later_answer(days_later: int, change: dict[str, dict[str, Any]], drop: tuple[str, ...] = ()) -> bytes:
    """SYNTHETIC: the real USD-M answer ``days_later`` days on, with ``change[symbol]`` applied to symbols
    (``tickSize`` edits the PRICE_FILTER, any other key the symbol itself) and ``drop`` removed."""
    answer = json.loads(UM_2021)
    answer["serverTime"] += days_later * 86_400_000
    kept = []
    for sym in answer["symbols"]:
        if sym["symbol"] in drop:
            continue
        for key, value in change.get(sym["symbol"], {}).items():
            if key == "tickSize":
                next(f for f in sym["filters"] if f["filterType"] == "PRICE_FILTER")["tickSize"] = value
            else:
                sym[key] = value
        kept.append(sym)
    answer["symbols"] = kept
    return json.dumps(answer).encode()


def _history(*answers: tuple[bytes, str]) -> SnapshotHistory:
    history = SnapshotHistory()
    for raw, market in answers:
        frame = parse_exchange_info(raw, market=market, source="test")
        history.add(frame, market=market, day=frame["server_time"][0].date())
    return history


def _coverage(*runs: tuple[str, str, date, date]) -> pl.DataFrame:
    return pl.DataFrame(list(runs), schema=COVERAGE_SCHEMA, orient="row")


def _build(coverage: pl.DataFrame, history: SnapshotHistory | None, today: date, **kw: Any) -> pl.DataFrame:
    history = history or SnapshotHistory()
    return build_instruments(coverage, history.frame(), newest=history.newest, today=today, **kw).table


def _rows(table: pl.DataFrame, symbol: str, *columns: str) -> list[tuple[Any, ...]]:
    cols = columns or ("valid_from", "valid_to", "status", "source")
    return table.filter(pl.col("symbol") == symbol).sort("valid_from").select(cols).rows()


def _passes(table: pl.DataFrame) -> dict[str, bool]:
    return {o.name: o.passed for o in validate_instruments(table)}


ALL_PASS = {"schema": True, "unique_periods": True, "no_overlap": True}


def test_a_symbol_in_the_listing_but_not_in_exchange_info_is_delisted_the_day_after_its_last_file() -> None:
    # LENDUSDT (USD-M) is not in the real 2021-09-06 answer; the archive lists 2020-06-15..2020-10-09.
    table = _build(
        _coverage(("um", "LENDUSDT", date(2020, 6, 15), date(2020, 10, 9))), _history((UM_2021, "um")), date(2021, 9, 7)
    )
    (row,) = table.filter(pl.col("symbol") == "LENDUSDT").rows(named=True)
    assert row == {
        "market": "um", "symbol": "LENDUSDT", "base": None, "quote": None, "kind": "perpetual", "contract_type": None,
        "contract_size": None, "tick_size": None, "lot_size": None, "status": "DELISTED", "onboard_date": None,
        "delivery_date": None, "delist_date": date(2020, 10, 10), "first_archive_day": date(2020, 6, 15),
        "last_archive_day": date(2020, 10, 9), "valid_from": date(2020, 6, 15), "valid_to": date(2020, 10, 10),
        "source": "archive_listing",
    }  # fmt: skip
    # every one of the answer's 133 symbols is there too (no archive file: from its onboard date)
    assert table.height == 134 and table["symbol"].n_unique() == 134
    assert _passes(table) == ALL_PASS
    assert table.schema == pl.Schema(SCHEMA)


def test_a_symbol_listed_mid_range_starts_on_its_first_archive_day_with_the_answer_attributes() -> None:
    # AUDIOUSDT: onboardDate 2021-08-18 07:00 UTC in the real answer; files from that day on
    table = _build(
        _coverage(("um", "AUDIOUSDT", date(2021, 8, 18), date(2021, 9, 6))), _history((UM_2021, "um")), date(2021, 9, 7)
    )
    (row,) = table.filter(pl.col("symbol") == "AUDIOUSDT").rows(named=True)
    assert row == {
        "market": "um", "symbol": "AUDIOUSDT", "base": "AUDIO", "quote": "USDT", "kind": "perpetual",
        "contract_type": "PERPETUAL", "contract_size": None, "tick_size": 0.0001, "lot_size": 1.0, "status": "TRADING",
        "onboard_date": datetime(2021, 8, 18, 7, tzinfo=UTC), "delivery_date": None, "delist_date": None,
        "first_archive_day": date(2021, 8, 18), "last_archive_day": date(2021, 9, 6),
        "valid_from": date(2021, 8, 18), "valid_to": None, "source": "exchange_info+archive_listing",
    }  # fmt: skip
    # without any archive file a listed symbol starts at its onboard date: BTCUSDT 2019-09-25
    assert _rows(table, "BTCUSDT") == [(date(2019, 9, 25), None, "TRADING", "exchange_info")]


def test_a_relisted_symbol_gets_two_periods_and_short_holes_are_missed_files() -> None:
    coverage = _coverage(
        ("um", "SRMUSDT", date(2020, 11, 1), date(2021, 1, 31)),
        ("um", "SRMUSDT", date(2021, 2, 5), date(2021, 3, 31)),  # 4 days without a file: Binance missed them
        ("um", "SRMUSDT", date(2021, 5, 1), date(2021, 9, 6)),  # 30 days without a file: delisted, then relisted
    )
    table = _build(coverage, _history((UM_2021, "um")), date(2021, 9, 7))
    assert _rows(
        table, "SRMUSDT", "valid_from", "valid_to", "status", "delist_date", "first_archive_day", "last_archive_day"
    ) == [
        (date(2020, 11, 1), date(2021, 4, 1), "DELISTED", date(2021, 4, 1), date(2020, 11, 1), date(2021, 3, 31)),
        (date(2021, 5, 1), None, "TRADING", None, date(2021, 5, 1), date(2021, 9, 6)),
    ]
    # the first period's attributes come from the nearest answer (the only one)
    assert _rows(table, "SRMUSDT", "base", "tick_size")[0] == ("SRM", 0.001)
    assert _passes(table) == ALL_PASS
    # a longer threshold reads the 30-day hole as missed files too
    longer = _build(coverage, _history((UM_2021, "um")), date(2021, 9, 7), relist_gap_days=31)
    assert _rows(longer, "SRMUSDT", "valid_from", "valid_to") == [(date(2020, 11, 1), None)]


def test_a_hole_during_which_an_answer_lists_the_symbol_trading_is_not_a_delisting() -> None:
    # 19 days without files (2021-09-01..19), but the real answer of 2021-09-06 lists ADAUSDT TRADING
    coverage = _coverage(
        ("um", "ADAUSDT", date(2021, 7, 1), date(2021, 8, 31)), ("um", "ADAUSDT", date(2021, 9, 20), date(2021, 10, 5))
    )
    table = _build(coverage, _history((UM_2021, "um")), date(2021, 10, 6))
    assert _rows(table, "ADAUSDT", "valid_from", "valid_to", "first_archive_day", "last_archive_day") == [
        (date(2021, 7, 1), None, date(2021, 7, 1), date(2021, 10, 5))
    ]
    # PENDING_TRADING (what Binance shows before a relisting) during the hole does not bridge it (SYNTHETIC answer)
    pending = _later_answer(0, {"ADAUSDT": {"status": "PENDING_TRADING"}})
    relisted = _build(coverage, _history((pending, "um")), date(2021, 10, 6))
    assert _rows(relisted, "ADAUSDT", "valid_from", "valid_to", "status") == [
        (date(2021, 7, 1), date(2021, 9, 1), "DELISTED"),
        (date(2021, 9, 20), None, "PENDING_TRADING"),
    ]


def test_attribute_changes_between_answers_split_periods_into_contiguous_rows() -> None:
    later = _later_answer(  # SYNTHETIC second answer, 10 days after the real one (2021-09-16)
        10, {"BTCUSDT": {"tickSize": "0.10"}, "ADAUSDT": {"status": "SETTLING"}}, drop=("ALPHAUSDT",)
    )
    history = _history((UM_2021, "um"), (later, "um"))
    coverage = _coverage(
        ("um", "BTCUSDT", date(2021, 1, 1), date(2021, 9, 25)),
        ("um", "ALPHAUSDT", date(2021, 1, 1), date(2021, 9, 12)),
        ("um", "ADAUSDT", date(2021, 1, 1), date(2021, 9, 14)),
    )
    table = _build(coverage, history, date(2021, 9, 26))
    assert _rows(table, "BTCUSDT", "valid_from", "valid_to", "tick_size", "status") == [
        (date(2021, 1, 1), date(2021, 9, 16), 0.01, "TRADING"),
        (date(2021, 9, 16), None, 0.1, "TRADING"),
    ]
    # gone from the newest answer, files up to 2021-09-12: delisted on 2021-09-13
    assert _rows(table, "ALPHAUSDT", "valid_from", "valid_to", "status", "delist_date") == [
        (date(2021, 1, 1), date(2021, 9, 13), "DELISTED", date(2021, 9, 13))
    ]
    # listed SETTLING (closed) by the newest answer: ends the day after its last file, with Binance's status
    assert _rows(table, "ADAUSDT", "valid_from", "valid_to", "status", "delist_date") == [
        (date(2021, 1, 1), date(2021, 9, 15), "SETTLING", date(2021, 9, 15))
    ]
    # a delivery contract whose delivery day (2021-09-24) has passed ends the next day, whatever a stale answer says
    assert _rows(table, "BTCUSDT_210924", "valid_from", "valid_to", "status", "kind", "delivery_date") == [
        (date(2021, 6, 16), date(2021, 9, 25), "DELIVERED", "delivery", datetime(2021, 9, 24, 8, tzinfo=UTC))
    ]
    assert _passes(table) == ALL_PASS


def test_spot_break_pairs_end_with_their_archive_and_never_trade_without_one() -> None:
    coverage = _coverage(
        ("spot", "BCCBTC", date(2017, 10, 5), date(2018, 11, 9)),  # BREAK in the answer, files until 2018
        ("spot", "ETHBTC", date(2017, 8, 17), date(2023, 8, 12)),  # TRADING
    )
    table = _build(coverage, _history((_spot_2023(), "spot")), date(2023, 8, 14))
    assert _rows(table, "BCCBTC", "valid_from", "valid_to", "status", "base", "tick_size", "lot_size") == [
        (date(2017, 10, 5), date(2018, 11, 10), "BREAK", "BCC", 0.000001, 0.001)
    ]
    assert _rows(table, "ETHBTC", "valid_from", "valid_to", "status") == [(date(2017, 8, 17), None, "TRADING")]
    # no archive file: a TRADING pair starts with the answer (spot answers have no onboard date) ...
    assert _rows(table, "LTCBTC") == [(SPOT_DAY, None, "TRADING", "exchange_info")]
    # ... and a BREAK pair gets one empty row: known to the exchange, never expected
    assert _rows(table, "HSRBTC") == [(SPOT_DAY, SPOT_DAY, "BREAK", "exchange_info")]
    empty = table.filter(pl.col("valid_to") == pl.col("valid_from"))
    assert empty.height == 883 - 1  # every BREAK pair but BCCBTC, which the archive covers
    assert table.height == 2276 and _passes(table) == ALL_PASS


def test_without_any_answer_the_listing_alone_decides() -> None:
    coverage = _coverage(
        ("cm", "BTCUSD_PERP", date(2020, 8, 10), date(2021, 9, 1)),  # 5 days before yesterday: still trading
        ("cm", "ETHUSD_200925", date(2020, 6, 26), date(2020, 9, 25)),  # long over
    )
    table = _build(coverage, None, date(2021, 9, 7))
    assert table.select("symbol", "kind", "status", "valid_from", "valid_to", "source").sort("symbol").rows() == [
        ("BTCUSD_PERP", "perpetual", "TRADING", date(2020, 8, 10), None, "archive_listing"),
        ("ETHUSD_200925", "delivery", "DELISTED", date(2020, 6, 26), date(2020, 9, 26), "archive_listing"),
    ]


def test_the_stored_table_is_never_shrunk_by_a_listing_that_omits_files_or_symbols() -> None:
    history = _history((UM_2021, "um"))
    first = build_instruments(
        _coverage(("um", "LENDUSDT", date(2020, 6, 15), date(2020, 10, 9)), ("um", "SRMUSDT", date(2020, 11, 1), date(2021, 9, 6))),
        history.frame(), newest=history.newest, today=date(2021, 9, 7),
    ).table  # fmt: skip
    # the next listing omits LENDUSDT entirely and SRMUSDT's files before 2021-03-01
    second = build_instruments(
        _coverage(("um", "SRMUSDT", date(2021, 3, 1), date(2021, 9, 6))),
        history.frame(), newest=history.newest, today=date(2021, 9, 7), stored=first,
    )  # fmt: skip
    assert second.kept_from_stored == ["um:LENDUSDT"]
    assert second.extended_from_stored == ["um:SRMUSDT"]
    assert second.table.equals(first)


def test_the_checks_block_overlapping_periods_duplicate_keys_and_a_wrong_schema() -> None:
    table = _build(_coverage(("um", "LENDUSDT", date(2020, 6, 15), date(2020, 10, 9))), None, date(2021, 9, 7))
    overlapping = pl.concat(
        [
            table,
            table.with_columns(
                valid_from=pl.lit(date(2020, 10, 1)), valid_to=pl.lit(None, pl.Date), status=pl.lit("TRADING")
            ),
        ]
    )
    outcomes = {o.name: o for o in validate_instruments(overlapping)}
    assert {n: o.passed for n, o in outcomes.items()} == {"schema": True, "unique_periods": True, "no_overlap": False}
    assert outcomes["no_overlap"].failures.select("row", "symbol", "valid_from", "valid_to").rows() == [
        (0, "LENDUSDT", date(2020, 6, 15), date(2020, 10, 10)),
        (1, "LENDUSDT", date(2020, 10, 1), None),
    ]
    assert outcomes["no_overlap"].failures_by_day.rows() == [
        ("um", "LENDUSDT", date(2020, 6, 15), 1), ("um", "LENDUSDT", date(2020, 10, 1), 1),
    ]  # fmt: skip
    # a period that starts the day the previous one ends does not overlap it; an empty row overlaps nothing
    adjacent = pl.concat(
        [table, table.with_columns(valid_from=pl.lit(date(2020, 10, 10)), valid_to=pl.lit(None, pl.Date))]
    )
    empty_inside = pl.concat(
        [table, table.with_columns(valid_from=pl.lit(date(2020, 7, 1)), valid_to=pl.lit(date(2020, 7, 1)))]
    )
    assert _passes(adjacent) == _passes(empty_inside) == ALL_PASS
    duplicated = {o.name: o for o in validate_instruments(pl.concat([table, table]))}
    assert not duplicated["unique_periods"].passed and not duplicated["no_overlap"].passed
    assert set(duplicated["unique_periods"].failures["rule"]) == {"duplicate key (market, symbol, valid_from)"}
    broken = table.with_columns(valid_to=pl.lit(date(2020, 1, 1)), tick_size=pl.lit("0.01"))
    schema = validate_instruments(broken)[0]
    assert not schema.passed
    assert set(schema.failures["rule"]) == {"tick_size has dtype String, expected Float64", "valid_to >= valid_from"}


def test_stored_answers_are_read_once_per_sha256_and_parsed_only_when_they_change() -> None:
    # SYNTHETIC later answers: 1 day on with BTCUSDT's tick changed; 2 days on, the same but for serverTime
    store = {
        "a.json": UM_2021,
        "b.json": _later_answer(1, {"BTCUSDT": {"tickSize": "0.10"}}),
        "c.json": _later_answer(2, {"BTCUSDT": {"tickSize": "0.10"}}),
    }
    reads: list[str] = []

    def read(path: str) -> bytes:
        reads.append(path)
        return store[path]

    digest = {p: hashlib.sha256(raw).hexdigest() for p, raw in store.items()}
    paths = ["a.json", "b.json", "b.json", "c.json", "a.json"]  # b stored for two days; spot not wanted
    manifest = pl.DataFrame(
        {
            "market": ["um", "um", "um", "um", "spot"],
            "date": [UM_DAY + timedelta(days=n) for n in (0, 1, 2, 3, 0)],
            "lake_path": paths,
            "sha256": [digest[p] for p in paths],
        }
    )
    folded = fold_answers(manifest, read, markets=["um"])
    assert reads == ["a.json", "b.json", "c.json"]
    assert (folded.rows, folded.parsed, folded.unchanged) == (4, 2, 1)
    assert folded.history.newest == {"um": UM_DAY + timedelta(days=2)}
    btc = folded.history.frame().filter(pl.col("symbol") == "BTCUSDT")
    assert btc.select("tick_size", "seen_from", "seen_to", "current").rows() == [
        (0.01, UM_DAY, UM_DAY, False),
        (0.1, UM_DAY + timedelta(days=1), UM_DAY + timedelta(days=2), True),
    ]
    eth = folded.history.frame().filter(pl.col("symbol") == "ETHUSDT")
    assert eth.select("seen_from", "seen_to", "current").rows() == [(UM_DAY, UM_DAY + timedelta(days=2), True)]
    damaged = manifest.with_columns(sha256=pl.lit("0" * 64))
    with pytest.raises(AnswerError, match="a.json: stored bytes do not match the manifest's sha256 0000"):
        fold_answers(damaged, read, markets=["um"])
