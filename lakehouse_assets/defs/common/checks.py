"""One way to turn a quality outcome into what the UI shows, and to refuse a write it blocks.

Every layer validates *before* writing: the check results are yielded (so the UI records them with
their failing rows), and a failed blocking rule then fails the step without retry, so bad rows are
never persisted and downstream does not run.
"""

import dagster as dg
import polars as pl

from lakehouse_assets.defs.common.metadata import md_table
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.lake.chunks import Chunk
from lakehouse_assets.lake.layout import day_ranges
from lakehouse_assets.quality import CheckOutcome


def check_result(
    outcome: CheckOutcome,
    *,
    asset_key: dg.AssetKey | None = None,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=severity,
        description=outcome.description,
        metadata={
            "failing_rows": outcome.failures.height,
            "failures_by_day": md_table(outcome.failures_by_day),
            "sample_failures": md_table(outcome.failures, limit=20),
        },
    )


def chunks_written(written: list[Chunk[Instrument]], chunks: int) -> str | None:
    """For a blocked run of several chunks (``lake/chunks.py``): which instrument-days were written all the
    same, for ``raise_if_blocked(written=...)``. None for a run of one chunk (nothing was written)."""
    if chunks == 1 or not written:
        return None

    def listed(keys: list[str]) -> str:
        return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

    parts = [
        f"{listed([i.key for i in c.instruments])} ({day_ranges([d.isoformat() for d in c.days])})"
        for c in written[:10]
    ]
    more = f"; ... ({len(written) - 10} more chunks)" if len(written) > 10 else ""
    return (
        f"{len(written)} of {chunks} chunks passed every check and were written (their instrument-days "
        f"are complete, checked data): {'; '.join(parts)}{more}"
    )


def raise_if_blocked(table: str, outcomes: list[CheckOutcome], *, written: str | None = None) -> None:
    """Fail the step naming, per failed rule, the days and instruments affected (a range run has one check
    evaluation, so the message is where a user reads which day to fix). ``written``: for a run processed in
    chunks (``lake/chunks.py``), which chunks passed and were written before the step failed."""
    failed = [o for o in outcomes if not o.passed]
    if not failed:
        return
    lines = []
    for outcome in failed:
        where = ", ".join(
            f"{r['date']} {r['market']}:{r['symbol']} ({r['failing_rows']} rows)"
            for r in outcome.failures_by_day.head(10).iter_rows(named=True)
        )
        rules = ""
        if "rule" in outcome.failures.columns:
            rules = ", ".join(sorted(set(outcome.failures["rule"].cast(pl.String).drop_nulls().to_list()))[:5])
        lines.append(f"{outcome.name} [{rules}]: {where or 'frame-wide failure'}")
    raise dg.Failure(
        description=f"{table} not written: blocking checks failed\n" + "\n".join(lines)
        + (f"\nThe failing chunks wrote nothing; {written}" if written else ""),
        metadata={o.name: md_table(o.failures, limit=20) for o in failed},
        allow_retries=False,
    )
