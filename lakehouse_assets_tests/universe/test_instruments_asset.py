"""silver/instruments through Dagster: the project's asset, IO manager and checks, the archive stand-in on 127.0.0.1.

Inputs:

* bronze/exchange_info holds the REAL USD-M ``/fapi/v1/exchangeInfo`` answer of 2021-09-06 (133 symbols,
  ``data/binance/api/izzortsi+rezbot``), stored the way the bronze asset stores it (raw bytes under
  ``answer_key`` plus a manifest row), or, in the last test, fetched by the bronze asset itself from the
  REST stand-in;
* the archive is a SYNTHETIC listing tree (``lakehouse_dev/fixtures/listing_tree.py``: Binance's file
  names, placeholder content; the listing reads names only) served by the archive stand-in over the S3
  list API, with symbols chosen for each case: AUDIOUSDT listed mid-month, LENDUSDT delisted before the
  answer (absent from it), SRMUSDT delisted for a month and relisted, its daily-only directory holding
  more than 1000 keys (two list pages).

The clock is frozen at 2021-09-07 06:00 UTC: yesterday is the day of the answer.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from lakehouse_assets.cli import main
from lakehouse_assets.defs.common.keys import BRONZE_EXCHANGE_INFO, SILVER_INSTRUMENTS
from lakehouse_assets.lake.layout import frame_to_parquet, write_partitions
from lakehouse_assets.lake.sql import query
from lakehouse_assets.lake.store import LocalStore
from lakehouse_assets.universe.exchange_info_bronze import MANIFEST_SCHEMA, MANIFEST_SYMBOL, answer_key
from lakehouse_assets.universe.instruments_table import SCHEMA
from lakehouse_assets_tests.harness import automation_defs, check_outcomes, failure_text, project_defs, resources
from lakehouse_assets_tests.samples import SAMPLE_DATA, utc
from lakehouse_dev.fakes.archive_server import ArchiveServer
from lakehouse_dev.fixtures.listing_tree import days, write_listing_tree

UM_2021 = (SAMPLE_DATA / "api" / "izzortsi+rezbot" / "exchangeInfo.json").read_bytes()
ANSWER_DAY = date(2021, 9, 6)
TABLE_FILE = Path("silver/instruments/instruments.parquet")
SRM_GAP = set(days(date(2021, 3, 1), date(2021, 3, 31)))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    write_listing_tree(
        root, "um", "AUDIOUSDT", daily=days(date(2021, 8, 18), date(2021, 9, 6)), monthly=[date(2021, 8, 1)]
    )
    write_listing_tree(
        root, "um", "LENDUSDT", daily=days(date(2020, 6, 15), date(2020, 10, 9)),
        monthly=[date(2020, m, 1) for m in range(6, 11)],
    )  # fmt: skip
    srm = [d for d in days(date(2020, 1, 1), date(2021, 9, 6)) if d not in SRM_GAP]
    assert write_listing_tree(root, "um", "SRMUSDT", daily=srm) == 1168  # no monthly directory: listed whole
    return root


@pytest.fixture
def frozen(clock: Any) -> None:
    clock.set(utc(2021, 9, 7, 6, 0))


def seed_answer(lake: Path, raw: bytes = UM_2021, market: str = "um", day: date = ANSWER_DAY) -> None:
    """Store ``raw`` as bronze/exchange_info stores an answer: the bytes under answer_key, one manifest row."""
    store = LocalStore(lake)
    key = answer_key(market, day)
    store.put_bytes(key, raw)
    row = {
        "market": market, "symbol": MANIFEST_SYMBOL, "date": day, "source_url": "http://127.0.0.1/fapi/v1/exchangeInfo",
        "lake_path": key, "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw),
        "server_time": datetime(2021, 9, 6, 13, 13, 38, 759000, tzinfo=UTC), "symbols": 133,
        "fetched_at": datetime(2021, 9, 6, 13, 13, 39, tzinfo=UTC), "upstream_status": "ok",
    }  # fmt: skip
    frame = pl.DataFrame([row], schema=MANIFEST_SCHEMA)
    write_partitions(store, "bronze/exchange_info", frame, days=[day.isoformat()], partition_column="date")


def build(lake: Path, server: ArchiveServer, instance: dg.DagsterInstance, **kw: Any) -> dg.ExecuteInProcessResult:
    res = resources(lake, server.base_url, "um:BTCUSDT", **kw)
    job = project_defs(res).resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, asset_selection=[SILVER_INSTRUMENTS], raise_on_error=False)


def _rows(table: pl.DataFrame, symbol: str) -> list[tuple[Any, ...]]:
    return (
        table.filter(pl.col("symbol") == symbol)
        .sort("valid_from")
        .select("valid_from", "valid_to", "status", "first_archive_day", "last_archive_day", "source")
        .rows()
    )


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = result.asset_materializations_for_node("silver__instruments")
    return {k: getattr(v, "value", v) for k, v in event.metadata.items()}


def test_builds_the_table_from_answers_and_a_paged_listing(
    tmp_path: Path, tree: Path, frozen: None, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    lake = tmp_path / "lake"
    seed_answer(lake)
    with ArchiveServer(tree, page_size=1000) as server:
        markers: list[str] = []
        server.rewrite_listing = lambda body, q: (markers.append(q.get("marker", "")), body)[1]
        result = build(lake, server, instance)
    assert result.success, failure_text(result)
    assert check_outcomes(result) == {"schema": True, "unique_periods": True, "no_overlap": True}
    assert sum(1 for m in markers if m.startswith("data/futures/um/daily/klines/SRMUSDT/")) == 1  # its second page

    table = pl.read_parquet(lake / TABLE_FILE)
    assert table.schema == pl.Schema(SCHEMA)
    assert table.height == 135 and table.select("market", "symbol").n_unique() == 134  # 133 answered + LENDUSDT
    assert _rows(table, "AUDIOUSDT") == [
        (date(2021, 8, 18), None, "TRADING", date(2021, 8, 18), date(2021, 9, 6), "exchange_info+archive_listing")
    ]
    assert _rows(table, "LENDUSDT") == [
        (date(2020, 6, 15), date(2020, 10, 10), "DELISTED", date(2020, 6, 15), date(2020, 10, 9), "archive_listing")
    ]
    assert _rows(table, "SRMUSDT") == [
        (
            date(2020, 1, 1),
            date(2021, 3, 1),
            "DELISTED",
            date(2020, 1, 1),
            date(2021, 2, 28),
            "exchange_info+archive_listing",
        ),
        (date(2021, 4, 1), None, "TRADING", date(2021, 4, 1), date(2021, 9, 6), "exchange_info+archive_listing"),
    ]
    meta = _metadata(result)
    assert (meta["instruments"], meta["open_instruments"], meta["exchange_info_answers"]) == (134, 133, 1)
    assert meta["listed_symbols"] == "- um: 3"
    # symbol dirs (daily, monthly); AUDIOUSDT: its monthly dir + 2 months (2021-08 its run, 2021-09 the newest);
    # LENDUSDT: monthly dir + run edges 2020-06, 2020-10 + newest months 2021-08, 2021-09; SRMUSDT: its daily dir
    assert meta["listing_calls"] == 2 + (1 + 2) + (1 + 4) + 1
    assert "| um | DELISTED | 1 | 0 | 135 |" in meta["by_market_status"]
    assert "| um | LENDUSDT | DELISTED | 2020-06-15 | 2020-10-09 | 2020-10-10 | archive_listing |" in meta["delisted"]
    assert meta["traded_per_day"].startswith("![instruments per day](data:image/svg+xml;base64,")
    assert "| 2021-09-07 | 133 |" in meta["traded_by_month"]  # today: every listed symbol but LENDUSDT
    assert meta["kept_from_stored"] == "none"

    # The lake's SQL layer sees the unpartitioned table as silver.instruments (DuckDB over the one file).
    sql = "select symbol, valid_from, valid_to, status from silver.instruments where symbol = 'SRMUSDT' order by valid_from"
    assert query(sql, store=LocalStore(lake)).rows() == [
        ("SRMUSDT", date(2020, 1, 1), date(2021, 3, 1), "DELISTED"), ("SRMUSDT", date(2021, 4, 1), None, "TRADING"),
    ]  # fmt: skip
    monkeypatch.setenv("LAKEHOUSE_STORAGE", str(lake))
    assert (
        main(["query", "select count(*) as n from silver.instruments where valid_to is null", "--format", "csv"]) == 0
    )
    assert capsys.readouterr().out == "n\n133\n"


def test_without_answers_the_listing_alone_builds_it_and_a_later_listing_never_shrinks_it(
    tmp_path: Path, tree: Path, frozen: None, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    with ArchiveServer(tree) as server:
        first = build(lake, server, instance)
    assert first.success, failure_text(first)
    alone = pl.read_parquet(lake / TABLE_FILE)
    assert alone.select("symbol", "status", "valid_to", "source").sort(
        "symbol", "valid_to", nulls_last=True
    ).rows() == [
        ("AUDIOUSDT", "TRADING", None, "archive_listing"),
        ("LENDUSDT", "DELISTED", date(2020, 10, 10), "archive_listing"),
        ("SRMUSDT", "DELISTED", date(2021, 3, 1), "archive_listing"),
        ("SRMUSDT", "TRADING", None, "archive_listing"),
    ]

    # Binance removes LENDUSDT's directories and SRMUSDT's files of 2020; an answer arrives meanwhile.
    shutil.rmtree(tree / "data/futures/um/daily/klines/LENDUSDT")
    shutil.rmtree(tree / "data/futures/um/monthly/klines/LENDUSDT")
    for old in (tree / "data/futures/um/daily/klines/SRMUSDT/1m").glob("SRMUSDT-1m-2020-*"):
        old.unlink()
    seed_answer(lake)
    with ArchiveServer(tree) as server:
        second = build(lake, server, instance)
    assert second.success, failure_text(second)
    table = pl.read_parquet(lake / TABLE_FILE)
    assert _rows(table, "LENDUSDT") == [
        (date(2020, 6, 15), date(2020, 10, 10), "DELISTED", date(2020, 6, 15), date(2020, 10, 9), "archive_listing")
    ]
    assert [r[:2] for r in _rows(table, "SRMUSDT")] == [(date(2020, 1, 1), date(2021, 3, 1)), (date(2021, 4, 1), None)]
    meta = _metadata(second)
    assert meta["kept_from_stored"] == "- um:LENDUSDT"
    assert meta["archive_days_kept_from_stored"] == "- um:SRMUSDT"
    assert table.filter(pl.col("symbol") == "AUDIOUSDT")["base"].to_list() == ["AUDIO"]  # the answer filled it in


def test_overlapping_periods_block_the_write(
    tmp_path: Path, tree: Path, frozen: None, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    seed_answer(lake)
    # A stored table (SYNTHETIC rows) in which um:OLDUSDT has two overlapping periods. No source mentions
    # OLDUSDT any more, so the never-shrink rule carries its rows over, and the check must refuse them.
    old = pl.DataFrame(
        [
            {"market": "um", "symbol": "OLDUSDT", "kind": "perpetual", "status": "DELISTED", "source": "archive_listing",
             "valid_from": date(2020, 1, 1), "valid_to": date(2020, 6, 1), "first_archive_day": date(2020, 1, 1),
             "last_archive_day": date(2020, 5, 31), "delist_date": date(2020, 6, 1)},
            {"market": "um", "symbol": "OLDUSDT", "kind": "perpetual", "status": "TRADING", "source": "archive_listing",
             "valid_from": date(2020, 5, 1), "valid_to": None, "first_archive_day": date(2020, 5, 1),
             "last_archive_day": date(2020, 9, 30)},
        ],
        schema=SCHEMA,
    )  # fmt: skip
    stored = frame_to_parquet(old)
    (lake / TABLE_FILE).parent.mkdir(parents=True)
    (lake / TABLE_FILE).write_bytes(stored)
    with ArchiveServer(tree) as server:
        result = build(lake, server, instance)
    assert not result.success
    assert check_outcomes(result) == {"schema": True, "unique_periods": True, "no_overlap": False}
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "no_overlap"]
    assert evaluation.metadata["failing_rows"].value == 2
    assert "| um | OLDUSDT | 2020-05-01 | 1 |" in evaluation.metadata["failures_by_day"].value
    assert "silver/instruments not written: blocking checks failed" in failure_text(result)
    assert (
        "no_overlap [periods of one instrument overlap]: 2020-01-01 um:OLDUSDT (1 rows), 2020-05-01 um:OLDUSDT (1 rows)"
        in failure_text(result)
    )
    assert (lake / TABLE_FILE).read_bytes() == stored  # nothing written
    assert result.asset_materializations_for_node("silver__instruments") == []


def test_a_malformed_listing_fails_naming_the_url_and_writes_nothing(
    tmp_path: Path, tree: Path, frozen: None, instance: dg.DagsterInstance
) -> None:
    lake = tmp_path / "lake"
    seed_answer(lake)
    with ArchiveServer(tree) as server:
        server.rewrite_listing = lambda body, q: body[: len(body) // 2] if "SRMUSDT" in q["prefix"] else body
        result = build(lake, server, instance)
        url = f"{server.base_url}/?prefix=data%2Ffutures%2Fum%2Fdaily%2Fklines%2FSRMUSDT%2F1m%2F"
    assert not result.success
    text = failure_text(result)
    assert f"archive listing {url}" in text and "answer is not XML" in text
    assert "silver/instruments not written, the stored table is unchanged" in text
    assert not (lake / "silver").exists()
    assert result.get_asset_check_evaluations() == []  # failed before any check ran


def test_after_the_bronze_asset_fetched_the_answer_from_the_rest_stand_in(
    tmp_path: Path, tree: Path, frozen: None, instance: dg.DagsterInstance, rest_server: Any
) -> None:
    """End to end: bronze/exchange_info (today's partition, fetched through ccxt from the stand-in, which
    serves the real 2021 USD-M answer byte for byte); the new answer makes silver/instruments' automation condition
    request a rebuild, which reads what bronze stored."""
    lake = tmp_path / "lake"
    with ArchiveServer(tree) as server:
        res = resources(lake, server.base_url, "um:BTCUSDT", rest_url=rest_server.base_url)
        job = project_defs(res).resolve_implicit_global_asset_job_def()
        selection = dg.AssetSelection.assets(SILVER_INSTRUMENTS).without_checks()

        def automation(cursor: Any = None) -> Any:
            return dg.evaluate_automation_conditions(
                defs=automation_defs(res), instance=instance, asset_selection=selection, cursor=cursor
            )

        auto = automation()
        assert auto.total_requested == 0  # no answer stored yet
        today = datetime.now(UTC).date().isoformat()  # bronze fetches for the real current day only
        bronze = job.execute_in_process(instance=instance, asset_selection=[BRONZE_EXCHANGE_INFO], partition_key=today)
        assert bronze.success
        auto = automation(auto.cursor)
        assert auto.total_requested == 1  # a new answer: the table is rebuilt (its own condition)
        silver = job.execute_in_process(instance=instance, asset_selection=[SILVER_INSTRUMENTS], raise_on_error=False)
        assert silver.success, failure_text(silver)
        assert automation(auto.cursor).total_requested == 0  # handled
    table = pl.read_parquet(lake / TABLE_FILE)
    assert _rows(table, "AUDIOUSDT")[0][:3] == (date(2021, 8, 18), None, "TRADING")
    assert _rows(table, "LENDUSDT")[0][:3] == (date(2020, 6, 15), date(2020, 10, 10), "DELISTED")
    assert table.select("market", "symbol").n_unique() == 134
