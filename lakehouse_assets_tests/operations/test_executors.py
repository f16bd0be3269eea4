"""Runs execute their steps in the run's own process (defs/common/executors.py), and a launch can still
ask for a process per step. Executed with ``dg.execute_job`` on an instance made from the repo's
dagster.yaml, which, unlike ``execute_in_process``, uses the job's executor exactly as a run worker does."""

from __future__ import annotations

import os
import shutil

import dagster as dg
import pytest

from lakehouse_assets.definitions import defs
from lakehouse_assets.defs.common.executors import in_process_unless_configured
from lakehouse_assets_tests.harness import RANGE_END, RANGE_START, project_defs, resources
from lakehouse_assets_tests.samples import REPO

MULTIPROCESS = {"execution": {"config": {"multiprocess": {"max_concurrent": 1}}}}


def klines_job_for_test() -> dg.JobDefinition:
    """``klines_job`` as shipped, on the test's lake and mirror (a step process rebuilds it from the env)."""
    res = resources(os.environ["EXECUTOR_TEST_LAKE"], os.environ["EXECUTOR_TEST_ARCHIVE"], "spot:BTCUSDT")
    return project_defs(res).resolve_job_def("klines_job")


def test_every_job_and_the_asset_job_default_to_in_process():
    repo = defs.get_repository_def()
    jobs = {job.name: job.executor_def for job in repo.get_all_jobs()}
    assert {"klines_job", "klines_filled_job", "gold_job", "funding_job"} <= set(jobs)
    assert all(executor is in_process_unless_configured for executor in jobs.values()), jobs
    assert defs.resolve_implicit_global_asset_job_def().executor_def is in_process_unless_configured


def _step_pids(instance: dg.DagsterInstance, run_id: str) -> tuple[set[int], int]:
    events = [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event]
    starts = {e.pid for e in events if e.event_type == dg.DagsterEventType.STEP_START}
    workers = sum(e.event_type == dg.DagsterEventType.STEP_WORKER_STARTING for e in events)
    return starts, workers


@pytest.mark.parametrize("multiprocess", [False, True], ids=["default", "multiprocess_on_request"])
def test_steps_run_in_the_run_process_unless_the_launch_asks(tmp_path, sample_mirror, monkeypatch, multiprocess):
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)  # the instance's event log class sets it
    monkeypatch.setenv("EXECUTOR_TEST_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("EXECUTOR_TEST_ARCHIVE", sample_mirror.as_uri())
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # the local instance: its event log, pools, limits
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.execute_job(
            dg.reconstructable(klines_job_for_test),
            instance,
            run_config=MULTIPROCESS if multiprocess else None,
            tags={RANGE_START: "2020-01-01", RANGE_END: "2020-01-02"},
        )
        assert result.success
        pids, workers = _step_pids(instance, result.run_id)
        assert len(instance.get_materialized_partitions(dg.AssetKey(["silver", "klines"]))) == 2
    if multiprocess:
        assert workers >= 2 and os.getpid() not in pids and len(pids) >= 2  # bronze, silver: a process each
    else:
        assert workers == 0 and pids == {os.getpid()}
