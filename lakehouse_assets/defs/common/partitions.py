"""One daily UTC partitioning shared by every layer, and how backfills are cut into runs."""

from __future__ import annotations

from datetime import date

import dagster as dg

from lakehouse_assets import settings

DEFAULT_START_DATE = "2020-01-01"

# Every asset and automation module imports this one, so ALL settings are checked here, when the code
# location loads: a code server that cannot load shows the full list in the UI, and a run worker or
# step process with a bad setting stops before any step starts (so nothing is written, and nothing is
# retried: the multiprocess executor would re-run a step whose resources failed to initialize).
_SETTINGS = settings.current()

START_DATE: str = _SETTINGS["LAKEHOUSE_START_DATE"]

# end_offset=0: the newest partition is yesterday (UTC), the last day Binance can have archived.
daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC", end_offset=0)

# Assets that can hold REST data for the UTC day still running (silver/klines_filled, silver/kline_gaps)
# also have TODAY's partition (end_offset=1): only closed bars are stored, so re-materializing today
# during the day adds the newest closed bars. Archive layers keep end_offset=0: Binance publishes T+1.
daily_partitions_with_today = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC", end_offset=1)

# A year-long backfill is ONE run, not 365 processes: a run's memory is bounded by its chunks
# (lake/chunks.py), not by its days, and each run costs a run worker ~3 s of start-up and imports,
# which 31-day runs paid 12 times a year (10x the work of a one-symbol year; README, Backfills). Every
# layer uses the same policy because Dagster falls back to the smallest one for assets sharing a job.
DAYS_PER_RUN: int = _SETTINGS["LAKEHOUSE_DAYS_PER_RUN"]  # >= 1: 0 would make Dagster's range splitter loop forever
range_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN)


def window_days(context: dg.AssetExecutionContext) -> list[date]:
    """The UTC days this run covers: one partition or a whole backfill range."""
    return [date.fromisoformat(key) for key in context.partition_keys]
