"""The point-in-time universe through the shipped jobs: bronze, silver, gap-fill, on real Binance files.

The archive is the local stand-in over the bundled real files (it logs every request), REST the local
Binance-compatible server over the same files. The silver/instruments tables written into the test
lakes are SYNTHETIC (``universe/periods.py``): real symbols, with listing and delisting days chosen so
that the bundled days fall before a listing, after a delisting, or between two periods.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from lakehouse_assets.defs.common.keys import BRONZE_KLINES, KLINE_GAPS, KLINES_FILLED, SILVER_KLINES
from lakehouse_assets_tests.harness import (
    FILLED,
    GAPS,
    check_outcomes,
    failure_text,
    resources,
    run_gapfill,
    run_klines,
    table,
)
from lakehouse_assets_tests.samples import SPOT, UM
from lakehouse_assets_tests.universe.periods import instruments_table, period, write_instruments
from lakehouse_dev.fakes.archive_server import ArchiveServer
from lakehouse_dev.fakes.rest_server import BinanceRestServer


def requested(archive: ArchiveServer, text: str) -> list[str]:
    return [path for _, path in archive.requests if text in path]


def materialized(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, object]:
    """The metadata of ``key``'s materialization in the run (the first one: a range run has one per day)."""
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == key)
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def completeness_evaluations(result: dg.ExecuteInProcessResult) -> list[dg.AssetCheckEvaluation]:
    return [e for e in result.get_asset_check_evaluations() if e.check_name == "completeness"]


def test_days_before_a_listing_are_never_downloaded_asked_of_rest_or_reported_as_gaps(
    tmp_path: Path, archive_server: ArchiveServer, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    """spot:BTCUSDT "listed" on 2020-01-02: the archive does hold 2020-01-01, and nothing asks for it."""
    lake = tmp_path / "lake"
    write_instruments(lake, instruments_table(period("spot:BTCUSDT", date(2020, 1, 2), base="BTC", quote="USDT")))
    res = resources(lake, archive_server.base_url, "spot:BTCUSDT", rest_url=rest_server.base_url)
    klines = run_klines(res, "2020-01-01", "2020-01-03", instance)
    gapfill = run_gapfill(res, "2020-01-01", "2020-01-03", instance)
    assert klines.success and gapfill.success

    assert requested(archive_server, "2020-01-01") == []  # neither zip nor CHECKSUM nor HEAD
    assert len(requested(archive_server, "BTCUSDT-1m-2020-01-0")) > 0  # the other two days were fetched
    assert rest_server.kline_requests() == []
    bronze = materialized(klines, BRONZE_KLINES)
    assert (bronze["files"], bronze["pre_listing_instrument_days"], bronze["expected_instrument_days"]) == (2, 1, 2)
    assert table(lake, "bronze/klines_archive", "2020-01-01").height == 0
    assert table(lake, "silver/klines", "2020-01-01").height == 0
    assert table(lake, "silver/klines", "2020-01-02").height == 1440

    # completeness: the pre-listing day is not incomplete; nothing is a gap
    assert check_outcomes(klines)["completeness"] is True
    assert check_outcomes(gapfill)["completeness"] is True
    by_day = completeness_evaluations(klines)[0].metadata["incomplete_days"].value
    assert "2020-01-01" not in by_day
    filled = materialized(gapfill, KLINES_FILLED)
    assert (filled["rest_requests"], filled["remaining_gaps"], filled["pre_listing_instrument_days"]) == (0, 0, 1)
    assert "pre_listing" in filled["completeness_by_day"]
    assert [table(lake, GAPS, d).height for d in ("2020-01-01", "2020-01-02", "2020-01-03")] == [0, 0, 0]


def test_the_instruments_table_arriving_later_deletes_nothing_the_lake_holds(
    tmp_path: Path, mirror: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    """Before silver/instruments existed, 2020-01-01 was a hole filled from REST (1440 bars). Once the table says
    the symbol was listed on 2020-01-02, a re-run neither fetches that day again nor deletes its stored bars."""
    zip_path = mirror / SPOT.daily_klines_path("1m", date(2020, 1, 1))
    for path in (zip_path, Path(f"{zip_path}.CHECKSUM")):
        path.unlink()  # as for a real listing: no archive file before it
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as archive:
        res = resources(lake, archive.base_url, "spot:BTCUSDT", rest_url=rest_server.base_url)
        before = run_klines(res, "2020-01-01", "2020-01-03", instance)
        assert before.success and check_outcomes(before)["completeness"] is False  # 1440 minutes missing
        assert run_gapfill(res, "2020-01-01", "2020-01-03", instance).success
        assert len(rest_server.kline_requests()) == 2  # 1440 bars, 1000 per page
        assert table(lake, FILLED, "2020-01-01")["source"].unique().to_list() == ["rest"]

        write_instruments(lake, instruments_table(period("spot:BTCUSDT", date(2020, 1, 2))))
        archive.clear_requests()
        rest_server.clear_requests()
        after = run_klines(res, "2020-01-01", "2020-01-03", instance)
        refill = run_gapfill(res, "2020-01-01", "2020-01-03", instance)
    assert after.success and refill.success
    assert requested(archive, "2020-01-01") == [] and rest_server.kline_requests() == []
    assert check_outcomes(after)["completeness"] is True
    # never lose data: the bars stored for 2020-01-01 stay, though this run had no rows for that day
    assert table(lake, FILLED, "2020-01-01").height == 1440
    assert materialized(refill, KLINES_FILLED)["files_kept"] == 1
    assert table(lake, GAPS, "2020-01-01").height == 0


def test_a_delisted_symbol_is_not_asked_for_after_its_last_day(
    tmp_path: Path, archive_server: ArchiveServer, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    """spot:ADABTC "delisted" after 2021-11-27 (its real file), valid_to 2021-11-28; spot:BTCUSDT delisted long
    before the run: neither is requested for a day it did not trade."""
    lake = tmp_path / "lake"
    write_instruments(lake, instruments_table(
        period("spot:ADABTC", date(2017, 11, 30), date(2021, 11, 28)),
        period("spot:BTCUSDT", date(2017, 8, 17), date(2021, 1, 1)),
    ))  # fmt: skip
    res = resources(lake, archive_server.base_url, "spot:ADABTC,spot:BTCUSDT", rest_url=rest_server.base_url)
    klines = run_klines(res, "2021-11-27", "2021-11-28", instance)
    gapfill = run_gapfill(res, "2021-11-27", "2021-11-28", instance)
    assert klines.success and gapfill.success
    assert requested(archive_server, "2021-11-28") == [] and requested(archive_server, "BTCUSDT") == []
    assert rest_server.kline_requests() == []
    assert table(lake, "silver/klines", "2021-11-27").height == 1440
    assert materialized(klines, BRONZE_KLINES)["delisted_instrument_days"] == 3
    assert materialized(gapfill, KLINES_FILLED)["remaining_gaps"] == 0
    assert check_outcomes(klines)["completeness"] is True


def test_a_relisted_symbol_is_delisted_between_its_periods(
    tmp_path: Path, archive_server: ArchiveServer, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    """um:BTCUSDT with two periods, trading until 2022-05-04 and again from 2022-05-06: 2022-05-05 is delisted."""
    lake = tmp_path / "lake"
    write_instruments(lake, instruments_table(
        period("um:BTCUSDT", date(2019, 9, 8), date(2022, 5, 5)), period("um:BTCUSDT", date(2022, 5, 6)),
    ))  # fmt: skip
    res = resources(lake, archive_server.base_url, "um:BTCUSDT", rest_url=rest_server.base_url)
    klines = run_klines(res, "2022-05-04", "2022-05-06", instance)
    gapfill = run_gapfill(res, "2022-05-04", "2022-05-06", instance)
    assert klines.success and gapfill.success
    assert requested(archive_server, "2022-05-05") == [] and len(requested(archive_server, "2022-05-06")) > 0
    assert rest_server.kline_requests() == []
    assert [table(lake, "silver/klines", d).height for d in ("2022-05-04", "2022-05-05", "2022-05-06")] == [1440, 0, 1440]
    assert materialized(klines, SILVER_KLINES)["delisted_instrument_days"] == 1
    assert "delisted" in materialized(klines, SILVER_KLINES)["completeness_by_day"]
    assert check_outcomes(gapfill)["completeness"] is True
    assert materialized(gapfill, KLINE_GAPS)["gaps"] == 0
    filled = table(lake, FILLED, "2022-05-06")
    assert filled.height == 1440 and filled["symbol"].unique().to_list() == [UM.symbol]


#: SYNTHETIC table: real spot symbols; BTCUPUSDT's and ETHUSDT's rows make them trade on 2020-01-01.
PATTERN_TABLE = instruments_table(
    period("spot:BTCUSDT", date(2017, 8, 17), base="BTC", quote="USDT"),
    period("spot:BTCUPUSDT", date(2019, 12, 1), base="BTCUP", quote="USDT"),
    period("spot:ETHUSDT", date(2017, 8, 17), base="ETH", quote="USDT"),
    period("spot:ADABTC", date(2017, 11, 30), base="ADA", quote="BTC"),
)


def test_a_pattern_with_exclusions_and_symbol_scoped_runs(
    tmp_path: Path, archive_server: ArchiveServer, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    write_instruments(lake, PATTERN_TABLE)
    res = resources(lake, archive_server.base_url, "spot:*USDT,!leveraged,!ETH*")
    result = run_klines(res, "2020-01-01", None, instance)
    assert result.success
    asked = {path.split("/")[5] for _, path in archive_server.requests if "/klines/" in path}
    assert asked == {"BTCUSDT"}  # not BTCUPUSDT (!leveraged), ETHUSDT (!ETH*) nor ADABTC (no match)
    assert table(lake, "silver/klines", "2020-01-01")["symbol"].unique().to_list() == ["BTCUSDT"]

    # a symbol-scoped run inside the resolved universe works; outside it is refused, naming the universe
    scoped = run_klines(res, "2020-01-02", None, instance, tags={"lakehouse/symbols": "spot:BTCUSDT"})
    assert scoped.success and table(lake, "silver/klines", "2020-01-02").height == 1440
    refused = run_klines(res, "2020-01-02", None, instance, tags={"lakehouse/symbols": "spot:BTCUPUSDT"},
                         raise_on_error=False)  # fmt: skip
    assert not refused.success
    assert "spot:BTCUPUSDT not in the configured universe (spot:BTCUSDT)" in failure_text(refused)


def test_a_pattern_without_the_instruments_table_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, archive_server: ArchiveServer, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    res = resources(lake, archive_server.base_url, "spot:*USDT,!leveraged")
    result = run_klines(res, "2020-01-01", None, instance, raise_on_error=False)
    assert not result.success
    assert (
        "LAKEHOUSE_SYMBOLS='spot:*USDT,!leveraged': the pattern(s) 'spot:*USDT' are resolved against the "
        "instruments table, and the lake holds no silver/instruments yet; materialize silver/instruments first"
    ) in failure_text(result)
    assert archive_server.requests == []
    assert not (lake / "silver/klines").exists() and not (lake / "bronze/klines_archive").exists()


def test_exact_entries_without_a_table_behave_as_before(
    tmp_path: Path, archive_server: ArchiveServer, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    res = resources(lake, archive_server.base_url, "spot:BTCUSDT")
    result = run_klines(res, "2020-01-01", "2020-01-03", instance)
    assert result.success
    meta = materialized(result, BRONZE_KLINES)
    assert (meta["files"], meta["expected_instrument_days"], meta["pre_listing_instrument_days"]) == (3, 3, 0)
    assert pl.concat([table(lake, "silver/klines", f"2020-01-0{d}") for d in (1, 2, 3)]).height == 3 * 1440


def test_a_run_whose_days_all_precede_the_listing_succeeds_with_empty_days(
    tmp_path: Path, archive_server: ArchiveServer, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    write_instruments(lake, instruments_table(period("spot:BTCUSDT", date(2020, 1, 3))))
    res = resources(lake, archive_server.base_url, "spot:BTCUSDT", rest_url=rest_server.base_url)
    klines = run_klines(res, "2020-01-01", "2020-01-02", instance)
    gapfill = run_gapfill(res, "2020-01-01", "2020-01-02", instance)
    assert klines.success and gapfill.success
    assert archive_server.requests == [] and rest_server.kline_requests() == []
    assert [table(lake, "silver/klines", d).height for d in ("2020-01-01", "2020-01-02")] == [0, 0]
    assert materialized(klines, SILVER_KLINES)["pre_listing_instrument_days"] == 2
    assert table(lake, FILLED, "2020-01-02").height == 0
