"""The step retry policy for network-bound assets (archive downloads, REST calls).

Why two layers of retries: the HTTP/S3 clients already retry single requests within seconds
(5xx, throttling, resets, timeouts). This step-level policy covers the longer outages that outlast
them (a CDN incident, a rate-limit ban of a few minutes): Dagster re-runs the step after 30 s, 60 s,
120 s (exponential, ± jitter so parallel runs do not retry in lockstep). Deterministic failures
(bad checksum, malformed file, failed quality check) raise ``dg.Failure(allow_retries=False)`` and
are never retried. Both knobs come from the environment so tests and operators can tune them:
``LAKEHOUSE_RETRY_MAX`` (default 3) and ``LAKEHOUSE_RETRY_DELAY_SECONDS`` (default 30).
"""

from __future__ import annotations

import os

import dagster as dg

DEFAULT_MAX_RETRIES = 3
DEFAULT_DELAY_SECONDS = 30.0


def network_retry_policy() -> dg.RetryPolicy:
    return dg.RetryPolicy(
        max_retries=int(os.environ.get("LAKEHOUSE_RETRY_MAX") or DEFAULT_MAX_RETRIES),
        delay=float(os.environ.get("LAKEHOUSE_RETRY_DELAY_SECONDS") or DEFAULT_DELAY_SECONDS),
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )
