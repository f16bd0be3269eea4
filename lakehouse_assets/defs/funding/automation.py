"""What keeps the funding tables current. Both ship RUNNING.

* ``funding_archive_sensor`` watches the monthly fundingRate files of the configured futures over the
  last LAKEHOUSE_FUNDING_SENSOR_DAYS days; when a month lands (or is re-published) it requests those
  days again, so the REST rows they held are replaced by the archive's.
* ``funding_daily`` (00:20 UTC) requests the day that just ended (REST until its month is published).

Silver and gold follow bronze through ``lakehouse_automation`` (``defs/operations.py``).
"""

from __future__ import annotations

import dagster as dg

from lakehouse_assets import settings
from lakehouse_assets.archive.watch import ArchiveFeed
from lakehouse_assets.defs.common import sensors
from lakehouse_assets.defs.common.keys import BRONZE_FUNDING
from lakehouse_assets.funding.ingest import funding_month_path
from lakehouse_assets.funding.schema import month_of
from lakehouse_assets.instruments import futures_only

FUNDING_SENSOR_DAYS: int = settings.get("LAKEHOUSE_FUNDING_SENSOR_DAYS")
FUNDING_DAILY_CRON: str = settings.get("LAKEHOUSE_FUNDING_DAILY_CRON")

# The monthly funding file of each day's month: days sharing a month share one probe, and a new or
# re-published month re-requests all its watched days.
FUNDING_MONTHLY_FEED = ArchiveFeed(
    name="funding_monthly",
    path_for=lambda inst, day: funding_month_path(inst, month_of(day)),
    lookback_days=FUNDING_SENSOR_DAYS,
)

funding_archive_sensor = sensors.build_archive_sensor(
    FUNDING_MONTHLY_FEED,
    BRONZE_FUNDING,
    name="funding_archive_sensor",
    instruments=lambda u: futures_only(u.instruments()),
)


@dg.schedule(
    name="funding_daily",
    cron_schedule=FUNDING_DAILY_CRON,
    execution_timezone="UTC",
    target=dg.AssetSelection.assets(BRONZE_FUNDING),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="00:20 UTC: requests the funding of the day that just ended (from REST until its month's archive "
    "lands; funding_archive_sensor then re-requests it). Silver and gold follow through the automation.",
)
def funding_daily(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    scheduled = context.scheduled_execution_time or sensors.utc_now()
    day = sensors.latest_complete_day(scheduled)
    if day < sensors.first_day():
        return []
    return [
        dg.RunRequest(
            run_key=f"funding_daily:{day.isoformat()}",
            partition_key=day.isoformat(),
            tags=sensors.scheduled_run_tags("funding_daily"),
        )
    ]
