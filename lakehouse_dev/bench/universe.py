"""``make bench`` scenarios at universe scale: a 100-symbol year backfill, and a 400-symbol month under 2 GB.

What is measured (issue 11, "Targets"):

* **Universe backfill.** A synthetic mirror in Binance's format (``fixtures/synthetic_archive.py``:
  daily files, and the monthly file of every month, all of them closed), 100 symbols x
  365 days of 1m, served over HTTP on 127.0.0.1 by the archive stand-in (``fakes/archive_server.py``,
  which also answers the S3 list API the listing reads) in a process of its own, so its CPU and memory
  are not the pipeline's. ``klines_job`` (bronze -> silver) runs as the backfill cuts it: range runs of
  ``LAKEHOUSE_DAYS_PER_RUN`` days (the default: the year is one run), in order, through Dagster on a sqlite instance configured by the repo's
  ``dagster.yaml`` (what ``make dev`` runs), with the default
  ``LAKEHOUSE_RUN_MEMORY_MIB``. Reported: wall seconds, archive MB/s (zip bytes bronze downloaded, against
  seed figure S0's 25 MB/s), ms per symbol-day as a multiple of the bare Polars parse floor measured
  on this mirror in the same run, and peak RSS of the process that ran every run.
* **400 symbols x 31 days, one run**: peak RSS against the 2 GB
  budget, and the chunks the run was cut into.
* **Independent of history.** The last month of the universe backfill once more: on a fresh lake,
  and on the lake holding the whole year (bronze files stored, so nothing is downloaded again); and
  on a fresh lake in one chunk (a budget no run reaches), what a run needed before chunking.

Each measured run is a fresh process (``python -m lakehouse_dev.bench.universe run ...``) so its
``ru_maxrss`` is its own. The mirrors are generated once and cached under ``.bench/cache/`` (about
7 GB for the year: daily and monthly files), keyed by what they hold.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from lakehouse_assets.settings import SETTINGS
from lakehouse_dev import REPO
from lakehouse_dev.bench.common import BENCH_DIR, CACHE_DIR, local_instance, peak_rss_mb, run_in_chunks

START = date(2023, 1, 1)
S0_MB_PER_S = 25.0  # seed figure S0: archive bytes per second before issue 11
UNBOUNDED_MIB = 1_000_000  # a budget no run reaches: the whole run in one chunk, as before chunking
SYMBOLS_YEAR, DAYS_YEAR = 100, 365
SYMBOLS_MONTH, DAYS_MONTH = 400, 31
#: the backfill cut users get: LAKEHOUSE_DAYS_PER_RUN's default (a year is one run)
DEFAULT_DAYS_PER_RUN: int = SETTINGS["LAKEHOUSE_DAYS_PER_RUN"].parse_default()


def universe(n: int) -> str:
    """``n`` synthetic spot symbols (names no Binance market uses)."""
    return ",".join(f"spot:SYN{i:03d}USDT" for i in range(n))


def _days(n: int) -> list[date]:
    return [START + timedelta(days=i) for i in range(n)]


def ensure_mirror(symbols: int, days: int, *, seed: int = 11) -> Path:
    """The cached mirror of ``symbols`` x ``days`` (daily files, and the monthly file of every closed month)."""
    from lakehouse_assets.instruments import parse_universe
    from lakehouse_dev.fixtures.synthetic_archive import write_synthetic_mirror

    root = CACHE_DIR / f"mirror-{symbols}x{days}-from-{START.isoformat()}-seed{seed}"
    spec = {"symbols": symbols, "days": days, "start": START.isoformat(), "seed": seed, "interval": "1m",
            "periods": ["daily", "monthly"]}
    marker = root / "COMPLETE.json"
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return root
    shutil.rmtree(root, ignore_errors=True)
    began = time.perf_counter()
    written = write_synthetic_mirror(root, parse_universe(universe(symbols)), _days(days), seed=seed,
                                     periods=("daily", "monthly"))
    marker.write_text(json.dumps(spec))
    print(f"synthetic mirror {symbols} x {days} written in {time.perf_counter() - began:.0f}s "
          f"({written / 1e9:.2f} GB) under {root}", flush=True)
    return root


# --------------------------------------------------------------------------- the measured process


def run(archive_url: str, lake: Path, symbols: int, first: date, last: date, days_per_run: int,
        budget_mib: int | None) -> dict[str, Any]:
    """``klines_job`` over [first, last] as a backfill cuts it, in this process; what it cost."""
    env = {
        "LAKEHOUSE_ARCHIVE_URL": archive_url,
        "LAKEHOUSE_ARCHIVE_LISTING_URL": archive_url,
        "LAKEHOUSE_STORAGE": str(lake),
        "LAKEHOUSE_SYMBOLS": universe(symbols),
        "LAKEHOUSE_START_DATE": START.isoformat(),
        "LAKEHOUSE_DAYS_PER_RUN": str(days_per_run),
    }
    if budget_mib is not None:
        env["LAKEHOUSE_RUN_MEMORY_MIB"] = str(budget_mib)
    os.environ.update(env)
    from lakehouse_assets.definitions import defs

    rss_before = peak_rss_mb()
    zips_before = _zip_bytes(lake)
    days = (last - first).days + 1
    runs = math.ceil(days / days_per_run)
    with local_instance() as instance:
        began = time.perf_counter()
        run_in_chunks(defs.resolve_job_def("klines_job"), instance, first, last, runs)
        seconds = time.perf_counter() - began
        chunks = _chunks_per_run(instance)
    return {"seconds": seconds, "runs": runs, "chunks_per_run": chunks, "peak_rss_mb": peak_rss_mb(),
            "rss_after_import_mb": rss_before, "archive_zip_bytes": _zip_bytes(lake) - zips_before}


def _chunks_per_run(instance: Any) -> list[int]:
    """How many chunks silver/klines wrote in each run (its materialization's ``chunks_written``)."""
    import dagster as dg

    records = instance.fetch_materializations(dg.AssetKey(["silver", "klines"]), limit=10_000).records
    by_run: dict[str, int] = {}
    for record in records:
        meta = record.asset_materialization.metadata if record.asset_materialization else {}
        if "chunks_written" in meta:
            by_run[record.run_id] = int(meta["chunks_written"].value)
    return list(by_run.values())


def _zip_bytes(lake: Path) -> int:
    """Archive bytes bronze holds: the zips it downloaded (monthly and daily) and parses. A run's figure is
    the difference before and after it: what it downloaded (nothing, for a re-run over stored files)."""
    root = lake / "bronze/binance"
    return sum(p.stat().st_size for p in root.rglob("*.zip")) if root.exists() else 0


# --------------------------------------------------------------------------- orchestration


class _Server:
    """The archive stand-in over a mirror, in a process of its own (its CPU and memory are not the run's)."""

    def __init__(self, mirror: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lakehouse_dev.bench.universe", "serve", "--mirror", str(mirror)],
            stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        assert self.process.stdout is not None
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http://127.0.0.1:"):
            self.process.kill()
            raise SystemExit(f"archive stand-in did not start: {self.base_url!r}")

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _serve(mirror: Path) -> None:
    from lakehouse_dev.fakes.archive_server import ArchiveServer

    with ArchiveServer(mirror) as server:
        print(server.base_url, flush=True)
        while True:
            time.sleep(3600)


def _measure(mirror: Path, lake: Path, symbols: int, first: date, last: date, *,
             days_per_run: int = DEFAULT_DAYS_PER_RUN,
             budget_mib: int | None = None, fresh: bool = True) -> dict[str, Any]:
    if fresh:
        shutil.rmtree(lake, ignore_errors=True)
    with _Server(mirror) as server:
        args = ["run", "--archive-url", server.base_url, "--lake", str(lake), "--symbols", str(symbols),
                "--first", first.isoformat(), "--last", last.isoformat(), "--days-per-run", str(days_per_run)]
        if budget_mib is not None:
            args += ["--budget-mib", str(budget_mib)]
        out = subprocess.run([sys.executable, "-m", "lakehouse_dev.bench.universe", *args],
                             capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-3000:] + out.stderr[-5000:])
        raise SystemExit(f"universe bench run {args} failed")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    symbol_days = symbols * ((last - first).days + 1)
    result.update(symbol_days=symbol_days, ms_per_symbol_day=result["seconds"] / symbol_days * 1000,
                  archive_mb_per_s=result["archive_zip_bytes"] / 1e6 / result["seconds"])
    return result


def _floor(mirror: Path) -> float:
    out = subprocess.run([sys.executable, "-m", "lakehouse_dev.bench", "--step", "floor", "--mirror", str(mirror)],
                         capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["floor_ms_per_file"]


def scenarios() -> dict[str, Any]:
    """Every universe scenario, each run in a fresh process; the parse floor measured alongside."""
    year_mirror = ensure_mirror(SYMBOLS_YEAR, DAYS_YEAR)
    month_mirror = ensure_mirror(SYMBOLS_MONTH, DAYS_MONTH)
    floor_ms = _floor(year_mirror)
    days = _days(DAYS_YEAR)
    december = [d for d in days if d.month == 12]
    lake = BENCH_DIR / "lake-universe"
    results: dict[str, Any] = {"floor_ms_per_file": floor_ms}
    results["year"] = _measure(year_mirror, lake, SYMBOLS_YEAR, days[0], days[-1])
    results["month_400"] = _measure(month_mirror, BENCH_DIR / "lake-universe-400", SYMBOLS_MONTH,
                                    START, START + timedelta(days=DAYS_MONTH - 1))
    results["december_fresh"] = _measure(year_mirror, BENCH_DIR / "lake-universe-december", SYMBOLS_YEAR,
                                         december[0], december[-1])
    results["december_after_year"] = _measure(year_mirror, lake, SYMBOLS_YEAR, december[0], december[-1], fresh=False)
    results["december_one_chunk"] = _measure(year_mirror, BENCH_DIR / "lake-universe-december", SYMBOLS_YEAR,
                                             december[0], december[-1], budget_mib=UNBOUNDED_MIB)
    for r in results.values():
        if isinstance(r, dict):
            r["x_floor"] = r["ms_per_symbol_day"] / floor_ms
    return results


def report(results: dict[str, Any]) -> str:
    fl = results["floor_ms_per_file"]
    y, m = results["year"], results["month_400"]
    lines = [
        f"\nuniverse (floor on this mirror: {fl:.2f} ms per daily 1m file, unzip + read_csv)",
        f"{'scenario':52} {'seconds':>8} {'MB/s':>6} {'ms/sym-day':>11} {'x floor':>8} {'peak RSS MB':>12} chunks/run",
    ]
    rows = [
        (f"{SYMBOLS_YEAR} symbols x {DAYS_YEAR} days, {y['runs']} runs (HTTP)", y),
        (f"{SYMBOLS_MONTH} symbols x {DAYS_MONTH} days, 1 run (HTTP)", m),
        (f"{SYMBOLS_YEAR} symbols x December, fresh lake", results["december_fresh"]),
        (f"{SYMBOLS_YEAR} symbols x December, lake holding the year", results["december_after_year"]),
        (f"{SYMBOLS_YEAR} symbols x December, one chunk (no budget)", results["december_one_chunk"]),
    ]
    for name, r in rows:
        mb_s = f"{r['archive_mb_per_s']:6.1f}" if r["archive_zip_bytes"] else f"{'-':>6}"
        lines.append(f"{name:52} {r['seconds']:8.1f} {mb_s} {r['ms_per_symbol_day']:11.2f} "
                     f"{r['x_floor']:8.1f} {r['peak_rss_mb']:12.0f} {r['chunks_per_run']}")
    lines.append(f"targets: year <= 300 s ({'met' if y['seconds'] <= 300 else 'NOT met'}), archive MB/s vs S0 "
                 f"{S0_MB_PER_S:.0f} MB/s: {y['archive_mb_per_s'] / S0_MB_PER_S:.1f}x, 400 x 31 peak <= 2048 MB "
                 f"({'met' if m['peak_rss_mb'] <= 2048 else 'NOT met'})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["all", "run", "serve", "mirrors"])
    parser.add_argument("--mirror", type=Path)
    parser.add_argument("--archive-url")
    parser.add_argument("--lake", type=Path)
    parser.add_argument("--symbols", type=int)
    parser.add_argument("--first")
    parser.add_argument("--last")
    parser.add_argument("--days-per-run", type=int, default=DEFAULT_DAYS_PER_RUN)
    parser.add_argument("--budget-mib", type=int)
    args = parser.parse_args(argv)
    if args.what == "serve":
        _serve(args.mirror)
        return 0
    if args.what == "run":
        out = run(args.archive_url, args.lake, args.symbols, date.fromisoformat(args.first),
                  date.fromisoformat(args.last), args.days_per_run, args.budget_mib)
        print(json.dumps(out))
        return 0
    if args.what == "mirrors":
        ensure_mirror(SYMBOLS_YEAR, DAYS_YEAR)
        ensure_mirror(SYMBOLS_MONTH, DAYS_MONTH)
        return 0
    results = scenarios()
    BENCH_DIR.mkdir(exist_ok=True)
    (BENCH_DIR / "universe.json").write_text(json.dumps(results, indent=2))
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
