"""What keeps the lake current without anyone watching. Everything here ships RUNNING.

* ``klines_archive_sensor``: probes the archive for the last few days' files of every configured
  instrument (the ``.CHECKSUM`` sha256, or HEAD headers) and requests that day's bronze partition
  as soon as its files exist, again when a late file arrives, and again when Binance re-publishes
  a file with a new sha256 (see ``archive_watch``).
* ``lakehouse_daily``: a schedule at 00:15 UTC, the safety net if the sensor missed anything. It
  requests the day that just ended (its archive is not out yet, so the gap-fill layer serves it
  from REST) and the day before (whose archive is final by now).
* ``lakehouse_today``: hourly, today's REST-only partition of ``silver/klines_filled``.
* ``lakehouse_automation``: declarative automation for every non-bronze asset. Assets without a
  condition of their own get ``follow_upstream()``: re-materialize a partition when an upstream
  partition it reads was updated, within the last ``LAKEHOUSE_AUTOMATION_LOOKBACK_DAYS``. New
  downstream assets (gold, features, …) follow with no change here.
* ``lakehouse_failure_alerts``: every failed run is posted to ``LAKEHOUSE_ALERT_WEBHOOK_URL``.
* ``freshness`` check on ``silver/klines`` (WARN): some instrument's newest candle is > 36 h old.

Runs started by the sensor and the schedule carry ``dagster/priority=10`` (automation: 5), so the
run queue serves them before queued backfill runs (priority 0); see dagster.yaml for the limits.
"""

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from lakehouse_assets import settings
from lakehouse_assets.alerts import FailedRun, build_payload, post_alert
from lakehouse_assets.archive.client import ArchiveClient
from lakehouse_assets.archive.watch import ArchiveFeed, fingerprint, plan_requests, watched_days
from lakehouse_assets.lake.freshness import DEFAULT_MAX_AGE, freshness_report
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.lake.io_manager import table_prefix
from lakehouse_assets.defs.common.partitions import START_DATE
from lakehouse_assets.defs.common.resources import AlertWebhookResource, BinanceArchiveResource, LakeResource, UniverseResource
from lakehouse_assets.defs.common.metadata import markdown_table

BRONZE_KLINES = dg.AssetKey(["bronze", "klines_archive"])
SILVER_KLINES = dg.AssetKey(["silver", "klines"])

PRIORITY_TAG = "dagster/priority"
TRIGGER_TAG = "lakehouse/trigger"
SCHEDULED_PRIORITY = "10"
AUTOMATION_PRIORITY = "5"

# Settings are read (and all checked) once, when the code location loads: see settings.py.
ARCHIVE_SENSOR_DAYS: int = settings.get("LAKEHOUSE_ARCHIVE_SENSOR_DAYS")
ARCHIVE_SENSOR_INTERVAL: int = settings.get("LAKEHOUSE_ARCHIVE_SENSOR_INTERVAL_SECONDS")
#: Total time for one probe (CHECKSUM GET or HEAD) during a sensor tick; the archive deadline if shorter.
SENSOR_PROBE_DEADLINE_SECONDS = 15.0
AUTOMATION_LOOKBACK_DAYS: int = settings.get("LAKEHOUSE_AUTOMATION_LOOKBACK_DAYS")
DAILY_CRON: str = settings.get("LAKEHOUSE_DAILY_CRON")
FRESHNESS_CRON = "0 * * * *"
FRESHNESS_MAX_AGE = timedelta(hours=settings.get("LAKEHOUSE_FRESHNESS_MAX_AGE_HOURS"))


def utc_now() -> datetime:
    """The sensors' clock (tests freeze it)."""
    return datetime.now(UTC)


def latest_complete_day(now: datetime) -> date:
    """The newest daily partition at ``now``: yesterday in UTC (``end_offset=0``)."""
    return now.astimezone(UTC).date() - timedelta(days=1)


def first_day() -> date:
    return date.fromisoformat(START_DATE)


# --------------------------------------------------------------------------- new-archive sensor

KLINES_1M_FEED = ArchiveFeed(
    name="klines_1m",
    path_for=lambda inst, day: inst.daily_klines_path("1m", day),
    lookback_days=ARCHIVE_SENSOR_DAYS,
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
            f"Probes the archive for the last {feed.lookback_days} days of `{feed.name}` files of every configured "
            f"instrument and requests `{asset_key.to_user_string()}` for a day as soon as its files exist, when a late "
            "file arrives, and when a file is re-published with a new sha256. Cursor: the fingerprint of each file."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext, archive: BinanceArchiveResource, universe: UniverseResource
    ) -> dg.SensorResult:
        now = utc_now()
        days = watched_days(latest_complete_day(now), feed.lookback_days, first_day())
        universe_instruments = instruments(universe)
        # Short timeouts, a short deadline and few attempts: a sensor tick must finish well within
        # Dagster's 60 s limit (HEAD and CHECKSUM probes are tiny).
        with ArchiveClient(
            archive.base_url,
            timeout=min(archive.timeout_seconds, 10.0),
            connect_timeout=min(archive.connect_timeout_seconds, 10.0),
            deadline_seconds=min(archive.deadline_seconds, SENSOR_PROBE_DEADLINE_SECONDS),
            max_attempts=2,
            backoff_seconds=0.5,
        ) as client:
            result = plan_requests(
                feed, universe_instruments, days, lambda path: fingerprint(client, path), context.cursor
            )
        for path, error in sorted(result.probe_errors.items()):
            context.log.warning(f"could not probe {path}: {error} (will look again next tick)")
        run_requests = [
            dg.RunRequest(
                run_key=req.run_key,
                partition_key=req.day.isoformat(),
                tags={
                    PRIORITY_TAG: SCHEDULED_PRIORITY,
                    TRIGGER_TAG: f"{name}: {len(req.changed)} new/changed file(s)",
                    "lakehouse/archive_files": f"{req.present}/{req.expected}",
                },
            )
            for req in result.requests
        ]
        skip = None
        if not run_requests:
            skip = (
                f"no new or re-published files for {', '.join(d.isoformat() for d in days)}"
                + (f"; {len(result.probe_errors)} probe(s) failed" if result.probe_errors else "")
            )
        return dg.SensorResult(run_requests=run_requests, cursor=result.cursor, skip_reason=skip)

    return _sensor


klines_archive_sensor = build_archive_sensor(KLINES_1M_FEED, BRONZE_KLINES, name="klines_archive_sensor")


# --------------------------------------------------------------------------- daily safety net


def daily_partitions_to_request(scheduled: datetime) -> list[date]:
    """The day that just ended (REST-only until its archive lands) and the day before (final)."""
    latest = latest_complete_day(scheduled)
    return [d for d in (latest, latest - timedelta(days=1)) if d >= first_day()]


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
    scheduled = context.scheduled_execution_time or utc_now()
    tick = scheduled.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    return [
        dg.RunRequest(
            run_key=f"lakehouse_daily:{tick}:{day.isoformat()}",
            partition_key=day.isoformat(),
            tags={PRIORITY_TAG: SCHEDULED_PRIORITY, TRIGGER_TAG: "lakehouse_daily"},
        )
        for day in daily_partitions_to_request(scheduled)
    ]


KLINES_FILLED = dg.AssetKey(["silver", "klines_filled"])
KLINE_GAPS = dg.AssetKey(["silver", "kline_gaps"])
TODAY_CRON: str = settings.get("LAKEHOUSE_TODAY_CRON")


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
    scheduled = (context.scheduled_execution_time or utc_now()).astimezone(UTC)
    return dg.RunRequest(
        run_key=f"lakehouse_today:{scheduled:%Y-%m-%dT%H:%M}",
        partition_key=scheduled.date().isoformat(),
        tags={PRIORITY_TAG: SCHEDULED_PRIORITY, TRIGGER_TAG: "lakehouse_today"},
    )


# --------------------------------------------------------------------------- declarative automation


def follow_upstream(lookback_days: int = AUTOMATION_LOOKBACK_DAYS) -> dg.AutomationCondition:
    """Like ``AutomationCondition.eager()``, but for every partition of the last ``lookback_days``.

    ``eager()`` only looks at the newest partition, so a late or re-published archive for an older
    day would never reach silver or gold. Here any partition within the window whose upstream
    partitions were updated is re-materialized once (``since_last_handled``), after all of them exist
    and none is still running. A root asset never triggers (nothing upstream): bronze is driven by the
    sensor and the schedule above.
    """
    ac = dg.AutomationCondition
    return (
        ac.in_latest_time_window(timedelta(days=lookback_days))
        & ac.any_deps_updated().since_last_handled()
        & ~ac.any_deps_missing()
        & ~ac.any_deps_in_progress()
        & ~ac.in_progress()
    ).with_label(f"follow_upstream({lookback_days}d)")


lakehouse_automation = dg.AutomationConditionSensorDefinition(
    "lakehouse_automation",
    target=dg.AssetSelection.all() - dg.AssetSelection.key_prefixes("bronze"),
    default_condition=follow_upstream(),
    use_user_code_server=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    run_tags={PRIORITY_TAG: AUTOMATION_PRIORITY, TRIGGER_TAG: "lakehouse_automation"},
    description=(
        "Declarative automation for everything downstream of bronze. Assets without their own automation "
        f"condition use follow_upstream({AUTOMATION_LOOKBACK_DAYS}d): when an upstream partition is updated "
        "(new archive, re-published file, manual re-run), the partitions reading it are re-materialized."
    ),
)


# --------------------------------------------------------------------------- alerts


@dg.run_failure_sensor(
    name="lakehouse_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts every failed run (job, partitions, failed steps, error, link) to LAKEHOUSE_ALERT_WEBHOOK_URL.",
)
def lakehouse_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertWebhookResource) -> None:
    run = context.dagster_run
    failed_steps = []
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error if event.event_specific_data else None
        failed_steps.append((event.step_key or "?", error.to_string() if error else (event.message or "")))
    failed = FailedRun(
        run_id=run.run_id,
        job_name=run.job_name,
        tags=dict(run.tags),
        error=context.failure_event.message or "",
        failed_steps=failed_steps,
    )
    payload = build_payload(failed, ui_url=alerts.ui_url)
    if not alerts.url:
        context.log.info(f"LAKEHOUSE_ALERT_WEBHOOK_URL is not set; alert not sent:\n{payload['text']}")
        return
    # The webhook URL is a secret (Slack's path is the token): post_alert's errors name its host only.
    status = post_alert(
        alerts.url,
        payload,
        timeout=alerts.timeout_seconds,
        connect_timeout=alerts.connect_timeout_seconds,
        deadline_seconds=alerts.deadline_seconds,
    )
    context.log.info(f"alert for run {run.run_id} delivered (HTTP {status})")


# --------------------------------------------------------------------------- freshness


def build_freshness_check(
    asset_key: dg.AssetKey,
    *,
    max_age: timedelta = FRESHNESS_MAX_AGE,
    time_column: str = "close_time",
    name: str = "freshness",
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
        instruments = universe.instruments()
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
                "per_instrument": dg.MetadataValue.md(markdown_table(report)),
            },
        )

    return _check


silver_klines_freshness = build_freshness_check(SILVER_KLINES, max_age=FRESHNESS_MAX_AGE)
