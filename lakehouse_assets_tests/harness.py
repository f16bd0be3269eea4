"""Run the project's own jobs, as shipped, with the resources a test needs.

The definitions are ``lakehouse_assets.definitions.defs``: the code location's assets, checks, jobs,
partitions, backfill and retry policies, unchanged. Only resources are replaced: the lake on a temp
dir (or the moto S3 endpoint), the archive and REST stand-ins on 127.0.0.1, and the universe. A
pipeline test therefore fails when the shipped wiring breaks, not only when an asset body does.

* ``resources(...)`` builds the overrides; ``project_defs(res)`` is the project's definitions with them.
* ``run_klines`` / ``run_gapfill`` / ``run_gold`` / ``run_funding`` run ``klines_job``,
  ``klines_filled_job``, ``gold_job`` and ``funding_job`` for one day (``end=None``) or for a range
  ``[start, end]`` as ONE run carrying the range tags, the way a backfill run executes.
* ``materialize(keys, ...)`` runs assets no job targets (``gold/funding_features``, one asset alone)
  the way ``lakehouse_automation`` and the asset page launch them: the implicit asset job, subset.
* COIN-M contract sizes come from bronze/exchange_info in the lake: ``run_*`` and ``materialize`` first
  materialize it for cm (``seed_exchange_info``) when the universe names COIN-M and the lake has no answer.
* ``automation_defs(res)`` is what ``lakehouse_automation`` evaluates: its default condition on
  every asset it targets.
* ``launch_backfill`` / ``iterate_backfills`` / ``targeted_partitions``: a backfill as the UI's "Launch
  backfill" button sends it (its GraphQL mutation) and the backfill daemon's own iteration cuts it into runs.

Why not ``Definitions.merge`` / ``Definitions.with_resources``: in Dagster 1.13 both refuse a second
value for a resource key the code location already sets ("different resources with same key"), so
the overrides are applied by rebuilding ``Definitions`` from the shipped object's public fields.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from lakehouse_assets.definitions import defs as SHIPPED
from lakehouse_assets.defs.common.keys import BRONZE_EXCHANGE_INFO, GOLD_FUNDING, KLINE_GAPS, KLINES_FILLED
from lakehouse_assets.defs.operations import lakehouse_automation
from lakehouse_assets.defs.resources import (
    BinanceArchiveResource,
    BinanceRestResource,
    FundingResource,
    GoldResource,
    LakeDuckDBResource,
    RunMemoryResource,
    UniverseResource,
)
from lakehouse_assets.lake.io_manager import HiveParquetIOManager, LakeResource, LakeS3Resource
from lakehouse_assets.lake.layout import write_partitions
from lakehouse_assets.lake.store import LocalStore
from lakehouse_assets_tests.samples import REPO

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
#: Port 9 (discard) on loopback: any call to a REST stand-in a test did not ask for fails loudly.
NO_REST = "http://127.0.0.1:9"
#: Lake paths of the gap-fill tables (the IO manager stores asset key ``a/b`` under ``a/b/date=…/``).
FILLED = KLINES_FILLED.to_user_string()
GAPS = KLINE_GAPS.to_user_string()


# --------------------------------------------------------------------------- resources


def resources(
    storage: str | Path,
    archive_url: str,
    symbols: str,
    *,
    s3_endpoint_url: str | None = None,
    s3: LakeS3Resource | None = None,
    rest_url: str | None = None,
    rest_enabled: bool = True,
    rate_caps: str = "",
    **rest_options: Any,
) -> dict[str, Any]:
    """The resources of a test run: every one the project's assets, checks and sensors use.

    * ``storage``: the lake (a directory, or ``s3://bucket/prefix`` with ``s3_endpoint_url``, or with ``s3``:
      an S3 client configured otherwise); the IO manager, the DuckDB resource and the ``s3`` resource all
      share it, as in ``default_resources``.
    * ``archive_url``: the archive stand-in (``http://127.0.0.1:…`` or a ``file://`` mirror), with short
      back-offs and 3 attempts.
    * ``rest_url``: the REST stand-in (``None``: port 9, where any call fails loudly); ``rest_enabled``
      and ``rest_options`` (e.g. ``page_limit``, ``kline_api``) set the rest of ``BinanceRestResource``.
    * ``symbols``: the universe; ``rate_caps``: ``LAKEHOUSE_FUNDING_RATE_CAPS``.

    A test may replace entries of the returned dict (``res["archive"] = ...``) before running.
    """
    lake = LakeResource(storage=str(storage), s3=s3 or LakeS3Resource(endpoint_url=s3_endpoint_url))
    rest = {"backoff_seconds": 0.01, "max_attempts": 3, "timeout_seconds": 5, "max_retry_wait_seconds": 1}
    return {
        "lake": lake,
        "s3": lake.s3,
        "io_manager": HiveParquetIOManager(lake=lake),
        "duckdb": LakeDuckDBResource(lake=lake),
        "archive": BinanceArchiveResource(
            base_url=archive_url, listing_url=archive_url, backoff_seconds=0.01, max_attempts=3
        ),  # the stand-in answers the S3 list API at its root; a file:// mirror lists its tree
        "universe": UniverseResource(symbols=symbols, lake=lake),  # silver/instruments of the test lake, if any
        "gold": GoldResource(),
        "run_memory": RunMemoryResource(),
        "funding": FundingResource(rate_caps=rate_caps),
        "binance_rest": BinanceRestResource(
            enabled=rest_enabled, base_url=rest_url or NO_REST, **{**rest, **rest_options}
        ),
    }


def s3_resources(storage: str, endpoint: str, archive_url: str, *, attempts: int, timeout: int = 2) -> dict[str, Any]:
    """``resources`` for spot:BTCUSDT on an S3 lake whose client makes ``attempts`` attempts per request with
    ``timeout`` s connect/read timeouts (the S3 fault tests put a fault-injecting proxy at ``endpoint``)."""
    s3 = LakeS3Resource(endpoint_url=endpoint, max_attempts=attempts, timeout_seconds=timeout)
    return resources(storage, archive_url, "spot:BTCUSDT", s3=s3)


def project_defs(res: Mapping[str, Any]) -> dg.Definitions:
    """The project's definitions, with ``res`` in place of the code location's resources of the same keys."""
    return dg.Definitions(
        assets=SHIPPED.assets,
        asset_checks=SHIPPED.asset_checks,
        jobs=SHIPPED.jobs,
        schedules=SHIPPED.schedules,
        sensors=SHIPPED.sensors,
        executor=SHIPPED.executor,
        loggers=SHIPPED.loggers,
        resources={**(SHIPPED.resources or {}), **res},
    )


def automation_defs(res: Mapping[str, Any]) -> dg.Definitions:
    """The project's definitions as ``lakehouse_automation`` evaluates them: every asset it targets without a
    condition of its own gets the sensor's default condition (``follow_upstream()``)."""
    sensor = lakehouse_automation
    return project_defs(res).map_resolved_asset_specs(
        func=lambda spec: spec if spec.automation_condition else spec.replace_attributes(
            automation_condition=sensor.default_condition
        ),
        selection=sensor.asset_selection,
    )


# --------------------------------------------------------------------------- runs


def _execute(
    job: dg.JobDefinition,
    start: str,
    end: str | None,
    instance: dg.DagsterInstance,
    *,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    raise_on_error: bool = True,
    asset_selection: Sequence[dg.AssetKey] | None = None,
) -> dg.ExecuteInProcessResult:
    range_tags = {} if end is None else {RANGE_START: start, RANGE_END: end}
    return job.execute_in_process(
        instance=instance,
        run_config=run_config,
        partition_key=start if end is None else None,
        tags={**range_tags, **(tags or {})},
        raise_on_error=raise_on_error,
        asset_selection=asset_selection,
    )


def run_job(
    name: str, res: Mapping[str, Any], start: str, end: str | None, instance: dg.DagsterInstance, **kw: Any
) -> dg.ExecuteInProcessResult:
    """One run of the project's job ``name``: day ``start`` if ``end`` is None, else ``[start, end]`` as one
    range run (range tags, even for a single day). ``kw``: run_config, tags, raise_on_error, and
    ``seed_exchange_info=False`` to skip ``seed_exchange_info``."""
    if kw.pop("seed_exchange_info", True):
        seed_exchange_info(res)
    return _execute(project_defs(res).resolve_job_def(name), start, end, instance, **kw)


def run_klines(res: Mapping[str, Any], start: str, end: str | None, instance: dg.DagsterInstance, **kw: Any):
    """``klines_job``: bronze/klines_archive + silver/klines (and silver/klines' checks)."""
    return run_job("klines_job", res, start, end, instance, **kw)


def run_gapfill(res: Mapping[str, Any], start: str, end: str | None, instance: dg.DagsterInstance, **kw: Any):
    """``klines_filled_job``: silver/klines_filled + silver/kline_gaps (silver/klines must be in the lake)."""
    return run_job("klines_filled_job", res, start, end, instance, **kw)


def run_gold(res: Mapping[str, Any], start: str, end: str | None, instance: dg.DagsterInstance, **kw: Any):
    """``gold_job``: gold/klines_resampled + gold/features (silver/klines_filled must be in the lake)."""
    return run_job("gold_job", res, start, end, instance, **kw)


def run_funding(res: Mapping[str, Any], start: str, end: str | None, instance: dg.DagsterInstance, **kw: Any):
    """``funding_job``: bronze/funding_archive + silver/funding_rates."""
    return run_job("funding_job", res, start, end, instance, **kw)


def materialize(
    keys: Sequence[dg.AssetKey],
    res: Mapping[str, Any],
    start: str,
    end: str | None,
    instance: dg.DagsterInstance,
    **kw: Any,
) -> dg.ExecuteInProcessResult:
    """Only ``keys`` (their inputs are read from the lake), as ``lakehouse_automation`` and the asset page
    launch them: the project's implicit asset job, subset to those assets (and their checks)."""
    if kw.pop("seed_exchange_info", True) and BRONZE_EXCHANGE_INFO not in keys:
        seed_exchange_info(res)
    job = project_defs(res).resolve_implicit_global_asset_job_def()
    return _execute(job, start, end, instance, asset_selection=list(keys), **kw)


def seed_exchange_info(res: Mapping[str, Any]) -> None:
    """COIN-M klines take their contract sizes from bronze/exchange_info in the lake. When the universe names a
    cm instrument and the test lake holds no COIN-M answer yet, materialize today's bronze/exchange_info for cm
    first, as a deployment would, against a REST stand-in of its own serving the bundled (SYNTHETIC) COIN-M
    answer, on a throw-away instance (the test's instance and REST server see no extra run or request)."""
    from lakehouse_assets.universe.exchange_info_bronze import answer_days, utc_today
    from lakehouse_assets_tests.samples import SAMPLE_DATA
    from lakehouse_dev.fakes.rest_server import BinanceRestServer

    if "cm:" not in res["universe"].symbols.lower() or answer_days(res["lake"].store(), "cm"):
        return
    with BinanceRestServer(SAMPLE_DATA) as rest:
        seeded = {
            **res,
            "universe": UniverseResource(symbols="cm:BTCUSD_PERP"),  # the answer is per market: any cm entry
            "binance_rest": BinanceRestResource(base_url=rest.base_url, backoff_seconds=0.01, max_attempts=3),
        }
        job = project_defs(seeded).resolve_implicit_global_asset_job_def()
        result = _execute(job, utc_today().isoformat(), None, dg.DagsterInstance.ephemeral(),
                          asset_selection=[BRONZE_EXCHANGE_INFO], raise_on_error=False)  # fmt: skip
    assert result.success, f"seeding bronze/exchange_info failed:\n{failure_text(result)}"


def run_funding_features(res: Mapping[str, Any], start: str, end: str | None, instance: dg.DagsterInstance, **kw: Any):
    """gold/funding_features alone (no job targets it: ``lakehouse_automation`` runs it after gold/features)."""
    return materialize([GOLD_FUNDING], res, start, end, instance, **kw)


def gapfill_config(**config: Any) -> dict:
    """Run config for the gap-fill op (``as_of``, ``interval``, ``rest_fill``, ...)."""
    return {"ops": {"klines_filled": {"config": config}}}


# --------------------------------------------------------------------------- what a run left


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure's error (with its cause chain), one after the other."""
    return "\n".join(
        (e.step_failure_data.error.to_string() if e.step_failure_data and e.step_failure_data.error else e.message or "")
        for e in result.all_events
        if e.is_step_failure
    )


def check_outcomes(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    """Check name -> passed, for every check evaluated in the run."""
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def table(lake: Path, name: str, day: str) -> pl.DataFrame:
    """One day of a lake table, read straight from its Parquet files (the day must exist)."""
    files = sorted((lake / name / f"date={day}").glob("*.parquet"))
    assert files, f"{name} has no partition {day}"
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical")


def read_table(lake: Path, name: str) -> pl.DataFrame:
    """Every day of a lake table, with its ``date`` (text) from the Hive path."""
    files = sorted((lake / name).glob("date=*/*.parquet"))
    return pl.concat([pl.read_parquet(f).with_columns(date=pl.lit(f.parent.name[5:])) for f in files], how="diagonal_relaxed")


# --------------------------------------------------------------------------- backfills as the UI and daemon make them

# The mutation of the UI's "Launch backfill" button.
LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
  }
}
"""

@contextmanager
def daemon_workspace(instance: dg.DagsterInstance) -> Iterator[Any]:
    """The code location as the webserver and the daemons load it: a code server subprocess, which inherits this
    process's environment (set the LAKEHOUSE_* variables first), as do the run workers it starts."""
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget

    target = ModuleTarget(
        module_name="lakehouse_assets.definitions", attribute="defs", working_directory=str(REPO),
        location_name="lakehouse",
    )
    with create_test_daemon_workspace_context(target, instance) as context:
        yield context


def launch_backfill(workspace, keys: Sequence[dg.AssetKey], days: list[str]) -> str:
    """What the UI sends for "select these assets, Materialize, these partitions, Launch backfill"."""
    from dagster_graphql.test.utils import execute_dagster_graphql

    launched = execute_dagster_graphql(
        workspace.create_request_context(),
        LAUNCH_BACKFILL,
        {"backfillParams": {"partitionNames": days, "assetSelection": [{"path": key.path} for key in keys]}},
    )
    assert launched.data["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", launched
    return launched.data["launchPartitionBackfill"]["backfillId"]


def targeted_partitions(instance: dg.DagsterInstance, backfill_id: str) -> dict[str, list[str]]:
    """The partitions the backfill targets, per asset, as the daemon stored them."""
    target = instance.get_backfill(backfill_id).asset_backfill_data.target_subset
    return {
        key.to_user_string(): sorted(target.get_partitions_subset(key).get_partition_keys())
        for key in target.asset_keys
    }


def iterate_backfills(workspace) -> None:
    from dagster._daemon.backfill import execute_backfill_iteration

    list(execute_backfill_iteration(workspace, logging.getLogger("backfill-test")))


def write_bar_keys(lake: Path, first: date, last: date) -> pl.DataFrame:
    """gold/features keys for um:BTCUSDT 1h and 1d bars (and spot 1h, which funding must ignore)."""
    frames = []
    for market, symbol, interval, step in (
        ("um", "BTCUSDT", "1h", timedelta(hours=1)),
        ("um", "BTCUSDT", "1d", timedelta(days=1)),
        ("spot", "BTCUSDT", "1h", timedelta(hours=1)),
    ):
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
        opens = pl.datetime_range(start, end, step, closed="left", eager=True, time_zone="UTC").dt.cast_time_unit("ms")
        frames.append(
            pl.DataFrame({"market": market, "symbol": symbol, "interval": interval, "open_time": opens}).with_columns(
                close_time=pl.col("open_time") + pl.duration(milliseconds=step // timedelta(milliseconds=1) - 1)
            )
        )
    bars = pl.concat(frames)
    days = [(first + timedelta(days=k)).isoformat() for k in range((last - first).days + 1)]
    write_partitions(LocalStore(lake), "gold/features", bars, days=days, partition_column="open_time")
    return bars


def execute_queued_run(workspace: Any, instance: dg.DagsterInstance, run: dg.DagsterRun, *, timeout: float = 300) -> None:
    """Dequeue ``run`` as the queue daemon does: the code server starts a run worker process; wait for it to succeed."""
    import time

    from dagster._core.launcher import LaunchRunContext

    instance.handle_run_event(
        run.run_id, dg.DagsterEvent(event_type_value="PIPELINE_STARTING", job_name=run.job_name, message="dequeued")
    )
    instance.run_launcher.launch_run(
        LaunchRunContext(dagster_run=instance.get_run_by_id(run.run_id), workspace=workspace.create_request_context())
    )
    deadline = time.monotonic() + timeout
    while not instance.get_run_by_id(run.run_id).is_finished:
        assert time.monotonic() < deadline, f"run {run.run_id} did not finish in {timeout:.0f} s"
        time.sleep(0.2)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
