"""Automation and alerts across every domain. Both ship RUNNING.

* ``lakehouse_automation``: declarative automation for every non-bronze asset. Assets without a
  condition of their own get ``follow_upstream()``: re-materialize a partition when an upstream
  partition it reads was updated, within the last ``LAKEHOUSE_AUTOMATION_LOOKBACK_DAYS``. New
  downstream assets (gold, features, …) follow with no change here. Bronze is driven by each
  domain's archive sensor and daily schedule (``defs/klines/automation.py``, ``defs/funding/automation.py``).
* ``lakehouse_failure_alerts``: every failed run is posted to ``LAKEHOUSE_ALERT_WEBHOOK_URL``.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from lakehouse_assets import settings
from lakehouse_assets.alerts import FailedRun, build_payload, post_alert
from lakehouse_assets.defs.common.sensors import AUTOMATION_PRIORITY, PRIORITY_TAG, TRIGGER_TAG
from lakehouse_assets.defs.resources import AlertWebhookResource

AUTOMATION_LOOKBACK_DAYS: int = settings.get("LAKEHOUSE_AUTOMATION_LOOKBACK_DAYS")


def follow_upstream(lookback_days: int = AUTOMATION_LOOKBACK_DAYS) -> dg.AutomationCondition:
    """Like ``AutomationCondition.eager()``, but for every partition of the last ``lookback_days``.

    ``eager()`` only looks at the newest partition, so a late or re-published archive for an older
    day would never reach silver or gold. Here any partition within the window whose upstream
    partitions were updated is re-materialized once (``since_last_handled``), after all of them exist
    and none is still running. A root asset never triggers (nothing upstream): bronze is driven by the
    archive sensors and the daily schedules.
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
