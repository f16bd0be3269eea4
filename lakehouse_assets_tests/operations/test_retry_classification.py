"""Which failures are step-retried, with which delays, and which fail at once.

Errors no retry can fix (configuration, HTTP 400/401/403/451, checksum, parse) fail the step once;
errors that pass (no answer, 408/429/5xx, S3 outages) are retried with the documented delays.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from lakehouse_assets.archive.client import ArchiveFetchError
from lakehouse_assets.defs.common.retries import is_transient, nominal_delays
from lakehouse_assets.lake.store import LakeObjectNotFound, LakeStorageError
from lakehouse_assets.settings import ConfigError
from lakehouse_assets_tests.samples import REPO
from lakehouse_dev.fakes.archive_server import ArchiveServer


def test_step_retry_delays_are_the_documented_30_90_210_seconds() -> None:
    """Dagster's EXPONENTIAL backoff waits (2**n - 1) * d, and PLUS_MINUS jitter adds up to +/- d."""
    from lakehouse_assets.defs.funding.bronze import funding_archive
    from lakehouse_assets.defs.klines.bronze import klines_archive

    for asset in (klines_archive, funding_archive):
        policy = asset.op.retry_policy
        assert (policy.max_retries, policy.delay, policy.backoff, policy.jitter) == (
            3, 30.0, dg.Backoff.EXPONENTIAL, dg.Jitter.PLUS_MINUS
        )
        assert nominal_delays(policy) == [30.0, 90.0, 210.0]
        for attempt, nominal in enumerate([30.0, 90.0, 210.0], start=1):
            waits = [policy.calculate_delay(attempt) for _ in range(2000)]
            assert nominal - 30 <= min(waits) and max(waits) <= nominal + 30
            assert max(waits) - min(waits) > 50  # the jitter really spreads parallel retries
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "30 s, 90 s and 210 s (each ± 30 s)" in readme
    assert "30 s, 60 s, 120 s" not in readme
    assert "30 s, 90 s and 210 s" in (REPO / "lakehouse_assets/defs/common/retries.py").read_text(encoding="utf-8")


def _client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def _storage_error(cause: BaseException) -> LakeStorageError:
    try:
        raise LakeStorageError("S3 PUT of s3://bucket/key failed") from cause
    except LakeStorageError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ArchiveFetchError("https://x/a.zip", 1, "HTTP 400", status=400), False),
        (ArchiveFetchError("https://x/a.zip", 1, "HTTP 401", status=401), False),
        (ArchiveFetchError("https://x/a.zip", 1, "HTTP 403 Forbidden", status=403), False),
        (ArchiveFetchError("https://x/a.zip", 1, "HTTP 451", status=451), False),
        (ArchiveFetchError("https://x/a.zip", 5, "HTTP 503", status=503), True),
        (ArchiveFetchError("https://x/a.zip", 5, "HTTP 429", status=429), True),
        (ArchiveFetchError("https://x/a.zip", 5, "read timed out", status=None), True),
        (_storage_error(_client_error(503, "SlowDown")), True),
        (_storage_error(_client_error(500, "InternalError")), True),
        (_storage_error(_client_error(403, "AccessDenied")), False),
        (_storage_error(EndpointConnectionError(endpoint_url="http://127.0.0.1:9")), True),
        (_storage_error(OSError(28, "No space left on device")), False),
        (LakeObjectNotFound("no object at s3://bucket/key"), False),
        (OSError("object-store error: Generic S3 error: Error performing GET http://h/k in 8.0s, after 8 retries - "
                 "Server returned non-2xx status code: 503 Service Unavailable"), True),
        (OSError("object-store error: Generic S3 error: Server returned non-2xx status code: 403 Forbidden"), False),
        (ConfigError(["LAKEHOUSE_DAYS_PER_RUN='0': expected an integer >= 1"]), False),
        (ValueError("CHECKSUM does not start with a 64-hex sha256 digest"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_what_a_step_retry_can_fix(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def _child_run(home: Path, lake: Path, archive_url: str, day: str) -> subprocess.CompletedProcess[str]:
    home.mkdir(parents=True)
    with dg.DagsterInstance.from_config(str(home)) as inst:  # create the sqlite storages up front
        inst.get_runs()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    # a tiny step-retry delay: a retry, if any, shows up at once instead of after 30 s
    env.update(DAGSTER_HOME=str(home), PYTHONUNBUFFERED="1", LAKEHOUSE_RETRY_DELAY_SECONDS="0.1")
    return subprocess.run(
        [sys.executable, "-m", "lakehouse_assets_tests.run_child", str(lake), archive_url, "spot:BTCUSDT", day, day],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize("status", [403, 451])
def test_an_archive_refusal_fails_the_step_once_without_retries(tmp_path: Path, sample_mirror: Path, status: int) -> None:
    """A 403 (or 451) will not change in five minutes: before, the step was re-run three times (5.5 min)."""
    with ArchiveServer(sample_mirror) as server:
        server.inject("BTCUSDT-1m-2020-01-02.zip", status=status, times=1000, methods=("GET",))
        proc = _child_run(tmp_path / "home", tmp_path / "lake", server.base_url, "2020-01-02")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        requests_made = server.count("GET", "BTCUSDT-1m-2020-01-02.zip")
    assert requests_made == 1  # the client did not retry it either
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as inst:
        (run,) = inst.get_runs()
        starts = inst.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        assert [e.step_key for e in starts] == ["bronze__klines_archive"]
        assert inst.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
        (failure,) = inst.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        description = failure.dagster_event.step_failure_data.user_failure_data.description
        assert f"HTTP {status}" in description
        assert "BTCUSDT-1m-2020-01-02.zip" in description
