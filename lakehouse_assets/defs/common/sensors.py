"""What every domain's automation is built from: the clock, run tags, the archive sensor and the freshness check.

* ``build_archive_sensor``: a RUNNING sensor that lists the archive's bucket for the last few days'
  files of every configured instrument (size, ETag and Last-Modified of each zip and its CHECKSUM;
  no file is downloaded or probed) and requests that day's bronze partition as soon as its files
  are listed, again when a late file arrives, and again when Binance re-publishes a file (its
  listing entry changes; see ``archive/watch.py``). Klines and funding each
  build one (``defs/klines/automation.py``, ``defs/funding/automation.py``).
* ``build_freshness_check``: a WARN check, run hourly, that some instrument's newest row is too old.
* ``utc_now``: the clock every sensor and schedule reads (tests freeze it here).
* Run tags: runs started by sensors and schedules carry ``dagster/priority=10`` (automation: 5), so
  the run queue serves them before queued backfill runs (priority 0); see dagster.yaml for the limits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from lakehouse_assets import settings
from lakehouse_assets.archive.listing import ArchiveListing
from lakehouse_assets.archive.watch import ArchiveFeed, listing_probe, plan_requests, watched_days
from lakehouse_assets.defs.common.keys import FRESHNESS_CHECK
from lakehouse_assets.defs.common.metadata import md_table
from lakehouse_assets.defs.common.partitions import START_DATE
from lakehouse_assets.defs.resources import BinanceArchiveResource, LakeResource, UniverseResource
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.lake.freshness import freshness_report
from lakehouse_assets.lake.io_manager import table_prefix

PRIORITY_TAG = "dagster/priority"
TRIGGER_TAG = "lakehouse/trigger"
SCHEDULED_PRIORITY = "10"
AUTOMATION_PRIORITY = "5"

# Settings are read (and all checked) once, when the code location loads: see settings.py.
ARCHIVE_SENSOR_INTERVAL: int = settings.get("LAKEHOUSE_ARCHIVE_SENSOR_INTERVAL_SECONDS")
#: Total time for one listing page during a sensor tick; the archive deadline if shorter.
SENSOR_PROBE_DEADLINE_SECONDS = 15.0
FRESHNESS_CRON = "0 * * * *"
FRESHNESS_MAX_AGE = timedelta(hours=settings.get("LAKEHOUSE_FRESHNESS_MAX_AGE_HOURS"))


# --------------------------------------------------------------------------- clock and tags


def utc_now() -> datetime:
    """The sensors' clock (tests freeze it)."""
    return datetime.now(UTC)


def latest_complete_day(now: datetime) -> date:
    """The newest daily partition at ``now``: yesterday in UTC (``end_offset=0``)."""
    return now.astimezone(UTC).date() - timedelta(days=1)


def first_day() -> date:
    return date.fromisoformat(START_DATE)


def scheduled_run_tags(trigger: str) -> dict[str, str]:
    """Tags of a run a sensor or schedule starts: served before backfills, and saying who started it."""
    return {PRIORITY_TAG: SCHEDULED_PRIORITY, TRIGGER_TAG: trigger}


# --------------------------------------------------------------------------- new-archive sensor


def todays_partition_request(context: dg.ScheduleEvaluationContext, name: str) -> dg.RunRequest:
    """The run a daily-at-a-time schedule asks for: the UTC day it fires on (keyed by its minute, so a
    tick evaluated twice launches once), tagged like every scheduled run."""
    scheduled = (context.scheduled_execution_time or utc_now()).astimezone(UTC)
    return dg.RunRequest(
        run_key=f"{name}:{scheduled:%Y-%m-%dT%H:%M}",
        partition_key=scheduled.date().isoformat(),
        tags=scheduled_run_tags(name),
    )


def build_archive_sensor(
    feed: ArchiveFeed,
    asset_key: dg.AssetKey,
    *,
    name: str,
    instruments: Callable[[UniverseResource], list[Instrument]] = lambda u: u.instruments(),
) -> dg.SensorDefinition:
    """A RUNNING sensor requesting ``asset_key``'s daily partition whenever ``feed``'s files for it change.

    Other bronze assets (e.g. a funding archive) get their own sensor with one call.
    """

    @dg.sensor(
        name=name,
        target=dg.AssetSelection.assets(asset_key),
        minimum_interval_seconds=ARCHIVE_SENSOR_INTERVAL,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Lists the archive's bucket for the last {feed.lookback_days} days of `{feed.name}` files of every "
            f"configured instrument and requests `{asset_key.to_user_string()}` for a day as soon as its files are "
            "listed, when a late file arrives, and when a file is re-published (its size, ETag or Last-Modified "
            "changes). No file is downloaded. Cursor: each file's listing entry."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext, archive: BinanceArchiveResource, universe: UniverseResource
    ) -> dg.SensorResult:
        now = utc_now()
        days = watched_days(latest_complete_day(now), feed.lookback_days, first_day())
        universe_instruments = instruments(universe)
        # Short timeouts, a short deadline and few attempts: a sensor tick must finish well within
        # Dagster's 60 s limit (one listing page per instrument and prefix).
        with ArchiveListing(
            archive.resolved_listing_url(),
            timeout=min(archive.timeout_seconds, 10.0),
            connect_timeout=min(archive.connect_timeout_seconds, 10.0),
            deadline_seconds=min(archive.deadline_seconds, SENSOR_PROBE_DEADLINE_SECONDS),
            max_attempts=2,
            backoff_seconds=0.5,
        ) as listing:
            prefixes = {feed.prefix_for(inst, day) for inst in universe_instruments for day in days}
            probe = listing_probe(listing, prefixes, max_workers=archive.max_workers)
            result = plan_requests(feed, universe_instruments, days, probe, context.cursor)
        for path, error in sorted(result.probe_errors.items()):
            context.log.warning(f"could not list {path}: {error} (will look again next tick)")
        run_requests = [
            dg.RunRequest(
                run_key=req.run_key,
                partition_key=req.day.isoformat(),
                tags={
                    **scheduled_run_tags(f"{name}: {len(req.changed)} new/changed file(s)"),
                    "lakehouse/archive_files": f"{req.present}/{req.expected}",
                },
            )
            for req in result.requests
        ]
        skip = None
        if not run_requests:
            skip = (
                f"no new or re-published files for {', '.join(d.isoformat() for d in days)}"
                + (f"; {len(result.probe_errors)} file(s) could not be listed" if result.probe_errors else "")
            )
        return dg.SensorResult(run_requests=run_requests, cursor=result.cursor, skip_reason=skip)

    return _sensor


# --------------------------------------------------------------------------- freshness


def build_freshness_check(
    asset_key: dg.AssetKey,
    *,
    max_age: timedelta = FRESHNESS_MAX_AGE,
    time_column: str = "close_time",
    name: str = FRESHNESS_CHECK,
) -> dg.AssetChecksDefinition:
    """A WARN check, run hourly by ``lakehouse_automation``: is every instrument's newest row recent enough?"""
    hours = max_age / timedelta(hours=1)

    @dg.asset_check(
        asset=asset_key,
        name=name,
        blocking=False,
        automation_condition=dg.AutomationCondition.cron_tick_passed(FRESHNESS_CRON),
        description=(
            f"WARN when any configured instrument's newest `{time_column}` in the newest partitions is more than "
            f"{hours:g} h old (or it has no recent data at all). Runs hourly."
        ),
    )
    def _check(lake: LakeResource, universe: UniverseResource) -> dg.AssetCheckResult:
        now = utc_now()
        # point in time: an instrument delisted (or not listed yet) has no fresh data to expect
        instruments = universe.daily([latest_complete_day(now)]).active
        report = freshness_report(
            lake.store(), table_prefix(asset_key), instruments, now, max_age=max_age, time_column=time_column
        )
        stale = report.filter("stale")
        newest = report["newest_data"].drop_nulls()
        worst = report["age_hours"].max()
        return dg.AssetCheckResult(
            passed=stale.height == 0,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"{stale.height} of {report.height} instrument(s) older than {hours:g} h: "
                + ", ".join(f"{r['market']}:{r['symbol']}" for r in stale.iter_rows(named=True))
                if stale.height
                else f"all {report.height} instrument(s) have data newer than {hours:g} h"
            ),
            metadata={
                "checked_at": now.isoformat(timespec="seconds"),
                "max_age_hours": hours,
                "stale_instruments": stale.height,
                "oldest_age_hours": float(worst) if worst is not None else -1.0,
                "newest_data": newest.max().isoformat() if newest.len() else "none",
                "per_instrument": md_table(report),
            },
        )

    return _check
