"""Runs in chunks (LAKEHOUSE_RUN_MEMORY_MIB): the same lake and the same check outcomes as one chunk.

Through the project's own klines_job and klines_filled_job (harness), on the real sample files: spot
BTCUSDT 2020-01-01..03 and, for the same days, USD-M BTCUSDT and COIN-M BTCUSD_PERP, which the archive
does not have for 2020 (404: empty chunks, incomplete days). The budgets are among the smallest
LAKEHOUSE_RUN_MEMORY_MIB allows, so chunks hold 2 instrument-days (days cut) or one instrument's 3 days.
"""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import pytest

from lakehouse_assets.defs.resources import RunMemoryResource
from lakehouse_assets.klines import memory
from lakehouse_assets.klines.memory import MIN_RUN_MEMORY_MIB
from lakehouse_assets.klines.memory import SILVER_KLINES as MODEL
from lakehouse_assets_tests.harness import (
    FILLED,
    GAPS,
    check_outcomes,
    failure_text,
    resources,
    run_gapfill,
    run_gold,
    run_klines,
)
from lakehouse_assets_tests.samples import remove_minutes, rewrite_zip_csv, utc

UNIVERSE = "spot:BTCUSDT,um:BTCUSDT,cm:BTCUSD_PERP"
FIRST, LAST = "2020-01-01", "2020-01-03"
ZIP = "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-02.zip"
SILVER = dg.AssetKey(["silver", "klines"])


def _budget(instrument_days: int, model: memory.MemoryModel = MODEL) -> int:
    """The budget whose chunks hold exactly ``instrument_days``."""
    budget = math.ceil(model.fixed_mib + instrument_days * model.mib_per_instrument_day)
    assert model.capacity(budget) == instrument_days and budget >= MIN_RUN_MEMORY_MIB
    return budget


def _silver(lake: Path, table: str = "silver/klines") -> dict[str, bytes]:
    return {p.relative_to(lake).as_posix(): p.read_bytes() for p in sorted((lake / table).rglob("*.parquet"))}


def _run(tmp_path: Path, mirror: Path, name: str, budget: int | None, instance: dg.DagsterInstance, **kw):
    lake = tmp_path / name
    res = resources(str(lake), mirror.as_uri(), UNIVERSE)
    if budget is not None:
        res["run_memory"] = RunMemoryResource(budget_mib=budget)
    return lake, run_klines(res, FIRST, LAST, instance, **kw)


def _silver_materialization(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == SILVER][:1]
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


@pytest.mark.parametrize(
    "instrument_days, chunks",
    [(2, 6), (3, 3)],  # 2 days of one instrument, then its third (days cut); each instrument over the 3 days
    ids=["instrument-day-chunks", "instrument-chunks"],
)
def test_chunks_write_the_same_files_and_checks_as_one_chunk(tmp_path, mirror, instrument_days, chunks) -> None:
    with dg.instance_for_test() as one_instance, dg.instance_for_test() as many_instance:
        whole_lake, whole = _run(tmp_path, mirror, "whole", None, one_instance)
        chunked_lake, chunked = _run(tmp_path, mirror, "chunked", _budget(instrument_days), many_instance)
    assert whole.success and chunked.success

    files = _silver(chunked_lake)
    assert files == _silver(whole_lake)  # byte for byte
    assert sorted(files) == [
        "silver/klines/date=2020-01-01/spot-BTCUSDT.parquet",
        "silver/klines/date=2020-01-02/spot-BTCUSDT.parquet",
        "silver/klines/date=2020-01-03/spot-BTCUSDT.parquet",
    ]
    assert check_outcomes(chunked) == check_outcomes(whole)
    assert check_outcomes(chunked)["completeness"] is False  # um and cm: no archive file for 2020 (404)
    completeness = {e.check_name: e for e in chunked.get_asset_check_evaluations() if e.asset_key == SILVER}[
        "completeness"
    ]
    assert completeness.description == "6 of 9 instrument-days incomplete"

    one, many = _silver_materialization(whole), _silver_materialization(chunked)
    assert many["chunks_written"] == chunks and one["chunks_written"] == 1
    for key in ("dagster/row_count", "files_written", "files_parsed", "completeness", "completeness_by_symbol",
                "completeness_by_day", "first_close", "parquet_bytes"):
        assert many[key] == one[key], key
    assert many["dagster/row_count"] == 3 * 1440
    assert "| spot | BTCUSDT | 2020-01-01 00:00:00+00:00 | 7186.68 | 7344.96 |" in many["first_close"]


def test_a_blocked_chunk_writes_nothing_of_itself_and_the_others_stay(tmp_path, mirror) -> None:
    def swap_high_low(csv: bytes) -> bytes:  # 12:00 UTC on 2020-01-02: high 7148.19 and low 7139.03 swapped
        lines = csv.split(b"\n")
        f = lines[720].split(b",")
        f[2], f[3] = f[3], f[2]
        lines[720] = b",".join(f)
        return b"\n".join(lines)

    rewrite_zip_csv(mirror / ZIP, swap_high_low)
    with dg.instance_for_test() as instance:
        lake, result = _run(tmp_path, mirror, "lake", _budget(2), instance, raise_on_error=False)
        materialized = instance.get_materialized_partitions(SILVER)

    assert not result.success
    # the chunk holding 2020-01-02 (spot 2020-01-01..02) wrote nothing, not even its valid first day; the
    # chunks that passed are complete, checked days (spot 2020-01-03; um and cm: no archive file, no rows)
    assert sorted(_silver(lake)) == ["silver/klines/date=2020-01-03/spot-BTCUSDT.parquet"]
    assert materialized == set()  # the step failed: no day is reported materialized
    # the check evaluations cover every chunk: only the blocked day fails
    checks = {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == SILVER}
    assert {name: e.passed for name, e in checks.items()} == {
        "schema": True, "ohlc_consistency": False, "volumes": True, "time_grid": True, "completeness": False,
    }
    by_day = checks["ohlc_consistency"].metadata["failures_by_day"].value
    assert "| spot | BTCUSDT | 2020-01-02 | 1 |" in by_day
    assert "2020-01-01" not in by_day and "2020-01-03" not in by_day
    text = failure_text(result)
    assert "ohlc_consistency" in text and "2020-01-02 spot:BTCUSDT (1 rows)" in text
    assert (
        "The failing chunks wrote nothing; 5 of 6 chunks passed every check and were written (their instrument-days "
        "are complete, checked data): spot:BTCUSDT (2020-01-03); um:BTCUSDT (2020-01-01, 2020-01-02); "
        "um:BTCUSDT (2020-01-03); cm:BTCUSD_PERP (2020-01-01, 2020-01-02); cm:BTCUSD_PERP (2020-01-03)"
    ) in text


def test_gap_fill_chunks_write_the_same_tables_and_checks_as_one_chunk(tmp_path, mirror, rest_server) -> None:
    """Each instrument alone (the gap-fill never cuts days): a hole in spot 2020-01-02 filled from REST, um and cm
    with no archive and no REST candles for 2020 (whole-day gaps)."""
    hole = (utc(2020, 1, 2, 10, 0), utc(2020, 1, 2, 12, 7))
    rewrite_zip_csv(mirror / ZIP, remove_minutes(*hole))
    lakes, results = {}, {}
    with dg.instance_for_test() as instance:
        for name, budget in (("whole", None), ("chunked", _budget(2, memory.KLINES_FILLED))):
            lake = tmp_path / name
            res = resources(str(lake), mirror.as_uri(), UNIVERSE, rest_url=rest_server.base_url)
            if budget is not None:
                res["run_memory"] = RunMemoryResource(budget_mib=budget)
            assert run_klines(res, FIRST, LAST, instance).success
            lakes[name], results[name] = lake, run_gapfill(res, FIRST, LAST, instance)
    assert results["whole"].success and results["chunked"].success

    for table in (FILLED, GAPS):
        assert _silver(lakes["chunked"], table) == _silver(lakes["whole"], table), table
    filled = _silver(lakes["chunked"], FILLED)
    assert sorted(filled) == [f"{FILLED}/date=2020-01-0{d}/spot-BTCUSDT.parquet" for d in (1, 2, 3)]
    assert sorted(_silver(lakes["chunked"], GAPS)) == [
        f"{GAPS}/date=2020-01-0{d}/{m}.parquet" for d in (1, 2, 3) for m in ("cm-BTCUSD_PERP", "um-BTCUSDT")
    ]
    assert check_outcomes(results["chunked"]) == check_outcomes(results["whole"])

    def metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, object]:
        [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key][:1]
        return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}

    one, many = metadata(results["whole"], FILLED), metadata(results["chunked"], FILLED)
    assert (one["chunks_written"], many["chunks_written"]) == (1, 3)
    for key in ("dagster/row_count", "archive_rows", "rest_rows", "rest_requests", "rest_windows", "remaining_gaps",
                "completeness", "completeness_by_symbol", "completeness_by_day", "parquet_bytes"):
        assert many[key] == one[key], key
    assert (many["archive_rows"], many["rest_rows"]) == (3 * 1440 - 127, 127)
    gaps_one, gaps_many = metadata(results["whole"], GAPS), metadata(results["chunked"], GAPS)
    assert {k: v for k, v in gaps_many.items() if k != "dagster/uri"} == {k: v for k, v in gaps_one.items() if k != "dagster/uri"}
    assert gaps_many["gaps"] == 6 and gaps_many["missing_bars"] == 6 * 1440


def test_gold_chunks_write_the_same_tables_checks_and_day_metadata_as_one_chunk(tmp_path, mirror) -> None:
    """gold/klines_resampled and gold/features, each instrument a chunk of its own (gold never cuts days)."""
    lakes, results = {}, {}
    with dg.instance_for_test() as instance:
        for name, budget in (("whole", None), ("chunked", _budget(3, memory.GOLD_FEATURES))):
            lake = tmp_path / name
            res = resources(str(lake), mirror.as_uri(), UNIVERSE, rest_enabled=False)
            if budget is not None:
                res["run_memory"] = RunMemoryResource(budget_mib=budget)
            assert run_klines(res, FIRST, LAST, instance).success
            assert run_gapfill(res, FIRST, LAST, instance).success
            lakes[name], results[name] = lake, run_gold(res, FIRST, LAST, instance)
    assert results["whole"].success and results["chunked"].success

    for table in ("gold/klines_resampled", "gold/features"):
        files = _silver(lakes["chunked"], table)
        assert files == _silver(lakes["whole"], table), table
        assert sorted(files) == [f"{table}/date=2020-01-0{d}/spot-BTCUSDT.parquet" for d in (1, 2, 3)]
    assert check_outcomes(results["chunked"]) == check_outcomes(results["whole"])

    def events(result: dg.ExecuteInProcessResult, key: str) -> dict[str, dict[str, object]]:
        """Each day's materialization metadata, without the lake location."""
        return {
            e.partition: {k: getattr(v, "value", v) for k, v in e.materialization.metadata.items() if k != "dagster/uri"}
            for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key
        }

    for key in ("gold/klines_resampled", "gold/features"):
        one, many = events(results["whole"], key), events(results["chunked"], key)
        assert sorted(many) == ["2020-01-01", "2020-01-02", "2020-01-03"]
        assert {d: m["chunks_written"] for d, m in many.items()} == dict.fromkeys(many, 3)
        assert {d: {k: v for k, v in m.items() if k != "chunks_written"} for d, m in many.items()} == {
            d: {k: v for k, v in m.items() if k != "chunks_written"} for d, m in one.items()
        }
    day = events(results["chunked"], "gold/features")["2020-01-02"]
    assert "chart spot:BTCUSDT" in day and "| spot | BTCUSDT | 1m | 2020-01-02 23:59:00+00:00 | 6965.71 |" in day["latest"]
