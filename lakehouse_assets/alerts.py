"""Run-failure alerts: a JSON POST to a webhook (Slack/Mattermost/Teams-compatible ``text`` field).

Why a plain webhook: it is the one integration every chat tool, pager and incident system accepts,
and it needs no extra dependency. The payload carries a human summary in ``text`` (what chat tools
display) plus structured fields (run id, job, partitions, failed steps, error) for machines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

log = logging.getLogger("lakehouse.alerts")

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"
BACKFILL_TAG = "dagster/backfill"


class AlertDeliveryError(RuntimeError):
    """The webhook did not accept the alert after every attempt."""


@dataclass(frozen=True)
class FailedRun:
    run_id: str
    job_name: str
    tags: Mapping[str, str]
    error: str
    failed_steps: Sequence[tuple[str, str]] = ()  # (step key, error message)


def partitions_label(tags: Mapping[str, str]) -> str | None:
    """The partition or partition range a run covered, from its tags."""
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    if RANGE_START_TAG in tags:
        start, end = tags[RANGE_START_TAG], tags.get(RANGE_END_TAG, tags[RANGE_START_TAG])
        return start if start == end else f"{start}…{end}"
    return None


def _first_line(text: str, limit: int = 300) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def build_payload(run: FailedRun, *, ui_url: str | None = None) -> dict[str, Any]:
    partitions = partitions_label(run.tags)
    link = f"{ui_url.rstrip('/')}/runs/{run.run_id}" if ui_url else None
    lines = [f":rotating_light: lakehouse run failed: *{run.job_name}*" + (f" for {partitions}" if partitions else "")]
    for step, message in run.failed_steps[:5]:
        lines.append(f"• `{step}`: {_first_line(message)}")
    if not run.failed_steps and run.error:
        lines.append(f"• {_first_line(run.error)}")
    if BACKFILL_TAG in run.tags:
        lines.append(f"backfill `{run.tags[BACKFILL_TAG]}`")
    lines.append(f"run `{run.run_id}`" + (f" — {link}" if link else ""))
    return {
        "text": "\n".join(lines),
        "run_id": run.run_id,
        "job_name": run.job_name,
        "partitions": partitions,
        "backfill_id": run.tags.get(BACKFILL_TAG),
        "failed_steps": [{"step": s, "error": m} for s, m in run.failed_steps],
        "error": run.error,
        "url": link,
    }


def post_alert(url: str, payload: Mapping[str, Any], *, attempts: int = 3, timeout: float = 10.0,
               backoff_seconds: float = 1.0) -> int:
    """POST the payload; retries connection errors and 5xx/429. Returns the HTTP status."""
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            response = requests.post(url, json=payload, timeout=timeout)
        except requests.RequestException as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code < 300:
                return response.status_code
            last = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                break  # a 4xx other than 429 will not get better (wrong URL, revoked token)
        if attempt < attempts:
            time.sleep(backoff_seconds * 2 ** (attempt - 1))
    raise AlertDeliveryError(f"alert webhook did not accept the alert after {attempt} attempt(s): {last}")
