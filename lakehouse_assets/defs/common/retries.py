"""Which failures a step retry can fix, and the step retry policy that re-runs them.

Why two layers of retries: the HTTP/S3 clients already retry single requests within seconds
(5xx, throttling, resets, timeouts). The step retry covers the longer outages that outlast them (a
CDN incident, an S3 brown-out, a rate-limit ban of a few minutes): Dagster re-runs the whole step.

What is retried (``is_transient``): network errors without an answer (timeouts, resets, refused
connections), HTTP 408/418/425/429 and 5xx, and S3 errors of the same kinds. What is not: a
configuration error, HTTP 400/401/403/404/451 and other 4xx, a checksum mismatch, a file that does
not parse, a failed blocking check. Those raise ``dg.Failure(allow_retries=False)`` and fail at
once, because every retry would fail the same way, only minutes later.

The delays are Dagster's ``Backoff.EXPONENTIAL`` with ``Jitter.PLUS_MINUS`` (``RetryPolicy.calculate_delay``):
retry n waits ``(2**n - 1) * d`` plus a uniform jitter in ``[-d, +d]``. With the default
``LAKEHOUSE_RETRY_DELAY_SECONDS`` d = 30 that is 30 s, 90 s and 210 s (each +/- 30 s), 330 s in all
before the last attempt. ``LAKEHOUSE_RETRY_MAX`` (default 3) is the number of retries.

Where the policy applies: the network-bound assets declare it (``network_retry_policy()``), so
Dagster retries their transient failures itself. An S3 failure can hit ANY asset (the IO manager
writes every output to the lake and loads every input from it), and most assets have no retry
policy: there the IO manager raises ``dg.RetryRequested`` with the same count and delays
(``retry_storage_errors``), which Dagster honours whatever the asset declares.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import dagster as dg

from lakehouse_assets import settings
from lakehouse_assets.defs.common.metadata import md_list
from lakehouse_assets.lake.store import LakeObjectNotFound, LakeStorageError
from lakehouse_assets.settings import ConfigError

DEFAULT_MAX_RETRIES = int(settings.SETTINGS["LAKEHOUSE_RETRY_MAX"].default or 3)
DEFAULT_DELAY_SECONDS = float(settings.SETTINGS["LAKEHOUSE_RETRY_DELAY_SECONDS"].default or 30)

#: HTTP statuses a later attempt may well get past: timeouts, throttling/bans, server trouble.
TRANSIENT_HTTP_STATUSES = frozenset({408, 418, 425, 429})
#: S3 error codes that are throttling or server-side trouble even when the status says otherwise.
TRANSIENT_S3_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
     "InternalError", "ServiceUnavailable", "BadGateway", "GatewayTimeout", "RequestLimitExceeded"}
)


def network_retry_policy() -> dg.RetryPolicy:
    """The step retry policy, from LAKEHOUSE_RETRY_MAX / LAKEHOUSE_RETRY_DELAY_SECONDS (read when called)."""
    current = settings.current()
    return dg.RetryPolicy(
        max_retries=current["LAKEHOUSE_RETRY_MAX"],
        delay=current["LAKEHOUSE_RETRY_DELAY_SECONDS"],
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


def nominal_delays(policy: dg.RetryPolicy) -> list[float]:
    """The wait before each retry without jitter, as Dagster computes it (30, 90, 210 for d = 30)."""
    plain = dg.RetryPolicy(max_retries=policy.max_retries, delay=policy.delay, backoff=policy.backoff)
    return [float(plain.calculate_delay(n)) for n in range(1, policy.max_retries + 1)]


def http_status_is_transient(status: int | None) -> bool:
    """None = no answer at all (timeout, reset, refused): worth another try, like 408/429/5xx."""
    return status is None or status in TRANSIENT_HTTP_STATUSES or status >= 500


def _s3_error_is_transient(error: BaseException) -> bool | None:
    """botocore's verdict for one exception of the cause chain; None if it is not a botocore error."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return None
    if isinstance(error, ClientError):
        response: dict[str, Any] = error.response or {}
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in TRANSIENT_S3_CODES or http_status_is_transient(int(status) if status else None)
    if isinstance(error, BotoCoreError):  # no answer: endpoint unreachable, timeouts, closed connections
        return True
    return None


_OBJECT_STORE_STATUS = re.compile(r"status code: (\d{3})")


def _object_store_error_is_transient(error: BaseException) -> bool | None:
    """Polars/pyarrow read S3 with their own Rust client (object_store), which raises a plain OSError
    ('object-store error: Generic S3 error: ... after 8 retries ... status code: 503'); None if not one."""
    message = str(error)
    if not isinstance(error, OSError) or "object-store error" not in message:
        return None
    status = _OBJECT_STORE_STATUS.search(message)
    if status:
        return http_status_is_transient(int(status.group(1)))
    lowered = message.lower()
    return any(word in lowered for word in ("timed out", "timeout", "connection", "retries"))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_transient(exc: BaseException) -> bool:
    """Could the same step succeed if it simply ran again later?"""
    if isinstance(exc, (ConfigError, LakeObjectNotFound)):
        return False
    from lakehouse_assets.archive.client import ArchiveFetchError

    verdict = getattr(exc, "transient", None)
    if isinstance(exc, ArchiveFetchError):  # the client's verdict (redirect loop, unreadable file) AND the status
        return verdict is not False and http_status_is_transient(exc.status)
    if isinstance(verdict, bool):  # FundingRestError and other errors that know
        return verdict
    if isinstance(exc, (LakeStorageError, OSError)):
        for cause in _causes(exc):
            verdict = _s3_error_is_transient(cause)
            if verdict is None:
                verdict = _object_store_error_is_transient(cause)
            if verdict is not None:
                return verdict
            if isinstance(cause, (TimeoutError, ConnectionError)):
                return True
        return False  # local disk: full, read-only, permission denied - an operator has to act
    return False


def config_failure(exc: ConfigError) -> dg.Failure:
    """A configuration error inside a run: named, and never retried."""
    return dg.Failure(description=f"configuration error: {exc}", allow_retries=False)


def checked(name: str, raw: str | None) -> Any:
    """A resource field, parsed by the rule of its setting; a bad value fails the step at once (no retry)."""
    try:
        return settings.check(name, raw)
    except ConfigError as exc:
        raise config_failure(exc) from exc


def failure_for(description: str, errors: Iterable[BaseException], **kwargs: Any) -> dg.Failure:
    """A step failure that the step's RetryPolicy may retry only if every one of ``errors`` is transient."""
    errors = list(errors)
    transient = bool(errors) and all(is_transient(e) for e in errors)
    return dg.Failure(description=description, allow_retries=transient, **kwargs)


def ingest_failure(failures: Sequence[tuple[str, BaseException]], description: str) -> dg.Failure:
    """The step failure for a bronze ingest in which some files failed (every file named in the UI).

    Only failures that may pass are retried (no answer, HTTP 408/429/5xx, S3 outages); an HTTP 400/401/
    403/451, a checksum or format problem, or a local disk fault fails at once (``is_transient``).
    """
    return failure_for(
        description,
        (exc for _, exc in failures),
        metadata={"failed_files": md_list((f"{name}: {exc}" for name, exc in failures), empty=None)},
    )


def retry_requested(previous_attempts: int) -> dg.RetryRequested:
    """A retry with the configured count and the same delays the RetryPolicy would use."""
    policy = network_retry_policy()
    return dg.RetryRequested(
        max_retries=policy.max_retries, seconds_to_wait=policy.calculate_delay(previous_attempts + 1)
    )


def _previous_attempts(context: Any) -> int:
    retry_number = getattr(context, "retry_number", None)  # an asset's own context
    if isinstance(retry_number, int):
        return retry_number
    try:
        return int(context.step_context.previous_attempt_count)
    except Exception:  # outside a step (direct IO-manager calls in tests, notebooks): first attempt
        return 0


@contextmanager
def retry_storage_errors(context: Any) -> Iterator[None]:
    """In an IO manager, or an asset writing its output chunk by chunk (``lake/chunks.py``): a transient lake
    failure becomes a step retry, whatever the asset's own policy.

    Dagster applies an op's RetryPolicy to errors raised in handle_output/load_input too, but most
    assets declare none (only the network-bound ones do), so an S3 outage failed them outright.
    ``dg.RetryRequested`` is honoured for every step. A permanent fault (403, missing object, local
    disk) is raised unchanged and fails at once.
    """
    try:
        yield
    except (LakeStorageError, OSError) as exc:  # OSError: Polars' own S3 reader
        if not is_transient(exc):
            raise
        raise retry_requested(_previous_attempts(context)) from exc


_Method = TypeVar("_Method", bound=Callable[..., Any])


def retries_storage_errors(method: _Method) -> _Method:
    """Decorator for ``IOManager.handle_output`` / ``load_input``: ``retry_storage_errors`` around the call."""

    @functools.wraps(method)
    def wrapper(self: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
        with retry_storage_errors(context):
            return method(self, context, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
