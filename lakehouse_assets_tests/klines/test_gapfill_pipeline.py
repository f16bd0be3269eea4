"""bronze -> silver -> silver/klines_filled + silver/kline_gaps through Dagster, archive and REST both local.

The archive comes from a temp copy of the sample mirror (damaged copies of real files where a test
needs holes); REST is the local Binance-compatible server over the same real files, reached
through ccxt with its URLs pointed at 127.0.0.1.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse_assets.instruments import Instrument
from lakehouse_assets.lake.sql import query
from lakehouse_assets.lake.store import LocalStore
from lakehouse_assets_tests.harness import FILLED, GAPS, check_outcomes, resources, run_gapfill, run_klines, table
from lakehouse_assets_tests.samples import CM, SPOT, UM, real_day, remove_minutes, rewrite_zip_csv, utc
from lakehouse_dev.fakes.archive_server import ArchiveServer
from lakehouse_dev.fakes.rest_server import BinanceRestServer

# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instrument", "day"),
    [(SPOT, date(2020, 1, 1)), (UM, date(2022, 5, 4)), (CM, date(2022, 10, 24))],
    ids=["spot", "um", "cm"],
)
def test_a_deleted_block_is_rebuilt_exactly_and_source_marks_exactly_those_minutes(
    tmp_path: Path, mirror: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance,
    instrument: Instrument, day: date,
) -> None:
    hole = (datetime(day.year, day.month, day.day, 10, tzinfo=UTC), datetime(day.year, day.month, day.day, 12, 7, tzinfo=UTC))
    rewrite_zip_csv(mirror / instrument.daily_klines_path("1m", day), remove_minutes(*hole))
    lake = tmp_path / "lake"
    key = day.isoformat()
    with ArchiveServer(mirror) as archive:
        res = resources(lake, archive.base_url, instrument.key, rest_url=rest_server.base_url)
        assert run_klines(res, key, key, instance).success
        assert table(lake, "silver/klines", key).height == 1440 - 127
        result = run_gapfill(res, key, None, instance)
    assert result.success

    filled = table(lake, FILLED, key)
    original = real_day(instrument, day)  # the untouched Binance file
    assert filled.height == 1440
    assert filled.drop("source").equals(original.drop("source"))  # every value, every column
    rest_minutes = filled.filter(pl.col("source") == "rest")["open_time"]
    assert rest_minutes.to_list() == original.filter(
        (pl.col("open_time") >= hole[0]) & (pl.col("open_time") < hole[1])
    )["open_time"].to_list()
    assert filled.filter(pl.col("source") == "archive").height == 1440 - 127
    assert table(lake, GAPS, key).height == 0
    assert check_outcomes(result) == {
        "schema": True, "ohlc_consistency": True, "volumes": True, "time_grid": True, "completeness": True
    }
    (request,) = rest_server.kline_requests()  # one 127-minute window, one page
    assert int(request.params["startTime"]) == int(hole[0].timestamp() * 1000)


def test_a_day_missing_from_the_archive_comes_from_rest_and_is_replaced_when_the_archive_appears(
    tmp_path: Path, mirror: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    zip_path = mirror / SPOT.daily_klines_path("1m", date(2020, 1, 2))
    kept = {p: p.read_bytes() for p in (zip_path, Path(str(zip_path) + ".CHECKSUM"))}
    for path in kept:
        path.unlink()  # 404 in the archive
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as archive:
        res = resources(lake, archive.base_url, "spot:BTCUSDT", rest_url=rest_server.base_url)
        assert run_klines(res, "2020-01-01", "2020-01-03", instance).success
        assert table(lake, "silver/klines", "2020-01-02").height == 0
        result = run_gapfill(res, "2020-01-01", "2020-01-03", instance)
        assert result.success

        # the missing day: 1440 REST rows, equal to the real file; two pages (1000 + 440), no duplicates
        day2 = table(lake, FILLED, "2020-01-02")
        assert day2.height == 1440 and set(day2["source"]) == {"rest"}
        assert day2.drop("source").equals(real_day(SPOT, date(2020, 1, 2)).drop("source"))
        starts = [int(r.params["startTime"]) for r in rest_server.kline_requests()]
        first = int(utc(2020, 1, 2).timestamp() * 1000)
        assert starts == [first, first + 1000 * 60_000]
        for day in ("2020-01-01", "2020-01-03"):
            assert set(table(lake, FILLED, day)["source"]) == {"archive"}
            assert table(lake, FILLED, day).height == 1440
        materialization = result.asset_materializations_for_node("klines_filled")[0]
        assert materialization.metadata["rest_rows"].value == 1440
        assert materialization.metadata["rest_requests"].value == 2

        # rerun: same rows, no duplicates (the REST rows are fetched again, identically)
        before = {d: table(lake, FILLED, d) for d in ("2020-01-01", "2020-01-02", "2020-01-03")}
        assert run_gapfill(res, "2020-01-01", "2020-01-03", instance).success
        for day, frame in before.items():
            assert table(lake, FILLED, day).equals(frame)

        # the archive is published later: bronze + silver + gap-fill again -> archive rows, no REST call
        for path, data in kept.items():
            path.write_bytes(data)
        rest_server.clear_requests()
        assert run_klines(res, "2020-01-02", "2020-01-02", instance).success
        assert run_gapfill(res, "2020-01-02", None, instance).success
    day2 = table(lake, FILLED, "2020-01-02")
    assert day2.height == 1440 and set(day2["source"]) == {"archive"}
    assert day2.drop("source").equals(real_day(SPOT, date(2020, 1, 2)).drop("source"))
    assert rest_server.kline_requests() == []
    files = sorted(p.name for p in (lake / FILLED / "date=2020-01-02").iterdir())
    assert files == ["spot-BTCUSDT.parquet"]
    store = LocalStore(lake)
    assert query("select source, count(*) n from silver.klines_filled group by source", store=store).rows() == [
        ("archive", 4320)
    ]
