"""The demo's one run-and-report loop: run a job over a partition range, print one line, show what failed.

Settings are environment variables that the code location's resources resolve when a run starts
(``EnvVar``), so ``settings(...)`` around a run changes them for that run only: the demo uses it to
give each sample range its own universe (``LAKEHOUSE_SYMBOLS``) and the showcases their own lake.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@contextmanager
def settings(**values: str | None) -> Iterator[None]:
    """Set (or, with None, leave alone) LAKEHOUSE_* variables for the block; restore them afterwards."""
    values = {name: value for name, value in values.items() if value is not None}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run(
    job: Any,
    instance: Any,
    start: str | None,
    end: str | None,
    *,
    symbols: str | None = None,
    label: str | None = None,
    selection: list[Any] | None = None,
    details: Callable[[Any], str] | None = None,
) -> Any:
    """Run ``job`` over [start, end] with the universe ``symbols``; print one line, and the errors if it failed.

    ``start``/``end`` None: an unpartitioned selection (a whole table such as silver/instruments).

    The line ends with the run's checks (all passed, or which did not) and ``details(result)`` if given.
    """
    began = time.perf_counter()
    with settings(LAKEHOUSE_SYMBOLS=symbols):
        result = job.execute_in_process(
            instance=instance,
            tags={} if start is None else {"dagster/asset_partition_range_start": start,
                                           "dagster/asset_partition_range_end": end},
            run_config=QUIET,
            asset_selection=selection,
            raise_on_error=False,
        )
    scope = f" ({symbols})" if symbols else ""
    status = "ok" if result.success else "FAILED"
    span = "" if start is None else f" {start}..{end}"
    line = f"{label or job.name}{span}{scope}: {status} in {time.perf_counter() - began:.1f}s (run {result.run_id[:8]})"
    if result.success:
        line += f"; {checks_summary(result)}"
        if details is not None:
            line += f" — {details(result)}"
    print(line)
    if not result.success:
        for event in result.all_events:
            if event.is_failure:
                print(f"  {event.message}")
    return result


def checks_summary(result: Any) -> str:
    """'checks: 7 passed', or which checks did not pass and at which severity."""
    evaluations = result.get_asset_check_evaluations()
    if not evaluations:
        return "no checks"
    failed = [e for e in evaluations if not e.passed]
    if not failed:
        return f"checks: {len(evaluations)} passed"
    names = ", ".join(f"{'/'.join(e.asset_key.path)}:{e.check_name} ({e.severity.value})" for e in failed)
    return f"checks: {len(evaluations) - len(failed)} passed, NOT passed: {names}"


def failed_checks(result: Any) -> list[str]:
    return [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
