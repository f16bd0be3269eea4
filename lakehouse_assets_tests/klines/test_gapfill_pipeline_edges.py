"""Gap-fill through Dagster at the edges: a real maintenance gap, geo-block, REST off, forming candle, today."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from lakehouse_assets.defs.resources import BinanceRestResource
from lakehouse_assets.instruments import MARKETS
from lakehouse_assets.klines.gapfill import REASON_DISABLED, REASON_NO_DATA, closed_until
from lakehouse_assets.lake.layout import write_partitions
from lakehouse_assets.lake.sql import query
from lakehouse_assets.lake.store import LocalStore
from lakehouse_assets_tests.harness import (
    FILLED,
    GAPS,
    check_outcomes,
    failure_text,
    gapfill_config,
    resources,
    run_gapfill,
    run_klines,
    table,
)
from lakehouse_assets_tests.samples import (
    CM,
    SPOT,
    real_day,
    remove_minutes,
    rewrite_zip_csv,
    spot_1h_february_2020,
    utc,
)
from lakehouse_dev.fakes.archive_server import ArchiveServer
from lakehouse_dev.fakes.rest_server import BinanceRestServer


def test_a_real_maintenance_gap_ends_up_in_kline_gaps_not_filled(
    tmp_path: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    """Binance's 2020-02-19 maintenance (12:00-16:59 UTC): absent from the archive and from REST."""
    lake = tmp_path / "lake"
    silver = spot_1h_february_2020()  # real 1h bars (the sample has no 1m file for a maintenance day)
    write_partitions(LocalStore(lake), "silver/klines", silver, days=["2020-02-19"], partition_column="open_time")
    res = resources(lake, "http://127.0.0.1:9", "spot:BTCUSDT", rest_url=rest_server.base_url)
    result = run_gapfill(res, "2020-02-19", None, instance, run_config=gapfill_config(interval="1h"))
    assert result.success

    gaps = table(lake, GAPS, "2020-02-19")
    assert gaps.rows() == [
        ("spot", "BTCUSDT", "1h", utc(2020, 2, 19, 12), utc(2020, 2, 19, 17), 5, 300, REASON_NO_DATA)
    ]
    filled = table(lake, FILLED, "2020-02-19")
    assert filled.height == 19 and set(filled["source"]) == {"archive"}  # nothing invented
    (completeness,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "completeness"]
    assert not completeness.passed and completeness.severity == dg.AssetCheckSeverity.WARN
    listed = completeness.metadata["gaps"].value
    assert "2020-02-19 12:00:00+00:00" in listed and REASON_NO_DATA in listed
    assert completeness.metadata["completeness"].value == round(19 / 24, 6)
    store = LocalStore(lake)
    assert query(
        "select symbol, gap_start, minutes, reason from silver.kline_gaps where date = '2020-02-19'", store=store
    ).rows() == [("BTCUSDT", utc(2020, 2, 19, 12), 300, REASON_NO_DATA)]


def test_geo_block_fails_the_run_clearly_and_writes_nothing(
    tmp_path: Path, mirror: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    rewrite_zip_csv(mirror / SPOT.daily_klines_path("1m", date(2020, 1, 1)), remove_minutes(utc(2020, 1, 1, 5), utc(2020, 1, 1, 6)))
    lake = tmp_path / "lake"
    rest_server.fail("/api/v3/klines", 451, times=5)
    with ArchiveServer(mirror) as archive:
        res = resources(lake, archive.base_url, "spot:BTCUSDT", rest_url=rest_server.base_url)
        assert run_klines(res, "2020-01-01", "2020-01-01", instance).success
        result = run_gapfill(res, "2020-01-01", None, instance, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert "REST gap-fill refused" in text and "HTTP 451" in text and "geo-block" in text
    assert not (lake / FILLED).exists() and not (lake / GAPS).exists()
    assert len(rest_server.kline_requests()) == 1


def test_rest_switched_off_reports_the_holes_and_calls_nothing(
    tmp_path: Path, mirror: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    rewrite_zip_csv(mirror / CM.daily_klines_path("1m", date(2022, 10, 25)), remove_minutes(utc(2022, 10, 25, 0), utc(2022, 10, 25, 0, 3)))
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as archive:
        res = resources(lake, archive.base_url, CM.key, rest_url=rest_server.base_url, rest_enabled=False)
        assert run_klines(res, "2022-10-25", "2022-10-25", instance).success
        result = run_gapfill(res, "2022-10-25", None, instance)
    assert result.success
    assert table(lake, GAPS, "2022-10-25").select("gap_start", "bars", "reason").rows() == [
        (utc(2022, 10, 25), 3, REASON_DISABLED)
    ]
    assert table(lake, FILLED, "2022-10-25").height == 1437
    assert rest_server.requests == []


def test_forming_candle_is_never_stored_and_today_is_rest_only(
    tmp_path: Path, mirror: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    zip_path = mirror / SPOT.daily_klines_path("1m", date(2020, 1, 3))
    zip_path.unlink()
    Path(str(zip_path) + ".CHECKSUM").unlink()
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as archive:
        res = resources(lake, archive.base_url, "spot:BTCUSDT", rest_url=rest_server.base_url)
        assert run_klines(res, "2020-01-03", "2020-01-03", instance).success
        # "now" is 2020-01-03 12:00:30: the 12:00 candle is still forming
        result = run_gapfill(res, "2020-01-03", None, instance, run_config=gapfill_config(as_of="2020-01-03T12:00:30Z"))
    assert result.success
    filled = table(lake, FILLED, "2020-01-03")
    assert filled.height == 720 and filled["open_time"].max() == utc(2020, 1, 3, 11, 59)
    assert filled.drop("source").equals(real_day(SPOT, date(2020, 1, 3)).head(720).drop("source"))
    assert table(lake, GAPS, "2020-01-03").height == 0  # the afternoon is not missing, it has not happened
    assert check_outcomes(result)["completeness"] is True

    # the real "today": a partition silver/klines does not have yet, filled from REST alone
    today = datetime.now(UTC).date().isoformat()
    rest_server.clear_requests()
    result = run_gapfill(res, today, None, instance)
    assert result.success
    cutoff = datetime.fromisoformat(result.asset_materializations_for_node("klines_filled")[0].metadata["closed_until"].value)
    assert cutoff <= closed_until(datetime.now(UTC), timedelta(minutes=1))
    gaps = table(lake, GAPS, today)
    if cutoff > datetime.fromisoformat(today).replace(tzinfo=UTC):  # not in the first minute of the day
        assert gaps.select("gap_start", "gap_end", "reason").rows() == [
            (datetime.fromisoformat(today).replace(tzinfo=UTC), cutoff, REASON_NO_DATA)
        ]  # the sample has no candles for today: reported, not invented
        assert rest_server.kline_requests()[0].params["symbol"] == "BTCUSDT"
    assert table(lake, FILLED, today).height == 0


def test_resource_reads_its_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse_assets.defs.resources import default_resources

    monkeypatch.setenv("LAKEHOUSE_REST_URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("LAKEHOUSE_REST_URL_SPOT", "https://data-api.binance.vision")
    monkeypatch.setenv("LAKEHOUSE_REST_EXCHANGE_UM", "binanceus")
    monkeypatch.setenv("LAKEHOUSE_REST_FILL", "off")
    monkeypatch.setenv("LAKEHOUSE_REST_PAGE_LIMIT", "500")
    resource = default_resources()["binance_rest"]
    assert isinstance(resource, BinanceRestResource)
    rest = resource.process_config_and_initialize()  # resolves the EnvVars as a run would
    assert rest.enabled is False
    settings = rest.settings()
    assert dict(settings.base_urls) == {
        "spot": "https://data-api.binance.vision", "um": "http://127.0.0.1:8080", "cm": "http://127.0.0.1:8080"
    }
    assert dict(settings.exchanges) == {"spot": "binance", "um": "binanceus", "cm": "binancecoinm"}
    assert settings.page_limit == 500
    assert set(MARKETS) == set(settings.exchanges)
