"""What keeps the kline tables current without anyone watching. Everything here ships RUNNING.

* ``klines_archive_sensor``: requests bronze/klines_archive for a day as soon as its 1m files are in
  the archive, when a late file arrives, and when Binance re-publishes one (``build_archive_sensor``).
* ``lakehouse_daily``: a schedule at 00:15 UTC, the safety net if the sensor missed anything. It
  requests the day that just ended (its archive is not out yet, so the gap-fill layer serves it
  from REST) and the day before (whose archive is final by now).
* ``lakehouse_today``: hourly, today's REST-only partition of ``silver/klines_filled``.
* ``silver_klines_freshness`` (check ``freshness``, WARN): some instrument's newest candle is > 36 h old.

Silver, gap-fill and gold follow bronze through ``lakehouse_automation`` (``defs/operations.py``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from lakehouse_assets import settings
from lakehouse_assets.archive.watch import ArchiveFeed
from lakehouse_assets.defs.common import sensors
from lakehouse_assets.defs.common.keys import BRONZE_KLINES, KLINE_GAPS, KLINES_FILLED, SILVER_KLINES

# Settings are read (and all checked) once, when the code location loads: see settings.py.
ARCHIVE_SENSOR_DAYS: int = settings.get("LAKEHOUSE_ARCHIVE_SENSOR_DAYS")
DAILY_CRON: str = settings.get("LAKEHOUSE_DAILY_CRON")
TODAY_CRON: str = settings.get("LAKEHOUSE_TODAY_CRON")

KLINES_1M_FEED = ArchiveFeed(
    name="klines_1m",
    path_for=lambda inst, day: inst.daily_klines_path("1m", day),
    lookback_days=ARCHIVE_SENSOR_DAYS,
    # ".../BTCUSDT-1m-2024-03": the month's daily files, one listing page however long the symbol's history
    listing_prefix=lambda inst, day: inst.daily_klines_path("1m", day).removesuffix(f"-{day:%d}.zip"),
)

klines_archive_sensor = sensors.build_archive_sensor(KLINES_1M_FEED, BRONZE_KLINES, name="klines_archive_sensor")


def daily_partitions_to_request(scheduled: datetime) -> list[date]:
    """The day that just ended (REST-only until its archive lands) and the day before (final)."""
    latest = sensors.latest_complete_day(scheduled)
    return [d for d in (latest, latest - timedelta(days=1)) if d >= sensors.first_day()]


@dg.schedule(
    name="lakehouse_daily",
    cron_schedule=DAILY_CRON,
    execution_timezone="UTC",
    target=dg.AssetSelection.assets(BRONZE_KLINES),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Safety net at 00:15 UTC: requests the day that just ended (not in the archive yet; downstream gap-fill "
        "serves it from REST) and the day before (its archive is final by now). Silver and everything downstream "
        "follow through `lakehouse_automation`."
    ),
)
def lakehouse_daily(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    scheduled = context.scheduled_execution_time or sensors.utc_now()
    tick = scheduled.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    return [
        dg.RunRequest(
            run_key=f"lakehouse_daily:{tick}:{day.isoformat()}",
            partition_key=day.isoformat(),
            tags=sensors.scheduled_run_tags("lakehouse_daily"),
        )
        for day in daily_partitions_to_request(scheduled)
    ]


@dg.schedule(
    name="lakehouse_today",
    cron_schedule=TODAY_CRON,
    execution_timezone="UTC",
    target=dg.AssetSelection.assets(KLINES_FILLED, KLINE_GAPS),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Hourly at :05 UTC: today's REST-only partition of silver/klines_filled (and its gaps), so the running "
        "UTC day holds every bar closed so far. No archive exists for today; automation cannot see it."
    ),
)
def lakehouse_today(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return sensors.todays_partition_request(context, "lakehouse_today")


silver_klines_freshness = sensors.build_freshness_check(SILVER_KLINES, max_age=sensors.FRESHNESS_MAX_AGE)
