"""A re-run never deletes good data because of a bad moment upstream or a listing that forgets a file, and
never stores what is not a zip.

Real files from the bundled sample, served by the local archive and REST stand-ins on 127.0.0.1,
run through the project's bronze, silver and gap-fill assets on a temporary Dagster instance.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import polars as pl

from lakehouse_assets_tests.harness import (
    FILLED,
    GAPS,
    failure_text,
    gapfill_config,
    resources,
    run_gapfill,
    run_klines,
    table,
)
from lakehouse_dev.fakes.archive_server import ArchiveServer

ZIP_0102 = "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-02.zip"


def test_a_404_an_outage_or_a_forgetful_listing_on_a_rerun_keeps_the_stored_verified_day(tmp_path, mirror, rest_server):
    """Re-downloads follow the listing: a stored file is asked for again only when its listing entry changes.
    Then the CDN may lose it (404) or fail (503); later the listing may forget it: the stored copy stays in use."""
    lake = tmp_path / "lake"
    zip_path = mirror / ZIP_0102
    with ArchiveServer(mirror) as server, dg.instance_for_test() as instance:
        res = resources(lake, server.base_url, "spot:BTCUSDT", rest_url=rest_server.base_url)
        assert run_klines(res, "2020-01-01", "2020-01-02", instance).success
        assert run_gapfill(res, "2020-01-01", "2020-01-02", instance).success
        silver_before = table(lake, "silver/klines", "2020-01-02")
        filled_before = table(lake, FILLED, "2020-01-02")
        assert silver_before.height == 1440 and filled_before.height == 1440

        # The listing shows a new Last-Modified for the file (as after a re-upload), but the CDN has lost it
        # (zip and CHECKSUM answer 404), and the REST API is down as well.
        modified = zip_path.stat().st_mtime + 3600
        os.utime(zip_path, (modified, modified))
        server.inject("BTCUSDT-1m-2020-01-02.zip", status=404, times=1000)
        rest_server.fail("klines", 500, times=1000)
        server.clear_requests()
        assert run_klines(res, "2020-01-01", "2020-01-02", instance).success
        # only the changed file is asked for (the CHECKSUM, then the zip: both 404); the unchanged day not at all
        assert server.count("GET", "BTCUSDT-1m-2020-01-02.zip") == 2 and server.count("GET", "2020-01-01") == 0
        assert run_gapfill(res, "2020-01-01", "2020-01-02", instance).success
        manifest = table(lake, "bronze/klines_archive", "2020-01-02").row(0, named=True)
        assert manifest["checksum_status"] == "verified" and manifest["upstream_status"] == "not_found"
        assert manifest["lake_path"] == f"bronze/binance/{ZIP_0102}" and manifest["downloaded"] is False
        assert table(lake, "silver/klines", "2020-01-02").equals(silver_before)
        assert table(lake, FILLED, "2020-01-02").equals(filled_before)

        # An outage longer than the client's retries (503 on every request) keeps it as well.
        server.clear_faults()
        server.inject("BTCUSDT-1m-2020-01-02.zip", status=503, times=1000)
        assert run_klines(res, "2020-01-01", "2020-01-02", instance).success
        manifest = table(lake, "bronze/klines_archive", "2020-01-02").row(0, named=True)
        assert (manifest["checksum_status"], manifest["upstream_status"]) == ("verified", "fetch_failed")
        assert table(lake, "silver/klines", "2020-01-02").equals(silver_before)

        # The listing forgets the file (zip and CHECKSUM): it is never asked for, and the stored copy stays in use.
        for name in (zip_path.name, zip_path.name + ".CHECKSUM"):
            (zip_path.parent / name).rename(tmp_path / name)
        server.clear_requests()
        assert run_klines(res, "2020-01-01", "2020-01-02", instance).success
        assert server.count("GET", "BTCUSDT-1m-2020-01-02") == 0
        manifest = table(lake, "bronze/klines_archive", "2020-01-02").row(0, named=True)
        assert (manifest["checksum_status"], manifest["upstream_status"]) == ("verified", "not_listed")
        assert manifest["lake_path"] == f"bronze/binance/{ZIP_0102}"
        assert (lake / "bronze/binance" / ZIP_0102).read_bytes() == (tmp_path / zip_path.name).read_bytes()
        assert table(lake, "silver/klines", "2020-01-02").equals(silver_before)
    # The untouched day was fetched and verified normally throughout.
    assert table(lake, "bronze/klines_archive", "2020-01-01")["upstream_status"].to_list() == ["ok"]


def test_rest_filled_bars_survive_a_rerun_while_rest_is_down_or_switched_off(tmp_path, archive_server, rest_server):
    """2020-01-03 never reaches the archive (404 throughout): the first run fills it from REST.
    A re-run while REST fails, and one with REST disabled, keep those bars and report no gap."""
    lake = tmp_path / "lake"
    res = resources(lake, archive_server.base_url, "spot:BTCUSDT", rest_url=rest_server.base_url)
    archive_server.inject("BTCUSDT-1m-2020-01-03.zip", status=404, times=1000)
    day = "2020-01-03"
    with dg.instance_for_test() as instance:
        assert run_klines(res, day, day, instance).success
        assert run_gapfill(res, day, None, instance).success
        filled = table(lake, FILLED, day)
        assert filled.height == 1440 and filled["source"].unique().to_list() == ["rest"]
        assert table(lake, GAPS, day).height == 0

        rest_server.fail("klines", 500, times=1000)
        result = run_gapfill(res, day, None, instance)
        assert result.success
        assert table(lake, FILLED, day).equals(filled)
        assert table(lake, GAPS, day).height == 0
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        assert meta["rows_kept_from_lake"].value == 1440

        rest_server.clear_faults()
        assert run_gapfill(res, day, None, instance, run_config=gapfill_config(rest_fill=False)).success
        assert table(lake, FILLED, day).equals(filled)
        assert table(lake, GAPS, day).height == 0


def test_bars_the_exchange_says_it_lacks_are_not_kept(tmp_path, archive_server, rest_server):
    """Keeping is for silence, not for answers: when REST answers that 10:00-10:59 does not exist
    (and the archive never had the day), the re-run drops those stored bars and lists the gap."""
    from datetime import UTC, datetime

    lake = tmp_path / "lake"
    res = resources(lake, archive_server.base_url, "spot:BTCUSDT", rest_url=rest_server.base_url)
    archive_server.inject("BTCUSDT-1m-2020-01-03.zip", status=404, times=1000)
    day = "2020-01-03"
    with dg.instance_for_test() as instance:
        assert run_klines(res, day, day, instance).success
        assert run_gapfill(res, day, None, instance).success
        rest_server.drop("spot", "BTCUSDT", datetime(2020, 1, 3, 10, tzinfo=UTC), datetime(2020, 1, 3, 11, tzinfo=UTC))
        assert run_gapfill(res, day, None, instance).success
    assert table(lake, FILLED, day).height == 1440 - 60
    gaps = table(lake, GAPS, day)
    assert gaps.select("minutes", "reason").rows() == [(60, "exchange returned no data")]


def test_an_html_page_served_as_the_zip_is_refused_and_never_stored(tmp_path, mirror):
    page = b"<!DOCTYPE html><html><body>Service temporarily unavailable</body></html>\n"
    (mirror / ZIP_0102).write_bytes(page)
    Path(str(mirror / ZIP_0102) + ".CHECKSUM").unlink()  # no CHECKSUM: only the body itself can give it away
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as server, dg.instance_for_test() as instance:
        result = run_klines(resources(str(lake), server.base_url, "spot:BTCUSDT"), "2020-01-02", "2020-01-02",
                           instance, raise_on_error=False)  # fmt: skip
    assert not result.success
    text = failure_text(result)
    assert "BTCUSDT-1m-2020-01-02.zip (spot:BTCUSDT, 2020-01-02): the archive sent an HTML page" in text
    assert not (lake / "bronze/binance" / ZIP_0102).exists()
    assert not (lake / "silver/klines/date=2020-01-02").exists()


def test_a_zip_whose_checksum_sibling_was_lost_in_a_crash_gets_it_back(tmp_path, archive_server, sample_mirror):
    """A real bronze writer is killed (SIGKILL) after storing the zip, before its CHECKSUM: the next run
    verifies the stored zip against the published CHECKSUM and writes the sibling without re-downloading."""
    lake = tmp_path / "lake"
    child = textwrap.dedent(f"""
        import os, signal
        from datetime import date
        from pathlib import Path
        from lakehouse_assets.archive.client import ArchiveClient
        from lakehouse_assets.archive.download import ingest_file
        from lakehouse_assets.instruments import Instrument
        from lakehouse_assets.lake.store import LocalStore

        class CrashBeforeChecksum(LocalStore):
            def put_bytes(self, key, data):
                if key.endswith(".CHECKSUM"):
                    os.kill(os.getpid(), signal.SIGKILL)
                super().put_bytes(key, data)

        with ArchiveClient({archive_server.base_url!r}) as client:
            ingest_file(client, CrashBeforeChecksum(Path({str(lake)!r})), Instrument("spot", "BTCUSDT"), date(2020, 1, 2))
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    stored = lake / "bronze/binance" / ZIP_0102
    sibling = Path(str(stored) + ".CHECKSUM")
    assert stored.read_bytes() == (sample_mirror / ZIP_0102).read_bytes() and not sibling.exists()

    archive_server.clear_requests()
    with dg.instance_for_test() as instance:
        assert run_klines(resources(str(lake), archive_server.base_url, "spot:BTCUSDT"), "2020-01-02", "2020-01-02", instance).success
    assert sibling.read_bytes() == Path(str(sample_mirror / ZIP_0102) + ".CHECKSUM").read_bytes()
    assert archive_server.count("GET", "BTCUSDT-1m-2020-01-02.zip.CHECKSUM") == 1
    assert archive_server.count("GET", "BTCUSDT-1m-2020-01-02.zip") == 1  # the CHECKSUM only: the zip was reused
    manifest = pl.read_parquet(lake / "bronze/klines_archive/date=2020-01-02/spot-BTCUSDT.parquet")
    assert manifest.select("checksum_status", "downloaded", "upstream_status").row(0) == ("verified", False, "ok")
