"""One daily UTC partitioning shared by every layer, and how backfills are cut into runs."""

from __future__ import annotations

import os
from datetime import date

import dagster as dg

DEFAULT_START_DATE = "2020-01-01"
DEFAULT_DAYS_PER_RUN = 31

START_DATE = os.environ.get("LAKEHOUSE_START_DATE") or DEFAULT_START_DATE

# end_offset=0: the newest partition is yesterday (UTC), the last day Binance can have archived.
daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC", end_offset=0)

# Assets that can hold REST data for the UTC day still running (silver/klines_filled, silver/kline_gaps)
# also have TODAY's partition (end_offset=1): only closed bars are stored, so re-materializing today
# during the day adds the newest closed bars. Archive layers keep end_offset=0: Binance publishes T+1.
daily_partitions_with_today = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC", end_offset=1)

# A year-long backfill becomes ~12 runs of up to a month each, not 365 processes. Every layer uses
# the same policy because Dagster falls back to the smallest one for assets sharing a job.
DAYS_PER_RUN = int(os.environ.get("LAKEHOUSE_DAYS_PER_RUN") or DEFAULT_DAYS_PER_RUN)
range_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN)


def window_days(context: dg.AssetExecutionContext) -> list[date]:
    """The UTC days this run covers: one partition or a whole backfill range."""
    return [date.fromisoformat(key) for key in context.partition_keys]
