"""Bad archive input through the real pipeline: a clear error naming file, day and symbol, and nothing half-written.

Damaged inputs are variants of real files made in a temp copy of the mirror (cut bytes, a cut line,
high and low swapped in one real row); the bundled sample itself is never modified.
"""

from __future__ import annotations

import polars as pl
import pytest

from lakehouse_assets_tests.harness import failure_text, resources, run_klines
from lakehouse_assets_tests.samples import rewrite_zip_csv, write_checksum
from lakehouse_dev.fakes.archive_server import ArchiveServer

ZIP = "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-02.zip"


def silver_files(lake):
    return sorted(p.relative_to(lake).as_posix() for p in (lake / "silver").rglob("*.parquet")) if (lake / "silver").exists() else []


def test_checksum_mismatch_downloads_again_then_fails_naming_the_file(tmp_path, mirror, instance):
    write_checksum(mirror / ZIP, "0" * 64)  # a stale CHECKSUM, as Binance has published
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as server:
        result = run_klines(resources(str(lake), server.base_url, "spot:BTCUSDT"), "2020-01-01", "2020-01-03", instance, raise_on_error=False)
        zip_gets = [p for m, p in server.requests if m == "GET" and p.endswith("2020-01-02.zip")]
    assert not result.success
    text = failure_text(result)
    assert "BTCUSDT-1m-2020-01-02.zip" in text and "spot:BTCUSDT" in text and "2020-01-02" in text
    assert "CHECKSUM" in text
    assert len(zip_gets) == 2  # downloaded once more before giving up
    # the good days are kept (no re-download next time), the bad one is not stored, silver never ran
    assert (lake / "bronze/binance/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip").exists()
    assert not (lake / "bronze/binance" / ZIP).exists()
    assert silver_files(lake) == []


def test_accept_checksum_mismatch_records_it(tmp_path, mirror, instance):
    write_checksum(mirror / ZIP, "0" * 64)
    lake = tmp_path / "lake"
    res = resources(str(lake), mirror.as_uri(), "spot:BTCUSDT")
    config = {"ops": {"bronze__klines_archive": {"config": {"accept_checksum_mismatch": True}}}}
    assert run_klines(res, "2020-01-02", "2020-01-02", instance, run_config=config).success
    manifest = pl.read_parquet(sorted((lake / "bronze/klines_archive").rglob("*.parquet")))
    assert manifest["checksum_status"].to_list() == ["mismatch_accepted"]
    assert manifest["published_sha256"].to_list() == ["0" * 64]


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda raw: raw[: len(raw) // 2], "zip"),  # truncated download of a zip Binance published without CHECKSUM
        (lambda raw: raw[:100] + bytes(b ^ 0xFF for b in raw[100:140]) + raw[140:], "zip"),  # flipped bytes
    ],
    ids=["truncated-zip", "corrupt-zip"],
)
def test_corrupt_or_truncated_zip_fails_in_silver_naming_the_file(tmp_path, mirror, instance, damage, expected):
    path = mirror / ZIP
    path.write_bytes(damage(path.read_bytes()))
    (mirror / (ZIP + ".CHECKSUM")).unlink()  # so bronze cannot catch it: silver must
    lake = tmp_path / "lake"
    result = run_klines(resources(str(lake), mirror.as_uri(), "spot:BTCUSDT"), "2020-01-02", "2020-01-02", instance, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert "BTCUSDT-1m-2020-01-02.zip" in text and "spot:BTCUSDT" in text and "2020-01-02" in text
    assert expected in text.lower()
    assert silver_files(lake) == []


def test_truncated_csv_fails_and_keeps_the_previous_good_partition(tmp_path, mirror, instance):
    lake = tmp_path / "lake"
    res = resources(str(lake), mirror.as_uri(), "spot:BTCUSDT")
    assert run_klines(res, "2020-01-02", "2020-01-02", instance).success
    good = pl.read_parquet(lake / "silver/klines/date=2020-01-02/spot-BTCUSDT.parquet")

    # Binance re-publishes the day, cut off mid-line (as happened with 1s files in 2025)
    rewrite_zip_csv(mirror / ZIP, lambda csv: csv[: len(csv) * 2 // 3])
    result = run_klines(res, "2020-01-02", "2020-01-02", instance, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert "BTCUSDT-1m-2020-01-02.zip" in text and "truncated" in text.lower()
    assert pl.read_parquet(lake / "silver/klines/date=2020-01-02/spot-BTCUSDT.parquet").equals(good)


def test_malformed_row_names_the_line(tmp_path, mirror, instance):
    def break_line(csv: bytes) -> bytes:
        lines = csv.split(b"\n")
        lines[9] = lines[9].replace(b",", b";", 3)
        return b"\n".join(lines)

    rewrite_zip_csv(mirror / ZIP, break_line)
    lake = tmp_path / "lake"
    result = run_klines(resources(str(lake), mirror.as_uri(), "spot:BTCUSDT"), "2020-01-02", "2020-01-02", instance, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert "BTCUSDT-1m-2020-01-02.zip" in text and "line 10" in text
    assert silver_files(lake) == []


def test_ohlc_violation_is_blocked_by_the_check_and_not_written(tmp_path, mirror, instance):
    def swap_high_low(csv: bytes) -> bytes:
        lines = csv.split(b"\n")
        f = lines[720].split(b",")  # 12:00 UTC: high 7148.19, low 7139.03
        f[2], f[3] = f[3], f[2]
        lines[720] = b",".join(f)
        return b"\n".join(lines)

    rewrite_zip_csv(mirror / ZIP, swap_high_low)
    lake = tmp_path / "lake"
    result = run_klines(resources(str(lake), mirror.as_uri(), "spot:BTCUSDT"), "2020-01-01", "2020-01-02", instance, raise_on_error=False)
    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["ohlc_consistency"].passed is False
    assert checks["schema"].passed is True
    by_day = checks["ohlc_consistency"].metadata["failures_by_day"].value
    assert "2020-01-02" in by_day and "2020-01-01" not in by_day
    assert "12:00" in checks["ohlc_consistency"].metadata["sample_failures"].value
    text = failure_text(result)
    assert "ohlc_consistency" in text and "2020-01-02" in text
    assert silver_files(lake) == []  # a blocked range writes nothing


def test_symbol_outside_universe_is_refused(tmp_path, sample_mirror, instance):
    res = resources(str(tmp_path / "lake"), sample_mirror.as_uri(), "spot:BTCUSDT")
    result = run_klines(res, "2020-01-01", "2020-01-01", instance, tags={"lakehouse/symbols": "um:SOLUSDT"}, raise_on_error=False)
    assert not result.success
    assert "um:SOLUSDT not in the configured universe" in failure_text(result)
