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

Both run the project's own ``klines_job`` and ``klines_filled_job``. The showcase runs them on a
throw-away Dagster instance, so its damaged days never show up in the UI's history of the demo lake.

The stand-in is ``lakehouse_dev/fakes/rest_server.py`` (the tests use it too) serving the bundled
real sample, on 127.0.0.1; nothing leaves the machine.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from lakehouse_dev import SAMPLE_DATA
from lakehouse_dev.demo import runs
from lakehouse_dev.demo.sample import DEMO_DIR, KLINES

SHOWCASE_DIR = DEMO_DIR / "gapfill"
SHOWCASE_LAKE = SHOWCASE_DIR / "lake"
SHOWCASE_DAYS = ("2020-01-01", "2020-01-03")
SHOWCASE_SYMBOLS = "spot:BTCUSDT"
REMOVED = (datetime(2020, 1, 2, 10, tzinfo=UTC), datetime(2020, 1, 2, 12, tzinfo=UTC))
NOT_ON_EXCHANGE = (datetime(2020, 1, 2, 11, tzinfo=UTC), datetime(2020, 1, 2, 11, 5, tzinfo=UTC))


def start_rest_standin() -> Any:
    """Start the local Binance-compatible REST API over the bundled sample; returns the running server."""
    from lakehouse_dev.fakes.rest_server import BinanceRestServer

    return BinanceRestServer(SAMPLE_DATA).start()


def _sources(result: Any) -> str:
    meta = result.asset_materializations_for_node("klines_filled")[0].metadata
    return (
        f"{meta['archive_rows'].value} archive rows, {meta['rest_rows'].value} REST rows, "
        f"{meta['rest_requests'].value} REST requests, {meta['remaining_gaps'].value} gaps"
    )


def fill_sample_ranges(defs: Any, instance: Any) -> bool:
    """Run klines_filled_job over each sample range (its own universe); print what came from where."""
    job = defs.resolve_job_def("klines_filled_job")
    ok = all([runs.run(job, instance, r.start, r.end, symbols=r.symbols, details=_sources).success for r in KLINES])
    print(
        "(Every sample file is complete, so no bar came from REST and no gap remains. The showcase below damages\n"
        " a copy of the archive to show the gap-fill at work.)"
    )
    return ok


def showcase(defs: Any, mirror: Path, server: Any) -> bool:
    """Damaged copy of the mirror -> bronze -> silver -> klines_filled, in a lake and a Dagster instance of its own."""
    import dagster as dg

    from lakehouse_assets import query
    from lakehouse_assets.instruments import Instrument
    from lakehouse_assets.klines.parse import parse_klines_zip

    spot = Instrument("spot", "BTCUSDT")
    if SHOWCASE_DIR.exists():
        shutil.rmtree(SHOWCASE_DIR)
    damaged = SHOWCASE_DIR / "mirror"
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
        f"\nGap-fill showcase (lake: {SHOWCASE_LAKE.relative_to(DEMO_DIR.parent)}, throw-away Dagster instance): "
        "a damaged copy of the mirror —\n2020-01-02 without 10:00–11:59, 2020-01-03 deleted (404); the REST "
        "stand-in has the real candles except 11:00–11:04 (as if in maintenance)."
    )

    instance = dg.DagsterInstance.ephemeral()  # the damaged days are not the demo lake's history
    start, end = SHOWCASE_DAYS
    lake = {"LAKEHOUSE_STORAGE": str(SHOWCASE_LAKE), "LAKEHOUSE_ARCHIVE_URL": damaged.resolve().as_uri()}
    with runs.settings(**lake):
        for name in ("klines_job", "klines_filled_job"):
            details = _sources if name == "klines_filled_job" else None
            if not runs.run(defs.resolve_job_def(name), instance, start, end, symbols=SHOWCASE_SYMBOLS,
                            details=details).success:
                return False

        with pl.Config(tbl_rows=20, tbl_cols=-1, tbl_width_chars=160):
            print("\nsilver.klines_filled — rows by source per day:")
            print(query(
                "select date, count(*) as bars, count(*) filter (where source = 'archive') as archive, "
                "count(*) filter (where source = 'rest') as rest from silver.klines_filled group by all order by all"
            ))
            print("silver.kline_gaps — what is still missing, and why:")
            print(query("select market, symbol, gap_start, gap_end, minutes, reason from silver.kline_gaps"))
        filled = query("select * exclude (date) from silver.klines_filled where date = '2020-01-02'")
        filled3 = query("select * exclude (date) from silver.klines_filled where date = '2020-01-03'")

    expected = parse_klines_zip(original_day2, instrument=spot, interval="1m", day=date(2020, 1, 2),
                                file_name=day2.name).frame
    expected = expected.filter(
        (pl.col("open_time") < NOT_ON_EXCHANGE[0]) | (pl.col("open_time") >= NOT_ON_EXCHANGE[1])
    )
    same_day2 = filled.drop("source").equals(expected.drop("source"))
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
    from lakehouse_assets.archive.zip_limits import DEFAULT_ZIP_LIMITS, read_member
    from lakehouse_dev.fixtures.sample_mirror import checksum_text

    lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    with zipfile.ZipFile(zip_path) as archive:
        (info,) = archive.infolist()
        member = info.filename
        lines = read_member(archive, info, DEFAULT_ZIP_LIMITS).splitlines(keepends=True)
    kept = b"".join(line for line in lines if not lo <= int(line.split(b",")[0]) < hi)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, kept)
    zip_path.write_bytes(buffer.getvalue())
    Path(str(zip_path) + ".CHECKSUM").write_bytes(checksum_text(zip_path.name, buffer.getvalue()))
