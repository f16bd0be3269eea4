"""The code location as Dagster loads it: what it defines, that its automation ships RUNNING, and a snapshot.

``snapshots/defs.json`` lists every asset (group, partitioning, backfill policy, upstream keys), asset
check (blocking or not), job (the assets and checks it runs), schedule and sensor (what each targets,
its default status). A change to any of them fails ``test_definitions_match_the_snapshot`` with the
difference; when the change is deliberate, regenerate and commit the file:

    UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest lakehouse_assets_tests/test_defs.py

Asset keys carry the UI history (materializations, check results, backfills): a key that disappears
from the snapshot is a rename, which needs a migration, not only a new snapshot.

Values that come from settings (start date, cron strings, runs per backfill, lookback days) are left
out, so the snapshot does not depend on the environment the tests run in.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import dagster as dg

from lakehouse_assets.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "defs.json"
UPDATE = "UPDATE_SNAPSHOTS"


def _keys(keys: Any) -> list[str]:
    return sorted(k.to_user_string() for k in keys)


def _checks(keys: Any) -> list[str]:
    return sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in keys)


def _partitioning(partitions_def: dg.PartitionsDefinition | None) -> str | None:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.DailyPartitionsDefinition):
        return f"daily UTC, end_offset={partitions_def.end_offset}"
    return type(partitions_def).__name__


def listing() -> dict[str, Any]:
    """What the code location defines, as plain JSON-able data (sorted, settings-independent)."""
    repo = defs.get_repository_def()
    graph = defs.resolve_asset_graph()
    jobs = {job.name: job for job in repo.get_all_jobs()}

    def job_targets(name: str) -> dict[str, list[str]]:
        layer = jobs[name].asset_layer
        return {"assets": _keys(layer.executable_asset_keys), "checks": _checks(layer.asset_graph.asset_check_keys)}

    sensors: dict[str, Any] = {}
    for sensor in repo.sensor_defs:
        entry: dict[str, Any] = {"type": sensor.sensor_type.name, "default_status": sensor.default_status.name}
        if isinstance(sensor, dg.AutomationConditionSensorDefinition):
            entry["targets"] = _keys(sensor.asset_selection.resolve(graph))
        elif sensor.has_jobs:
            entry["targets"] = job_targets(sensor.job_name)["assets"]
        sensors[sensor.name] = entry

    return {
        "assets": {
            node.key.to_user_string(): {
                "group": node.group_name,
                "partitions": _partitioning(node.partitions_def),
                "backfill_policy": node.backfill_policy.policy_type.name if node.backfill_policy else None,
                "upstream": _keys(node.parent_keys),
            }
            for node in sorted(graph.asset_nodes, key=lambda n: n.key.to_user_string())
        },
        "asset_checks": {
            check: ("blocking" if graph.get(key).blocking else "non-blocking")
            for check, key in sorted((f"{k.asset_key.to_user_string()}:{k.name}", k) for k in graph.asset_check_keys)
        },
        # the named jobs; the anonymous ones of schedules and sensors are listed under their targets
        "jobs": {name: job_targets(name) for name in sorted(jobs) if not name.startswith("__")},
        "schedules": {
            schedule.name: {
                "targets": job_targets(schedule.job_name)["assets"],
                "timezone": schedule.execution_timezone,
                "default_status": schedule.default_status.name,
            }
            for schedule in sorted(repo.schedule_defs, key=lambda s: s.name)
        },
        "sensors": dict(sorted(sensors.items())),
    }


def test_definitions_load_and_list_assets_checks_jobs_schedules_and_sensors() -> None:
    dg.Definitions.validate_loadable(defs)
    listed = listing()
    assert listed["assets"] and listed["asset_checks"] and listed["jobs"] and listed["schedules"] and listed["sensors"]
    assert {"klines_job", "klines_filled_job", "gold_job", "funding_job"} <= set(listed["jobs"])
    # every job, schedule and sensor targets something that exists
    known = set(listed["assets"])
    for name, job in listed["jobs"].items():
        assert job["assets"] and set(job["assets"]) <= known, name
    for name, schedule in listed["schedules"].items():
        assert schedule["targets"] and set(schedule["targets"]) <= known, name
    for name, sensor in listed["sensors"].items():
        assert set(sensor.get("targets", [])) <= known, name


def test_definitions_load_and_every_asset_has_a_description():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"bronze/klines_archive", "silver/klines"} <= keys
    for key in graph.get_all_asset_keys():
        assert graph.get(key).description, key


def test_every_sensor_and_schedule_ships_running() -> None:
    repo = defs.get_repository_def()
    assert {s.name for s in repo.sensor_defs} >= {
        "klines_archive_sensor", "lakehouse_automation", "lakehouse_failure_alerts"
    }
    for sensor in repo.sensor_defs:
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING, sensor.name
    for schedule in repo.schedule_defs:
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING, schedule.name


def test_definitions_match_the_snapshot() -> None:
    current = json.dumps(listing(), indent=2, sort_keys=False) + "\n"
    if os.environ.get(UPDATE):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(current)
    committed = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True), current.splitlines(keepends=True), "snapshots/defs.json", "now"
        )
    )
    assert current == committed, (
        f"The project's definitions differ from {SNAPSHOT.relative_to(SNAPSHOT.parents[2])}:\n{diff}\n"
        f"If the change is deliberate: {UPDATE}=1 .venv/bin/python -m pytest lakehouse_assets_tests/test_defs.py, "
        "review the diff and commit the snapshot. A removed asset key is a rename: keys carry the UI history."
    )
