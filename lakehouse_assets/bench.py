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
import resource
import statistics
import subprocess
import sys
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path

BENCH_DIR = Path(".bench")
START = date(2023, 1, 1)


def _days(n: int) -> list[date]:
    return [START + timedelta(days=i) for i in range(n)]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def run_pipeline(mirror: Path, lake: Path, symbols: str, first: date, last: date) -> dict:
    os.environ.update(LAKEHOUSE_ARCHIVE_URL=mirror.resolve().as_uri(), LAKEHOUSE_STORAGE=str(lake), LAKEHOUSE_SYMBOLS=symbols)
    os.environ["LAKEHOUSE_START_DATE"] = START.isoformat()
    import dagster as dg

    from lakehouse_assets.definitions import defs

    job = defs.resolve_job_def("klines_job")
    rss_before = _peak_rss_mb()
    with dg.instance_for_test() as instance:
        began = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat(),
            },
        )
        elapsed = time.perf_counter() - began
    assert result.success
    return {"seconds": elapsed, "peak_rss_mb": _peak_rss_mb(), "rss_after_import_mb": rss_before}


def resample_query(lake: Path, symbol: str) -> dict:
    from lakehouse_assets.lake_store import LocalStore
    from lakehouse_assets.sql import connect

    con = connect(LocalStore(lake))
    sql = f"""
        select time_bucket(interval 1 hour, open_time) as hour,
               arg_min(open, open_time) open, max(high) high, min(low) low, arg_max(close, open_time) close,
               sum(volume) volume, sum(trade_count) trades, count(*) minutes
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
    out = subprocess.run([sys.executable, "-m", "lakehouse_assets.bench", *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-3000:] + out.stderr[-3000:])
        raise SystemExit(f"bench step {args} failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step", choices=["floor", "run", "resample"], help=argparse.SUPPRESS)
    parser.add_argument("--mirror", type=Path, default=BENCH_DIR / "mirror")
    parser.add_argument("--lake", type=Path)
    parser.add_argument("--symbols", default="spot:BENCH1USDT")
    parser.add_argument("--first")
    parser.add_argument("--last")
    args = parser.parse_args(argv)

    if args.step == "floor":
        print(json.dumps(floor(args.mirror)))
        return 0
    if args.step == "run":
        print(json.dumps(run_pipeline(args.mirror, args.lake, args.symbols, date.fromisoformat(args.first), date.fromisoformat(args.last))))
        return 0
    if args.step == "resample":
        print(json.dumps(resample_query(args.lake, args.symbols.split(":")[1])))
        return 0

    from lakehouse_assets.instruments import parse_universe
    from lakehouse_assets.synthetic_archive import write_synthetic_mirror

    import shutil

    shutil.rmtree(BENCH_DIR, ignore_errors=True)
    year = _days(365)
    one = "spot:BENCH1USDT"
    ten = ",".join(f"spot:BENCH{i}USDT" for i in range(1, 11))
    began = time.perf_counter()
    write_synthetic_mirror(args.mirror, parse_universe(ten), year[:31], seed=1)
    write_synthetic_mirror(args.mirror, parse_universe(one), year, seed=1)
    print(f"synthetic mirror written in {time.perf_counter() - began:.1f}s")

    results: dict[str, dict] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}}
    results["floor"] = _child(["--step", "floor", "--mirror", str(args.mirror)])
    fl = results["floor"]["floor_ms_per_file"] / 1000

    scenarios = [
        ("1 symbol x 365 days, one run", one, year[0], year[-1], 365, "year"),
        ("1 symbol x 365 days, rerun (all stored)", one, year[0], year[-1], 365, "year"),
        ("10 symbols x 31 days, one run", ten, year[0], year[30], 310, "month10"),
        ("1 symbol x 7 days, one run", one, year[0], year[6], 7, "week"),
        ("1 symbol x 31 days, one run", one, year[0], year[30], 31, "month1"),
    ]
    for name, symbols, first, last, symbol_days, lake_name in scenarios:
        lake = BENCH_DIR / f"lake-{lake_name}"
        res = _child(["--step", "run", "--mirror", str(args.mirror), "--lake", str(lake), "--symbols", symbols,
                      "--first", first.isoformat(), "--last", last.isoformat()])
        res.update(symbol_days=symbol_days, ms_per_symbol_day=res["seconds"] / symbol_days * 1000,
                   ratio_to_floor=res["seconds"] / symbol_days / fl)
        results[name] = res
    results["sizes (1 symbol-year)"] = _sizes(BENCH_DIR / "lake-year")
    results["duckdb 1m->1h, 1 symbol-year"] = _child(["--step", "resample", "--lake", str(BENCH_DIR / "lake-year"), "--symbols", one])

    BENCH_DIR.mkdir(exist_ok=True)
    (BENCH_DIR / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nfloor (bare Polars unzip+read_csv of one daily 1m file): {results['floor']['floor_ms_per_file']:.2f} ms")
    print(f"{'scenario':45} {'seconds':>8} {'ms/sym-day':>11} {'x floor':>8} {'peak RSS MB':>12}")
    for name, *_ in scenarios:
        r = results[name]
        print(f"{name:45} {r['seconds']:8.2f} {r['ms_per_symbol_day']:11.1f} {r['ratio_to_floor']:8.1f} {r['peak_rss_mb']:12.0f}")
    s = results["sizes (1 symbol-year)"]
    print(f"\nsilver Parquet {s['silver_parquet_bytes']:,} B vs bronze zips {s['bronze_zip_bytes']:,} B (ratio {s['silver_to_bronze']:.2f})")
    q = results["duckdb 1m->1h, 1 symbol-year"]
    print(f"DuckDB resample 1 symbol-year 1m -> 1h: {q['resample_1h_seconds'] * 1000:.0f} ms ({q['hours']} hourly bars)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
