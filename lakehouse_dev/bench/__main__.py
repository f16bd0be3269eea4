"""``make bench``: throughput, size and memory of bronze -> silver, measured against the Polars parse floor.

Scale comes from a synthetic archive in the exact Binance format (real sha256 CHECKSUMs) served
from a local ``file://`` mirror; correctness is the tests' job, on real files. Each scenario runs
in its own process so its peak RSS is its own. Results print as a table and land in
``.bench/results.json``; BENCHMARKS.md records a run with the machine and method.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path

from lakehouse_dev import REPO
from lakehouse_dev.bench.common import BENCH_DIR, fresh_bench_dir, local_instance, peak_rss_mb, run_in_chunks

START = date(2023, 1, 1)


def _days(n: int) -> list[date]:
    return [START + timedelta(days=i) for i in range(n)]


def floor(mirror: Path) -> dict:
    """Bare Polars: unzip + read_csv of one daily 1m file, the lower bound for any parser."""
    import polars as pl

    files = sorted(mirror.rglob("*.zip"))[:50]
    blobs = [f.read_bytes() for f in files]
    timings = []
    for _ in range(3):
        for blob in blobs:
            began = time.perf_counter()
            with zipfile.ZipFile(io.BytesIO(blob)) as zf:
                csv = zf.read(zf.namelist()[0])
            pl.read_csv(io.BytesIO(csv), has_header=False)
            timings.append(time.perf_counter() - began)
    return {"floor_ms_per_file": statistics.median(timings) * 1000}


def run_pipeline(mirror: Path, lake: Path, symbols: str, first: date, last: date, runs: int = 1) -> dict:
    """Through Dagster, in process, on a sqlite instance from the repo's dagster.yaml, as range runs of a backfill."""
    os.environ.update(LAKEHOUSE_ARCHIVE_URL=mirror.resolve().as_uri(), LAKEHOUSE_STORAGE=str(lake), LAKEHOUSE_SYMBOLS=symbols)
    os.environ["LAKEHOUSE_START_DATE"] = START.isoformat()
    from lakehouse_assets.definitions import defs

    rss_before = peak_rss_mb()
    with local_instance() as instance:
        began = time.perf_counter()
        run_in_chunks(defs.resolve_job_def("klines_job"), instance, first, last, runs)
        elapsed = time.perf_counter() - began
    return {"seconds": elapsed, "peak_rss_mb": peak_rss_mb(), "rss_after_import_mb": rss_before}


def run_core(mirror: Path, lake: Path, symbols: str, first: date, last: date) -> dict:
    """The same work without Dagster: list, plan, download+verify, parse, validate, completeness, write."""
    from lakehouse_assets.archive.bulk import ingest_klines
    from lakehouse_assets.archive.client import ArchiveClient
    from lakehouse_assets.archive.listing import ArchiveListing
    from lakehouse_assets.instruments import parse_universe
    from lakehouse_assets.klines.build import build_klines
    from lakehouse_assets.klines.completeness import completeness_report
    from lakehouse_assets.klines.quality import validate_silver_klines
    from lakehouse_assets.lake.layout import write_partitions
    from lakehouse_assets.lake.store import LocalStore

    store = LocalStore(lake)
    instruments = parse_universe(symbols)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    keys = [d.isoformat() for d in days]
    timings: dict[str, float] = {}
    began = time.perf_counter()
    with ArchiveClient(mirror.resolve().as_uri()) as client, ArchiveListing(mirror.resolve().as_uri()) as listing:
        manifest, _ = ingest_klines(client, listing, store, [(i, d) for d in days for i in instruments],
                                    today=date.today())  # fmt: skip
    write_partitions(store, "bronze/klines_archive", manifest, days=keys, partition_column="date")
    timings["bronze"] = time.perf_counter() - began
    t = time.perf_counter()
    frame, _ = build_klines(manifest, store, instruments)
    timings["parse"] = time.perf_counter() - t
    t = time.perf_counter()
    validate_silver_klines(frame)
    timings["validate"] = time.perf_counter() - t
    t = time.perf_counter()
    completeness_report(frame, days=days, instruments=instruments)
    timings["completeness"] = time.perf_counter() - t
    t = time.perf_counter()
    write_partitions(store, "silver/klines", frame, days=keys, partition_column="open_time")
    timings["write"] = time.perf_counter() - t
    return {"seconds": time.perf_counter() - began, "peak_rss_mb": peak_rss_mb(), **{f"{k}_s": v for k, v in timings.items()}}


def resample_query(lake: Path, symbol: str) -> dict:
    from lakehouse_assets.lake.sql import connect
    from lakehouse_assets.lake.store import LocalStore

    con = connect(LocalStore(lake))
    sql = f"""
        select time_bucket(interval 1 hour, open_time) as hour,
               arg_min(open, open_time) as open, max(high) as high, min(low) as low, arg_max(close, open_time) as close,
               sum(volume) as volume, sum(trade_count) as trades, count(*) as n_minutes
        from silver.klines where symbol = '{symbol}' group by hour order by hour
    """
    con.sql(sql).fetchall()  # warm the OS cache and DuckDB's metadata
    timings = []
    rows = 0
    for _ in range(5):
        began = time.perf_counter()
        rows = len(con.sql(sql).fetchall())
        timings.append(time.perf_counter() - began)
    return {"resample_1h_seconds": min(timings), "hours": rows}


def _sizes(lake: Path) -> dict:
    zips = sum(p.stat().st_size for p in (lake / "bronze/binance").rglob("*.zip"))
    silver = sum(p.stat().st_size for p in (lake / "silver/klines").rglob("*.parquet"))
    return {"bronze_zip_bytes": zips, "silver_parquet_bytes": silver, "silver_to_bronze": silver / zips}


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "lakehouse_dev.bench", *args], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-3000:] + out.stderr[-3000:])
        raise SystemExit(f"bench step {args} failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step", choices=["floor", "run", "core", "resample", "gold", "gold_run"], help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--mirror", type=Path, default=BENCH_DIR / "mirror")
    parser.add_argument("--lake", type=Path)
    parser.add_argument("--symbols", default="spot:BENCH1USDT")
    parser.add_argument("--first")
    parser.add_argument("--last")
    args = parser.parse_args(argv)

    if args.step == "floor":
        print(json.dumps(floor(args.mirror)))
        return 0
    if args.step in ("run", "core"):
        first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
        if args.step == "run":
            out = run_pipeline(args.mirror, args.lake, args.symbols, first, last, args.runs)
        else:
            out = run_core(args.mirror, args.lake, args.symbols, first, last)
        print(json.dumps(out))
        return 0
    if args.step == "gold":  # resample + features of N synthetic symbol-years, in memory (bench/gold.py)
        from lakehouse_dev.bench.gold import core as gold_core

        print(json.dumps(gold_core(len(args.symbols.split(",")))))
        return 0
    if args.step == "gold_run":  # gold_job through Dagster over a silver lake, as monthly runs
        from lakehouse_dev.bench.gold import pipeline as gold_pipeline

        print(json.dumps(gold_pipeline(args.lake, args.symbols, date.fromisoformat(args.first),
                                       date.fromisoformat(args.last), args.runs)))
        return 0
    if args.step == "resample":
        print(json.dumps(resample_query(args.lake, args.symbols.split(":")[1])))
        return 0

    from lakehouse_assets.instruments import parse_universe
    from lakehouse_dev.fixtures.synthetic_archive import write_synthetic_mirror

    fresh_bench_dir()  # keeps the cached universe mirrors
    year = _days(365)
    one = "spot:BENCH1USDT"
    twelve = ",".join(f"spot:BENCH{i}USDT" for i in range(1, 13))
    began = time.perf_counter()
    write_synthetic_mirror(args.mirror, parse_universe(twelve), year[:31], seed=1)
    write_synthetic_mirror(args.mirror, parse_universe(one), year, seed=1)
    print(f"synthetic mirror written in {time.perf_counter() - began:.1f}s")

    results: dict[str, dict] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}}
    results["floor"] = _child(["--step", "floor", "--mirror", str(args.mirror)])
    fl = results["floor"]["floor_ms_per_file"] / 1000

    # (name, step, symbols, first, last, symbol-days, lake, runs)
    scenarios = [
        ("12 symbols x 31 days, 1 run (Dagster)", "run", twelve, year[0], year[30], 372, "month12", 1),
        ("12 symbols x 31 days, rerun, all stored", "run", twelve, year[0], year[30], 372, "month12", 1),
        ("12 symbols x 31 days, no Dagster", "core", twelve, year[0], year[30], 372, "core12", 1),
        ("1 symbol x 365 days, 12 runs (Dagster)", "run", one, year[0], year[-1], 365, "year", 12),
        ("1 symbol x 365 days, 1 run (Dagster)", "run", one, year[0], year[-1], 365, "year1", 1),
        ("1 symbol x 365 days, no Dagster", "core", one, year[0], year[-1], 365, "core1", 1),
        ("1 symbol x 7 days, 1 run (Dagster)", "run", one, year[0], year[6], 7, "week", 1),
        ("1 symbol x 31 days, 1 run (Dagster)", "run", one, year[0], year[30], 31, "month1", 1),
    ]
    for name, step, symbols, first, last, symbol_days, lake_name, runs in scenarios:
        lake = BENCH_DIR / f"lake-{lake_name}"
        res = _child(["--step", step, "--mirror", str(args.mirror), "--lake", str(lake), "--symbols", symbols,
                      "--first", first.isoformat(), "--last", last.isoformat(), "--runs", str(runs)])
        res.update(symbol_days=symbol_days, ms_per_symbol_day=res["seconds"] / symbol_days * 1000,
                   ratio_to_floor=res["seconds"] / symbol_days / fl)
        results[name] = res
    results["sizes (1 symbol-year)"] = _sizes(BENCH_DIR / "lake-year")
    results["duckdb 1m->1h, 1 symbol-year"] = _child(["--step", "resample", "--lake", str(BENCH_DIR / "lake-year"), "--symbols", one])
    ten = ",".join(f"spot:BENCH{i}USDT" for i in range(1, 11))
    results["gold: resample + features, 1 symbol-year"] = _child(["--step", "gold", "--symbols", one])
    results["gold: resample + features, 10 symbol-years"] = _child(["--step", "gold", "--symbols", ten])
    shutil.copytree(BENCH_DIR / "lake-year", BENCH_DIR / "lake-gold")
    results["gold_job, 1 symbol x 365 days, 12 runs (Dagster)"] = _child(
        ["--step", "gold_run", "--lake", str(BENCH_DIR / "lake-gold"), "--symbols", one,
         "--first", year[0].isoformat(), "--last", year[-1].isoformat(), "--runs", "12"])
    from lakehouse_dev.bench import universe  # 100 symbols x 365 days over HTTP, 400 x 31 under the memory budget

    results["universe"] = universe.scenarios()
    from lakehouse_dev.bench import launched  # the backfill as Dagster launches it: run launcher, run worker, executor

    results["launched"] = launched.scenarios(args.mirror, BENCH_DIR)

    BENCH_DIR.mkdir(exist_ok=True)
    (BENCH_DIR / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nfloor (bare Polars unzip+read_csv of one daily 1m file): {results['floor']['floor_ms_per_file']:.2f} ms")
    print(f"{'scenario':45} {'seconds':>8} {'ms/sym-day':>11} {'x floor':>8} {'peak RSS MB':>12}")
    for name, *_ in scenarios:  # noqa: B007
        r = results[name]
        print(f"{name:45} {r['seconds']:8.2f} {r['ms_per_symbol_day']:11.1f} {r['ratio_to_floor']:8.1f} {r['peak_rss_mb']:12.0f}")
    s = results["sizes (1 symbol-year)"]
    print(f"\nsilver Parquet {s['silver_parquet_bytes']:,} B vs bronze zips {s['bronze_zip_bytes']:,} B (ratio {s['silver_to_bronze']:.2f})")
    q = results["duckdb 1m->1h, 1 symbol-year"]
    print(f"DuckDB resample 1 symbol-year 1m -> 1h: {q['resample_1h_seconds'] * 1000:.0f} ms ({q['hours']} hourly bars)")
    print(f"\n{'gold (no Dagster)':28} {'resample s':>10} {'feat 1m s':>10} {'feat 1h+1d':>10} {'total s':>8} "
          f"{'TA-Lib s':>9} {'x TA-Lib':>9} {'peak RSS MB':>12}")
    for name in ("gold: resample + features, 1 symbol-year", "gold: resample + features, 10 symbol-years"):
        g = results[name]
        print(f"{g['symbols']:>3} symbol-year(s) of 1m       {g['resample_s']:10.2f} {g['features_1m_s']:10.2f} "
              f"{g['features_1h_1d_s']:10.2f} {g['seconds']:8.2f} {g['talib_s']:9.3f} {g['ratio_to_talib']:9.0f} {g['peak_rss_mb']:12.0f}")
    g = results["gold_job, 1 symbol x 365 days, 12 runs (Dagster)"]
    print(f"gold_job through Dagster, 1 symbol x 365 days in 12 runs: {g['seconds']:.1f} s, peak RSS {g['peak_rss_mb']:.0f} MB "
          f"(after klines_filled_job over the same runs: {g['klines_filled_seconds']:.1f} s)")
    print(universe.report(results["universe"]))
    print(launched.report(results["launched"], results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
