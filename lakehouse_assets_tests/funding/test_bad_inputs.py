"""Bad funding inputs, each built in tmp_path from the real 2026-04 month: a broken checksum, a corrupt
zip, a settlement off the grid, a changed interval, and REST refusing or throttling us.

Every failure names the file / instrument / day, nothing unverified or half-checked becomes visible,
and a fixed input reruns cleanly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from lakehouse_assets_tests.harness import check_outcomes, failure_text, read_table, resources, run_funding
from lakehouse_assets_tests.samples import (
    FUNDING_DIR,
    FUNDING_MONTH_ZIP,
    MONTH_ZIP,
    mirror_without_funding,
    rewrite_zip_csv,
    utc,
    write_checksum,
)
from lakehouse_dev.fakes.funding_routes import add_funding_routes


def month_zip(mirror: Path) -> Path:
    return mirror / FUNDING_DIR / MONTH_ZIP


def test_a_month_whose_sha256_differs_from_its_checksum_is_refused_then_accepted_on_request(tmp_path, mirror, instance):
    # The same CSV re-zipped: a valid zip, but not the bytes Binance's CHECKSUM describes.
    rewrite_zip_csv(month_zip(mirror), lambda text: text, update_checksum=False)
    lake = tmp_path / "lake"
    res = resources(str(lake), mirror.as_uri(), "um:BTCUSDT")
    result = run_funding(res, "2026-04-01", "2026-04-02", instance, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert "BTCUSDT-fundingRate-2026-04.zip (um:BTCUSDT, 2026-04)" in text
    assert "does not match the published CHECKSUM" in text and "accept_checksum_mismatch" in text
    assert not (lake / "bronze/binance").exists()  # nothing unverified is stored
    assert not (lake / "bronze/funding_archive").exists() and not (lake / "silver").exists()

    accept = {"ops": {"bronze__funding_archive": {"config": {"accept_checksum_mismatch": True}}}}
    assert run_funding(res, "2026-04-01", "2026-04-02", instance, run_config=accept).success
    manifest = read_table(lake, "bronze/funding_archive")
    assert set(manifest["checksum_status"]) == {"mismatch_accepted"}
    assert read_table(lake, "silver/funding_rates")["funding_rate"].to_list()[:3] == [-0.00003449, -0.00000461, 0.00000577]


def test_a_corrupt_zip_with_a_matching_checksum_fails_in_silver_naming_the_file(tmp_path, mirror, instance):
    path = month_zip(mirror)
    path.write_bytes(path.read_bytes()[:-40])  # truncated, and a CHECKSUM computed over the truncated bytes
    write_checksum(path)
    lake = tmp_path / "lake"
    res = resources(str(lake), mirror.as_uri(), "um:BTCUSDT")
    result = run_funding(res, "2026-04-05", "2026-04-05", instance, raise_on_error=False)
    assert not result.success
    assert "BTCUSDT-fundingRate-2026-04.zip (um:BTCUSDT): corrupt zip" in failure_text(result)
    assert not (lake / "silver/funding_rates").exists()


def test_a_settlement_off_the_grid_blocks_the_write_and_names_the_day(tmp_path, mirror, instance):
    # The 2026-04-12 00:00 settlement recorded at 00:20:00.004: 20 minutes from any slot.
    rewrite_zip_csv(month_zip(mirror), lambda text: text.replace(b"1775952000000,", b"1775953200004,"))
    lake = tmp_path / "lake"
    res = resources(str(lake), mirror.as_uri(), "um:BTCUSDT")
    result = run_funding(res, "2026-04-11", "2026-04-13", instance, raise_on_error=False)
    assert not result.success
    assert check_outcomes(result)["funding_interval_grid"] is False
    text = failure_text(result)
    assert "silver/funding_rates not written" in text
    assert "funding_interval_grid [calc_time within 60 s of the slot]: 2026-04-12 um:BTCUSDT (1 rows)" in text
    assert not (lake / "silver/funding_rates").exists()  # none of the three days is half-written

    # The fixed file (Binance's own) reruns cleanly.
    (mirror / FUNDING_DIR / MONTH_ZIP).write_bytes(FUNDING_MONTH_ZIP.read_bytes())
    write_checksum(month_zip(mirror))
    assert run_funding(res, "2026-04-11", "2026-04-13", instance).success
    assert read_table(lake, "silver/funding_rates").height == 9


def test_a_changed_interval_is_read_from_the_data_and_missing_slots_are_listed(tmp_path, mirror, instance):
    # The file declares 4 h from 2026-04-21 00:00 on, while its settlements stay 8 h apart.
    def relabel(text: bytes) -> bytes:
        lines = text.split(b"\n")
        out = [lines[0]]
        for line in lines[1:]:
            if line and int(line.split(b",")[0]) >= 1776729600000 - 60_000:
                line = line.replace(b",8,", b",4,")
            out.append(line)
        return b"\n".join(out)

    rewrite_zip_csv(month_zip(mirror), relabel)
    lake = tmp_path / "lake"
    res = resources(str(lake), mirror.as_uri(), "um:BTCUSDT")
    result = run_funding(res, "2026-04-20", "2026-04-22", instance)
    assert result.success  # a changed interval is data, not an error
    silver = read_table(lake, "silver/funding_rates").sort("funding_time")
    assert silver.select("date", "funding_interval_hours").unique().sort("date").rows() == [
        ("2026-04-20", 8), ("2026-04-21", 4), ("2026-04-22", 4),
    ]  # fmt: skip
    outcomes = check_outcomes(result)
    assert outcomes["funding_interval_grid"] is True and outcomes["funding_count_per_day"] is False
    (count,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "funding_count_per_day"]
    table = count.metadata["incomplete_days"].value
    assert "| um | BTCUSDT | 2026-04-20 | 3 | 4 | 1 | 8 | 20:00 |" in table
    assert "| um | BTCUSDT | 2026-04-21 | 3 | 6 | 3 | 4 | 04:00, 12:00, 20:00 |" in table
    assert count.metadata["missing_slots"].value == 7


def test_rest_geo_block_fails_at_once_with_an_explanation(tmp_path, sample_mirror, rest_server, instance):
    add_funding_routes(rest_server)
    rest_server.fail("/fapi/v1/fundingRate", 451, times=10)
    mirror = mirror_without_funding(sample_mirror, tmp_path / "mirror")
    lake = tmp_path / "lake"
    res = resources(str(lake), mirror.as_uri(), "um:BTCUSDT", rest_url=rest_server.base_url)
    result = run_funding(res, "2026-04-01", "2026-04-01", instance, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert "um:BTCUSDT REST funding for 2026-04-01..2026-04-01" in text and "451" in text and "geo-block" in text
    assert len([r for r in rest_server.requests if r.path == "/fapi/v1/fundingRate"]) == 1  # not retried
    assert not (lake / "bronze/funding_archive").exists()


def test_rest_throttling_is_retried_and_the_day_lands(tmp_path, sample_mirror, rest_server, instance):
    routes = add_funding_routes(rest_server)
    rest_server.fail("/fapi/v1/fundingRate", 429, times=1, retry_after=0)
    mirror = mirror_without_funding(sample_mirror, tmp_path / "mirror")
    lake = tmp_path / "lake"
    res = resources(str(lake), mirror.as_uri(), "um:BTCUSDT", rest_url=rest_server.base_url)
    assert run_funding(res, "2026-04-03", "2026-04-03", instance).success
    assert [r.status for r in routes.requests("um")] == [429, 200]
    silver = read_table(lake, "silver/funding_rates")
    assert silver.select("funding_rate", "source").rows() == [(-0.00000831, "rest"), (-0.00000599, "rest"), (0.00000351, "rest")]
    assert silver["funding_time"].to_list() == [utc(2026, 4, 3, h) for h in (0, 8, 16)]
    assert silver.filter(pl.col("funding_time") == utc(2026, 4, 3, 8))["calc_time"][0] == datetime(2026, 4, 3, 8, 0, 0, 8000, tzinfo=UTC)
