"""The backfill as Dagster launches it: ``make bench`` step ``launched``.

``run_in_chunks`` (the other Dagster scenarios) calls ``execute_in_process``: no run worker process, no
executor choice, an instance in a temp dir. A user's backfill goes another way, and this step takes it:

1. a fresh ``DAGSTER_HOME`` with the repo's ``dagster.yaml`` (what ``make dev`` copies there: sqlite
   storage, the queued run coordinator, the pools and tag limits);
2. the code location served by a gRPC code server subprocess, as ``dagster dev`` / the daemon load it;
3. the backfill launched with the GraphQL mutation the UI's "Launch backfill" button sends, on an asset
   selection (so its runs are the implicit asset job's, with the code location's default executor);
4. the backfill daemon's own iterations: they cut the partitions into runs by the assets' backfill policy,
   and request an asset's runs once the upstream partitions it reads are done;
5. each run handed to the instance's run launcher (``DefaultRunLauncher``: the code server spawns a
   run worker process, which runs the executor), one after another, which is what the queue daemon
   does under dagster.yaml's one-run-per-backfill tag limit. The daemons' own polling intervals are
   left out: they are latency, not work.

Reported: wall seconds from launch to the last run's end, the runs, and the event-log rows and bytes
they stored, by event type.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from lakehouse_dev import REPO
from lakehouse_dev.bench.common import peak_rss_mb

LAUNCH_BACKFILL = """
mutation($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
  }
}
"""
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def _event_log_stats(home: Path) -> dict[str, Any]:
    """Rows and bytes per event type over every run shard of the instance (the index shard mirrors them)."""
    rows: Counter[str] = Counter()
    size: Counter[str] = Counter()
    runs_dir = home / "history" / "runs"
    for shard in runs_dir.glob("*.db"):
        if shard.name == "index.db":
            continue
        with sqlite3.connect(shard) as con:
            for kind, n, b in con.execute(
                "select coalesce(dagster_event_type, 'LOG'), count(*), sum(length(event)) from event_logs group by 1"
            ):
                rows[kind] += n
                size[kind] += b
    files = sum(p.stat().st_size for p in runs_dir.iterdir() if p.is_file())
    return {"event_rows": sum(rows.values()), "event_bytes": sum(size.values()), "event_log_files_bytes": files,
            "events_by_type": dict(rows.most_common()), "event_bytes_by_type": dict(size.most_common())}


def _launch_and_wait(instance: Any, workspace: Any, run: Any, timeout_s: float) -> float:
    """What the queue daemon does with a dequeued run, then wait for its end; return its seconds."""
    import dagster as dg
    from dagster._core.launcher import LaunchRunContext

    began = time.perf_counter()
    instance.report_dagster_event(
        dg.DagsterEvent(event_type_value="PIPELINE_STARTING", job_name=run.job_name), run_id=run.run_id
    )
    instance.run_launcher.launch_run(
        LaunchRunContext(dagster_run=instance.get_run_by_id(run.run_id), workspace=workspace.create_request_context())
    )
    while (status := instance.get_run_by_id(run.run_id).status.value) not in TERMINAL:
        if time.perf_counter() - began > timeout_s:
            raise TimeoutError(f"run {run.run_id} still {status} after {timeout_s} s")
        time.sleep(0.05)
    if status != "SUCCESS":
        messages = [e.message for e in instance.all_logs(run.run_id) if e.message][-5:]
        raise RuntimeError(f"run {run.run_id} ({run.tags.get('dagster/asset_partition_range_start')}) ended {status}: "
                           f"{messages}")
    return time.perf_counter() - began


def launch_backfills(
    home: Path,
    selections: list[list[str]],
    first: date,
    last: date,
    env: dict[str, str],
    *,
    timeout_s: float = 1800,
) -> dict[str, Any]:
    """Launch one backfill per asset selection over [first, last], in order, each run through the run
    launcher; return the seconds per backfill and per run."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    os.environ.update(env, DAGSTER_HOME=str(home))

    import dagster as dg
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster_graphql.test.utils import execute_dagster_graphql

    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    target = ModuleTarget(module_name="lakehouse_assets.definitions", attribute="defs",
                          working_directory=str(REPO), location_name="lakehouse")
    out: dict[str, Any] = {"backfills": []}
    logger = logging.getLogger("bench-backfill")
    logger.setLevel(logging.WARNING)
    with dg.DagsterInstance.get() as instance, create_test_daemon_workspace_context(target, instance) as workspace:
        out["event_log_storage"] = type(instance.event_log_storage).__name__
        began_all = time.perf_counter()
        for selection in selections:
            began = time.perf_counter()
            launched = execute_dagster_graphql(
                workspace.create_request_context(),
                LAUNCH_BACKFILL,
                {"backfillParams": {"partitionNames": days,
                                    "assetSelection": [{"path": key.split("/")} for key in selection]}},
            )
            answer = launched.data["launchPartitionBackfill"]
            if answer["__typename"] != "LaunchBackfillSuccess":
                raise RuntimeError(f"backfill of {selection} not launched: {launched}")
            backfill_id = answer["backfillId"]
            per_run: list[float] = []
            launched_ids: set[str] = set()
            runs: list[Any] = []
            # Daemon iterations until the backfill is done: each one requests the runs whose upstream
            # partitions are in place (features waits for resampled: its lookback reads the day before).
            while instance.get_backfill(backfill_id).status.value == "REQUESTED":
                if time.perf_counter() - began > timeout_s:
                    raise TimeoutError(f"backfill of {selection} not done after {timeout_s} s")
                list(execute_backfill_iteration(workspace, logger))
                runs = sorted(instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id})),
                              key=lambda r: r.tags.get("dagster/asset_partition_range_start", ""))
                for run in (r for r in runs if r.run_id not in launched_ids):
                    launched_ids.add(run.run_id)
                    per_run.append(_launch_and_wait(instance, workspace, run, timeout_s))
            backfill = instance.get_backfill(backfill_id)
            if backfill.status.value != "COMPLETED_SUCCESS":
                raise RuntimeError(f"backfill of {selection} ended {backfill.status.value}")
            out["backfills"].append({"assets": selection, "runs": len(per_run), "job": runs[0].job_name,
                                     "seconds": time.perf_counter() - began, "run_seconds": per_run})
        out["seconds"] = time.perf_counter() - began_all
    out.update(_event_log_stats(home), peak_rss_mb_launcher=peak_rss_mb())
    return out


def launched(mirror: Path, workdir: Path, symbols: str, first: date, last: date, *, gold: bool,
             days_per_run: int | None = None) -> dict[str, Any]:
    """bronze -> silver (and, with ``gold``, klines_filled then gold) of ``symbols`` over [first, last],
    launched as backfills from the UI would be, on a fresh sqlite instance and lake under ``workdir``."""
    lake = workdir / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    env = {
        "LAKEHOUSE_ARCHIVE_URL": mirror.resolve().as_uri(),
        "LAKEHOUSE_STORAGE": str(lake),
        "LAKEHOUSE_SYMBOLS": symbols,
        "LAKEHOUSE_START_DATE": first.isoformat(),
        "LAKEHOUSE_REST_FILL": "0",  # the synthetic archive is complete; gap-fill only re-checks
    }
    if days_per_run:
        env["LAKEHOUSE_DAYS_PER_RUN"] = str(days_per_run)
    selections = [["bronze/klines_archive", "silver/klines"]]
    if gold:
        # gold as two backfills: in one backfill of both, Dagster maps the requested days through features'
        # lookback onto later days (features of 2024-01-01..07 read resampled 2023-12-31) and the run for
        # those days fails, since their inputs are outside the range
        selections += [["silver/klines_filled", "silver/kline_gaps"], ["gold/klines_resampled"], ["gold/features"]]
    return launch_backfills(workdir / "dagster_home", selections, first, last, env)


ONE = "spot:BENCH1USDT"
YEAR = (date(2023, 1, 1), date(2023, 12, 31))
#: (name, LAKEHOUSE_DAYS_PER_RUN or None for the setting's default, with klines_filled and gold after silver)
SCENARIOS = [
    ("1 symbol x 365 days, launched (default: 1 run)", None, True),
    ("1 symbol x 365 days, launched, month runs (DAYS_PER_RUN=31)", 31, False),
]


def _child(mirror: Path, workdir: Path, days_per_run: int | None, gold: bool) -> dict[str, Any]:
    """One scenario in its own process (and that process's code server and run workers)."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "lakehouse_dev.bench.launched", str(mirror), str(workdir), ONE,
            YEAR[0].isoformat(), YEAR[1].isoformat(), *(["gold"] if gold else []), *([str(days_per_run)] if days_per_run else [])]
    out = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-3000:] + out.stderr[-5000:])
        raise SystemExit(f"bench step launched {args[3:]} failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def scenarios(mirror: Path, bench_dir: Path) -> dict[str, Any]:
    """The launched scenarios of ``make bench`` (the floor and the no-Dagster run are its own steps)."""
    return {name: _child(mirror, bench_dir / f"launched-{i}", days, gold)
            for i, (name, days, gold) in enumerate(SCENARIOS)}


def report(launched: dict[str, Any], results: dict[str, Any]) -> str:
    """The launched rows beside the same work without Dagster and the parse floor, all from this run."""
    floor_ms = results["floor"]["floor_ms_per_file"]
    core = results["1 symbol x 365 days, no Dagster"]["seconds"]
    in_process = results["1 symbol x 365 days, 12 runs (Dagster)"]["seconds"]
    gold_in_process = results["gold_job, 1 symbol x 365 days, 12 runs (Dagster)"]
    lines = [
        "\nlaunched as Dagster launches it: the UI's backfill mutation, the backfill daemon's runs, the run launcher "
        "(a run worker process per run), the jobs' executor, a sqlite instance from dagster.yaml",
        f"{'backfill':44} {'runs':>4} {'seconds':>8} {'ms/sym-day':>10} {'x floor':>8} {'x no-Dagster':>12}",
    ]
    for name, res in launched.items():
        lines.append(f"{name}  (event log: {res['event_rows']} rows, {res['event_bytes'] / 1e6:.1f} MB)")
        for backfill in res["backfills"]:
            seconds = backfill["seconds"]
            what = "  " + " + ".join(backfill["assets"])
            ratio = f"{seconds / core:12.1f}" if backfill["assets"][0] == "bronze/klines_archive" else ""
            lines.append(f"{what:44} {backfill['runs']:4} {seconds:8.1f} {seconds / 365 * 1000:10.1f} "
                         f"{seconds / 365 * 1000 / floor_ms:8.1f} {ratio}")
    lines.append(f"same work without Dagster: {core:.1f} s; in process through Dagster (12 runs): {in_process:.1f} s; "
                 f"floor {floor_ms:.2f} ms per daily file")
    lines.append(f"gold_job in process (12 runs): {gold_in_process['seconds']:.1f} s after klines_filled_job "
                 f"{gold_in_process['klines_filled_seconds']:.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m lakehouse_dev.bench.launched MIRROR WORKDIR SYMBOLS FIRST LAST [gold] [DAYS_PER_RUN]
    import sys

    args = sys.argv[1:]
    days = next((int(a) for a in args[5:] if a.isdigit()), None)
    # The code server and the run workers it starts inherit stdout: send everything to stderr, so that
    # stdout carries only the JSON line the parent reads.
    stdout = os.dup(1)
    os.dup2(2, 1)
    result = launched(Path(args[0]), Path(args[1]), args[2], date.fromisoformat(args[3]), date.fromisoformat(args[4]),
                      gold="gold" in args[5:], days_per_run=days)
    sys.stdout.flush()
    os.write(stdout, (json.dumps(result) + "\n").encode())
