"""The gap-fill part of ``make demo``, offline: ccxt talks to a local Binance REST stand-in.

Two things are shown:

1. The sample days in the demo lake go through ``silver/klines_filled``: their archives are
   complete, so no REST request is made and every row says ``source='archive'``.
2. A showcase in its own lake (``.demo/gapfill``), built from a deliberately damaged COPY of the
   mirror: 2020-01-02 loses 10:00-11:59 from its zip and 2020-01-03 is deleted (a 404, as if not
   yet published). The REST stand-in serves the real Binance candles for those minutes, except
   11:00-11:04, which it is told not to have (as during exchange maintenance). The result: the
   holes are filled with ``source='rest'`` rows identical to Binance's own file, and the five
   minutes nobody has are listed in ``silver/kline_gaps`` with their reason.

The stand-in is the test suite's ``lakehouse_dev/fakes/rest_server.py`` serving the bundled
real sample, on 127.0.0.1; nothing leaves the machine.
"""

from __future__ import annotations

import io
import shutil
import sys
import time
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "lakehouse_assets_tests" / "data" / "binance"
SHOWCASE_DAYS = ("2020-01-01", "2020-01-03")
REMOVED = (datetime(2020, 1, 2, 10, tzinfo=UTC), datetime(2020, 1, 2, 12, tzinfo=UTC))
NOT_ON_EXCHANGE = (datetime(2020, 1, 2, 11, tzinfo=UTC), datetime(2020, 1, 2, 11, 5, tzinfo=UTC))


def start_rest_standin() -> Any:
    """Start the local Binance-compatible REST API over the bundled sample; returns the running server."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from lakehouse_dev.fakes.rest_server import BinanceRestServer

    return BinanceRestServer(SAMPLE).start()


def fill_sample_ranges(job: Any, instance: Any, ranges: list[tuple[str, str]]) -> bool:
    """Run klines_filled_job over each sample range; print what came from where."""
    ok = True
    for start, end in ranges:
        began = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )
        if not result.success:
            ok = False
            print(f"klines_filled_job {start}..{end}: FAILED")
            for event in result.all_events:
                if event.is_failure:
                    print(event.message)
            continue
        meta = result.asset_materializations_for_node("klines_filled")[0].metadata
        print(
            f"klines_filled_job {start}..{end}: ok in {time.perf_counter() - began:.1f}s — "
            f"{meta['archive_rows'].value} archive rows, {meta['rest_rows'].value} REST rows, "
            f"{meta['rest_requests'].value} REST requests, {meta['remaining_gaps'].value} gaps"
        )
    print(
        "(Every sample file is complete, so no bar came from REST. The gaps are the instrument-days the sample has\n"
        " no file for at all: missing from the archive AND from the stand-in, so reported, never invented —\n"
        " see silver.kline_gaps. `make dev` after the demo: set LAKEHOUSE_REST_FILL=0 to stay offline.)"
    )
    return ok


def showcase(instance: Any, mirror: Path, workdir: Path, server: Any) -> bool:
    """Damaged copy of the mirror -> bronze -> silver -> klines_filled, in a lake of its own."""
    import dagster as dg

    from lakehouse_assets.defs.klines.bronze import klines_archive
    from lakehouse_assets.defs.klines.gapfill import klines_filled
    from lakehouse_assets.defs.klines.silver import klines
    from lakehouse_assets.instruments import Instrument
    from lakehouse_assets.lake.io_manager import HiveParquetIOManager
    from lakehouse_assets.klines.parse import parse_klines_zip
    from lakehouse_assets.lake.store import LocalStore
    from lakehouse_assets.defs.common.resources import BinanceArchiveResource, BinanceRestResource, LakeResource, UniverseResource
    from lakehouse_assets.lake.sql import query

    spot = Instrument("spot", "BTCUSDT")
    if workdir.exists():
        shutil.rmtree(workdir)
    damaged = workdir / "mirror"
    shutil.copytree(mirror, damaged)
    day2 = damaged / spot.daily_klines_path("1m", date(2020, 1, 2))
    original_day2 = day2.read_bytes()
    _remove_minutes(day2, *REMOVED)
    day3 = damaged / spot.daily_klines_path("1m", date(2020, 1, 3))
    original_day3 = day3.read_bytes()
    day3.unlink()
    Path(str(day3) + ".CHECKSUM").unlink()
    server.drop("spot", "BTCUSDT", *NOT_ON_EXCHANGE)
    server.clear_requests()
    print(
        "\nGap-fill showcase (lake: .demo/gapfill): a damaged copy of the mirror — 2020-01-02 without 10:00–11:59,\n"
        "2020-01-03 deleted (404); the REST stand-in has the real candles except 11:00–11:04 (as if in maintenance)."
    )

    lake = LakeResource(storage=str(workdir / "lake"))
    resources = {
        "lake": lake,
        "io_manager": HiveParquetIOManager(lake=lake),
        "archive": BinanceArchiveResource(base_url=damaged.as_uri()),
        "universe": UniverseResource(symbols=spot.key),
        "binance_rest": BinanceRestResource(base_url=server.base_url),
    }
    archive_job = dg.define_asset_job("klines_job", selection=dg.AssetSelection.assets(klines_archive, klines))
    fill_job = dg.define_asset_job("klines_filled_job", selection=dg.AssetSelection.assets(klines_filled))
    defs = dg.Definitions(assets=[klines_archive, klines, klines_filled], jobs=[archive_job, fill_job], resources=resources)
    tags = {"dagster/asset_partition_range_start": SHOWCASE_DAYS[0], "dagster/asset_partition_range_end": SHOWCASE_DAYS[1]}
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    for name in ("klines_job", "klines_filled_job"):
        result = defs.resolve_job_def(name).execute_in_process(
            instance=instance, tags=tags, run_config=quiet, raise_on_error=False
        )
        if not result.success:
            print(f"{name}: FAILED")
            return False

    store = LocalStore(workdir / "lake")
    with pl.Config(tbl_rows=20, tbl_cols=-1, tbl_width_chars=160):
        print("\nsilver.klines_filled — rows by source per day:")
        print(query(
            "select date, count(*) as bars, count(*) filter (where source = 'archive') as archive, "
            "count(*) filter (where source = 'rest') as rest from silver.klines_filled group by all order by all",
            store=store,
        ))
        print("silver.kline_gaps — what is still missing, and why:")
        print(query("select market, symbol, gap_start, gap_end, minutes, reason from silver.kline_gaps", store=store))

    filled = query("select * exclude (date) from silver.klines_filled where date = '2020-01-02'", store=store)
    expected = parse_klines_zip(original_day2, instrument=spot, interval="1m", day=date(2020, 1, 2),
                                file_name=day2.name).frame
    expected = expected.filter(
        (pl.col("open_time") < NOT_ON_EXCHANGE[0]) | (pl.col("open_time") >= NOT_ON_EXCHANGE[1])
    )
    same_day2 = filled.drop("source").equals(expected.drop("source"))
    filled3 = query("select * exclude (date) from silver.klines_filled where date = '2020-01-03'", store=store)
    expected3 = parse_klines_zip(original_day3, instrument=spot, interval="1m", day=date(2020, 1, 3),
                                 file_name=day3.name).frame
    same_day3 = filled3.drop("source").equals(expected3.drop("source"))
    kline_requests = len(server.kline_requests())
    print(
        f"2020-01-02 equals Binance's file (minus the 5 minutes nobody has), value for value: {same_day2}\n"
        f"2020-01-03 (404 in the archive) equals Binance's file, all 1440 bars from REST: {same_day3}\n"
        f"REST kline requests made: {kline_requests} (ccxt, rate limiter on, 1000 candles per page)"
    )
    server.clear_faults()
    return same_day2 and same_day3


def _remove_minutes(zip_path: Path, start: datetime, end: datetime) -> None:
    """Rewrite a mirror zip without the rows in [start, end) and refresh its (self-computed) CHECKSUM."""
    lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    from lakehouse_assets.archive.zip_limits import DEFAULT_ZIP_LIMITS, read_member

    with zipfile.ZipFile(zip_path) as archive:
        (info,) = archive.infolist()
        member = info.filename
        lines = read_member(archive, info, DEFAULT_ZIP_LIMITS).splitlines(keepends=True)
    kept = b"".join(line for line in lines if not lo <= int(line.split(b",")[0]) < hi)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, kept)
    zip_path.write_bytes(buffer.getvalue())
    from lakehouse_dev.fixtures.sample_mirror import checksum_text

    Path(str(zip_path) + ".CHECKSUM").write_bytes(checksum_text(zip_path.name, buffer.getvalue()))
