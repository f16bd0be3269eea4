"""How a run executes its steps: in its own process unless the launch asks for more processes.

Dagster's default executor starts a new Python process for every step. Each one imports Dagster and
this project again (about 2.7 s on the 2-core bench machine) and reads its inputs back from the lake.
That only pays when a run has independent, CPU-heavy steps ready at the same time, and our runs don't:

* every job is a chain. ``klines_job`` is bronze -> silver, ``klines_filled_job`` is one multi-asset
  (filled + gaps), ``gold_job`` is resampled -> features (features reads the resampled bars), and
  ``funding_job`` is bronze -> silver. One step is ready at a time, so a process per step overlaps
  nothing and only adds its start-up.
* the work that is heavy already runs in parallel inside a step: archive downloads on a thread pool
  with their pool limit, Polars and DuckDB on every core.
* backfills, the UI's "Materialize", sensors, schedules and automation run the implicit asset job, which
  takes the code location's default executor (``defs`` below). Its runs cover a day or a backfill range
  of the same chains, plus small checks.

Measured (BENCHMARKS.md, "Launched as Dagster launches it"): a symbol-year backfill of bronze -> silver
took several times longer with a process per step than in one process.

A run that does have independent heavy steps (say the whole graph for hundreds of symbols on a machine
with cores to spare) can still ask for them, in the launchpad's run config::

    execution:
      config:
        multiprocess:
          max_concurrent: 4
"""

from __future__ import annotations

import dagster as dg

_DAGSTER_DEFAULT = dg.multi_or_in_process_executor

#: Dagster's own ``multi_or_in_process_executor`` (same config, same two modes) with ``in_process`` as
#: the default instead of ``multiprocess``.
in_process_unless_configured = dg.ExecutorDefinition(
    name="in_process_unless_configured",
    config_schema=dg.Field(_DAGSTER_DEFAULT.config_schema.config_type, default_value={"in_process": {}},
                           is_required=False),
    executor_creation_fn=_DAGSTER_DEFAULT.executor_creation_fn,
    requirements=_DAGSTER_DEFAULT.get_requirements,
    description="All steps of a run in the run's own process (the default here), or one process per step "
    "with `execution: {config: {multiprocess: {max_concurrent: N}}}`.",
)


@dg.definitions
def default_executor() -> dg.Definitions:
    """The executor of every job that does not name its own, including the implicit asset job."""
    return dg.Definitions(executor=in_process_unless_configured)
