"""What the bench steps share: where results go, peak memory, and running a job the way a backfill cuts it."""

from __future__ import annotations

import resource
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from lakehouse_dev import REPO

BENCH_DIR = REPO / ".bench"
CACHE_DIR = BENCH_DIR / "cache"  # generated inputs reused across runs (the universe mirrors: minutes to write)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def fresh_bench_dir() -> None:
    """Remove the previous run's lakes and results, keeping ``CACHE_DIR``."""
    if not BENCH_DIR.exists():
        return
    for old in BENCH_DIR.iterdir():
        if old == CACHE_DIR:
            continue
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()


@contextmanager
def local_instance() -> Iterator[Any]:
    """A fresh Dagster instance configured by the repo's dagster.yaml (what ``make dev`` runs: sqlite
    storage with the project's event log class), in a temporary DAGSTER_HOME."""
    import dagster as dg

    with tempfile.TemporaryDirectory(prefix="bench-dagster-home-") as home:
        shutil.copy(REPO / "dagster.yaml", Path(home) / "dagster.yaml")
        with dg.DagsterInstance.from_config(home) as instance:
            yield instance


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (each scenario runs in its own process)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_in_chunks(job: Any, instance: Any, first: date, last: date, runs: int) -> None:
    """Execute ``job`` over [first, last] as ``runs`` range runs, cut the way a multi-run backfill cuts it."""
    days = (last - first).days + 1
    chunk = -(-days // runs)
    for i in range(0, days, chunk):
        start, end = first + timedelta(days=i), min(last, first + timedelta(days=i + chunk - 1))
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": start.isoformat(),
                "dagster/asset_partition_range_end": end.isoformat(),
            },
            run_config=QUIET,
        )
        assert result.success, f"{job.name} {start}..{end} failed"
