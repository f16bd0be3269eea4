"""Lookback inputs: a partition reads N daily partitions of an upstream table before its own days,
without Dagster counting those days as dependencies of a backfill.

Why not ``dg.TimeWindowPartitionMapping(start_offset=-N)`` on the input, as gold/features had: Dagster
uses a partition mapping in both directions. Upstream it says what a run reads, which is the lookback;
downstream it says which partitions depend on an upstream day, and a backfill launched from the UI
(partition names + asset selection: ``AssetBackfillData.from_asset_partitions``) targets every partition
reachable from the selected days through the mappings between the selected assets. A backfill of
gold/klines_resampled and gold/features over [a, b] then also targeted features b+1 … b+N, whose own
resampled days are outside the backfill and absent: those runs failed. No built-in mapping is a window
upstream and the identity downstream, and a custom ``PartitionMapping`` is deprecated by Dagster and left
out of the code location's snapshot, so the webserver and the daemon would silently use another mapping
than the runs.

So the asset graph carries only the hard dependency, the asset's own days (the default mapping, the
identity in time), which is what backfills, the UI and the daemon see. The window is a property of the
input and of the automation, both defined here from the same ``lookback_mapping``:

* runs: the input's metadata ``LOOKBACK_KEY: N`` (``lake/io_manager.py``); the IO manager also reads the
  ``lookback_keys`` before the days Dagster maps, the days this mapping would have added;
* automation: ``with_lookback(condition, {key: N})`` swaps the condition's dependency terms
  (``any_deps_updated``/``_missing``/``_in_progress``) for ones that map each listed dependency through the
  window, so a lookback day that is updated, missing or in progress counts exactly as it did when the window
  was the graph's mapping (evaluated in the code server: ``lakehouse_automation`` has
  ``use_user_code_server=True``, which Python-defined conditions need).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

# Internal: how Dagster's own conditions build a subset of another asset (an evaluation result must hold one).
from dagster._core.asset_graph_view.entity_subset import EntitySubset, _ValidatedEntitySubsetValue

__all__ = ["LookbackDepsCondition", "lookback_keys", "lookback_mapping", "with_lookback"]

# The dependency terms of a condition (follow_upstream, eager, ...) that with_lookback replaces, by the label
# Dagster gives them; each keeps its operand (what counts as "updated", "missing", "in progress").
_DEPS_TERMS = {
    "any_deps_updated": dg.AutomationCondition.any_deps_updated,
    "any_deps_missing": dg.AutomationCondition.any_deps_missing,
    "any_deps_in_progress": dg.AutomationCondition.any_deps_in_progress,
}


def lookback_mapping(days: int) -> dg.TimeWindowPartitionMapping:
    """A partition's own days and the ``days`` before them; days before the upstream's first partition
    do not exist and are left out (the history starts there)."""
    return dg.TimeWindowPartitionMapping(start_offset=-days, allow_nonexistent_upstream_partitions=True)


def lookback_keys(partitions_def: dg.PartitionsDefinition, keys: Sequence[str], days: int) -> list[str]:
    """``keys`` (partitions of ``partitions_def``) and the ``days`` partitions before them that exist, in order."""
    if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        raise dg.DagsterInvariantViolationError(
            f"a lookback needs time-window partitions, not {type(partitions_def).__name__}"
        )
    if not keys or days == 0:
        return list(keys)
    mapped = lookback_mapping(days).get_upstream_mapped_partitions_result_for_partitions(
        partitions_def.subset_with_partition_keys(keys), partitions_def, partitions_def
    )
    return list(mapped.partitions_subset.get_partition_keys())


def with_lookback(condition: dg.AutomationCondition, lookbacks: Mapping[dg.AssetKey, int]) -> dg.AutomationCondition:
    """``condition`` with its dependency terms mapping the ``lookbacks`` dependencies through their window."""
    replaced = condition
    for label, builtin in _DEPS_TERMS.items():
        term = builtin()
        replaced = replaced.replace(label, LookbackDepsCondition(term.operand, lookbacks, label=f"{label} (lookback)"))
    if replaced == condition:
        raise ValueError(f"{condition.get_label() or condition.name} has no dependency term to give a lookback to")
    return replaced


class LookbackDepsCondition(dg.AutomationCondition):
    """Dagster's ``any_deps_match(operand)``, except that a dependency listed in ``lookbacks`` is mapped
    through ``lookback_mapping(N)`` instead of the asset graph's mapping: a partition is true when
    ``operand`` holds for any of that dependency's partitions in its window (own days and N before)."""

    def __init__(self, operand: dg.AutomationCondition, lookbacks: Mapping[dg.AssetKey, int], *, label: str) -> None:
        self.operand = operand
        self.lookbacks = dict(lookbacks)
        self.label = label

    @property
    def name(self) -> str:
        return "ANY_DEPS_MATCH_WITH_LOOKBACK"

    @property
    def description(self) -> str:
        return "any dependency, read with its lookback (" + ", ".join(
            f"{key.to_user_string()}: {days} d" for key, days in sorted(self.lookbacks.items())
        ) + ")"

    @property
    def operator_type(self) -> str:  # type: ignore[override]
        return "or"

    @property
    def children(self) -> Sequence[dg.AutomationCondition]:
        return [self.operand]

    @property
    def requires_cursor(self) -> bool:
        return False

    def get_label(self) -> str | None:
        return self.label

    async def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:  # type: ignore[override]
        results = []
        true_subset = context.get_empty_subset()
        parents = sorted(k for k in context.asset_graph.get(context.key).parent_entity_keys if isinstance(k, dg.AssetKey))
        for i, dep in enumerate(parents):
            child = _DepWindowMatches(dep, self.lookbacks.get(dep), self.operand)
            result = await context.for_child_condition(
                child_condition=child, child_indices=[i], candidate_subset=context.candidate_subset
            ).evaluate_async()
            results.append(result)
            true_subset = true_subset.compute_union(result.true_subset)
        return dg.AutomationResult(
            context=context,
            true_subset=context.candidate_subset.compute_intersection(true_subset),
            child_results=results,
        )


class _DepWindowMatches(dg.AutomationCondition):
    """``operand`` evaluated on dependency ``key``, mapped up from the candidates and the result back down
    (as Dagster's per-dependency condition does), through the window when ``days`` is set, else through the
    asset graph's mapping."""

    def __init__(self, key: dg.AssetKey, days: int | None, operand: dg.AutomationCondition) -> None:
        if days is not None and days < 0:
            raise ValueError(f"lookback of {key.to_user_string()}: a number of days >= 0, not {days}")
        self.key, self.days, self.operand = key, days, operand

    @property
    def name(self) -> str:
        return self.key.to_user_string() + ("" if self.days is None else f" (lookback {self.days} d)")

    @property
    def children(self) -> Sequence[dg.AutomationCondition]:
        return [self.operand]

    @property
    def requires_cursor(self) -> bool:
        return False

    async def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:  # type: ignore[override]
        if self.days is None:
            up = context.candidate_subset.compute_mapped_subset(self.key, direction="up")
        else:
            up = self._mapped(context, context.candidate_subset, self.days, upstream=True)
        result = await context.for_child_condition(
            child_condition=self.operand, child_indices=[0], candidate_subset=up
        ).evaluate_async()
        if self.days is None:
            down = result.true_subset.compute_mapped_subset(context.key, direction="down")
        else:
            down = self._mapped(context, result.true_subset, self.days, upstream=False)
        return dg.AutomationResult(context=context, true_subset=down, child_results=[result])

    def _mapped(self, context: dg.AutomationContext, subset: EntitySubset, days: int, *, upstream: bool) -> EntitySubset:
        """``subset`` mapped to the dependency (``upstream``) or back to the asset through the window."""
        own_def = context.asset_graph.get(context.key).partitions_def
        dep_def = context.asset_graph.get(self.key).partitions_def
        if not isinstance(own_def, dg.TimeWindowPartitionsDefinition) or not isinstance(
            dep_def, dg.TimeWindowPartitionsDefinition
        ):
            raise dg.DagsterInvariantViolationError(
                f"lookback of {context.key.to_user_string()} on {self.key.to_user_string()}: "
                "both need time-window partitions"
            )
        mapping = lookback_mapping(days)
        # partitions as they exist at the evaluation time, as Dagster maps a subset through the graph's mapping
        with dg.partition_loading_context(effective_dt=context.evaluation_time):
            if upstream:
                value = mapping.get_upstream_mapped_partitions_result_for_partitions(
                    subset.get_internal_subset_value(), own_def, dep_def
                ).partitions_subset
            else:
                value = mapping.get_downstream_partitions_for_partitions(
                    subset.get_internal_subset_value(), dep_def, own_def
                )
        return EntitySubset(
            context.asset_graph_view,
            key=self.key if upstream else context.key,
            value=_ValidatedEntitySubsetValue(value),
        )
