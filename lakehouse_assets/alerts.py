"""Run-failure alerts: a JSON POST to a webhook (Slack/Mattermost/Teams-compatible ``text`` field).

Why a plain webhook: it is the one integration every chat tool, pager and incident system accepts,
and it needs no extra dependency. The payload carries a human summary in ``text`` (what chat tools
display) plus structured fields (run id, job, partitions, failed steps, error) for machines.

A webhook URL is a credential (Slack's path *is* the token), so it is never printed: errors and
logs name only ``scheme://host[:port]``. Delivery has connect/read timeouts and a total deadline
per attempt (``http_transfer``): a receiver that trickles its answer cannot hold the sensor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from lakehouse_assets.http_transfer import DEFAULT_CONNECT_TIMEOUT_SECONDS, DeadlineSession, TransferDeadlineExceeded
from lakehouse_assets.redact import redact_text, redact_url, url_host

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
    # A UI behind an authenticating proxy may be configured with user-info: the link must not carry it.
    link = f"{redact_url(ui_url).rstrip('/')}/runs/{run.run_id}" if ui_url else None
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


DEFAULT_TIMEOUT_SECONDS = 10.0
#: Per attempt; three attempts plus backoff stay well inside a sensor tick's 60 s.
DEFAULT_DEADLINE_SECONDS = 15.0


def _hide_url(text: str, url: str) -> str:
    """``text`` without the webhook URL or its path (urllib3 messages quote the path: "with url: /hook/...")."""
    try:
        prepared = requests.Request("POST", url).prepare()
        forms = {url, prepared.url or "", prepared.path_url or ""}
    except (requests.RequestException, ValueError):
        forms = {url}
    for form in sorted((f for f in forms if f and f != "/"), key=len, reverse=True):
        text = text.replace(form, "<webhook path hidden>")
    return redact_text(text)


def post_alert(url: str, payload: Mapping[str, Any], *, attempts: int = 3, timeout: float = DEFAULT_TIMEOUT_SECONDS,
               backoff_seconds: float = 1.0, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
               deadline_seconds: float = DEFAULT_DEADLINE_SECONDS) -> int:
    """POST the payload; retries connection errors, timeouts and 5xx/429. Returns the HTTP status.

    The error raised when every attempt failed names the webhook's host only.
    """
    last = ""
    host = url_host(url)
    started = time.monotonic()
    with DeadlineSession(connect_timeout=connect_timeout, read_timeout=timeout, deadline_seconds=deadline_seconds) as session:
        for attempt in range(1, attempts + 1):
            try:
                response = session.post(url, json=payload)
            except TransferDeadlineExceeded as exc:
                last = exc.reason
            except requests.RequestException as exc:
                last = _hide_url(f"{type(exc).__name__}: {exc}", url)
            else:
                if response.status_code < 300:
                    return response.status_code
                last = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # a 4xx other than 429 will not get better (wrong URL, revoked token)
            log.warning("alert webhook %s: attempt %d/%d failed: %s", host, attempt, attempts, last)
            if attempt < attempts:
                time.sleep(backoff_seconds * 2 ** (attempt - 1))
    raise AlertDeliveryError(
        f"alert webhook {host} did not accept the alert after {attempt} attempt(s): {last} "
        f"({time.monotonic() - started:.1f} s in total)"
    )
