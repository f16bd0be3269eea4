"""An S3 outage that outlasts botocore's own retries is step-retried, on assets without a RetryPolicy too.

Real S3 protocol (moto's server) behind the fault-injecting proxy on 127.0.0.1. Before, silver had no
retry policy and its storage errors were wrapped as permanent, so one S3 brown-out failed the run.
"""

from __future__ import annotations

import dagster as dg
import pytest

from lakehouse_assets.lake.sql import query
from lakehouse_assets.lake.store import open_store
from lakehouse_assets_tests.harness import failure_text, run_klines, s3_resources
from lakehouse_assets_tests.samples import SPOT_OPEN_CLOSE

DAYS = ["2020-01-01", "2020-01-02"]
DELAY = 0.2


@pytest.fixture(autouse=True)
def step_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # The step retry reads its count and delay when it is requested: 2 retries, 0.2 s base delay.
    monkeypatch.setenv("LAKEHOUSE_RETRY_MAX", "2")
    monkeypatch.setenv("LAKEHOUSE_RETRY_DELAY_SECONDS", str(DELAY))


def assert_exact(storage: str, endpoint: str) -> None:
    rows = query(
        "select cast(date as varchar) d, count(*) n, count(distinct open_time) u, "
        "arg_min(open, open_time), arg_max(close, open_time) from silver.klines group by date order by date",
        store=open_store(storage, endpoint),
    ).rows()
    assert rows == [(d, 1440, 1440, *SPOT_OPEN_CLOSE[d]) for d in DAYS]


def retries_of(result: dg.ExecuteInProcessResult) -> list[tuple[str, float]]:
    return [
        (e.step_key, e.event_specific_data.seconds_to_wait)
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]


def test_s3_outage_while_writing_an_output_is_step_retried(s3_lake, s3_endpoint, sample_mirror, instance) -> None:
    storage, proxy = s3_lake
    # botocore makes 2 attempts per request here; both fail, so the IO manager's write fails for good...
    proxy.inject("PUT", "/silver/klines/date=2020-01-02/", status=503, times=2)
    res = s3_resources(storage, proxy.url, sample_mirror.as_uri(), attempts=2)
    result = run_klines(res, DAYS[0], DAYS[-1], instance, raise_on_error=False)
    # ...and the step is retried (silver declares no RetryPolicy), once, after 0.2 s +/- 0.2 s of jitter.
    assert result.success, failure_text(result)
    ((step, wait),) = retries_of(result)
    assert step == "silver__klines"
    assert 0 <= wait <= 2 * DELAY
    assert proxy.count("PUT", "/silver/klines/date=2020-01-02/") == 3
    assert_exact(storage, s3_endpoint)


def test_s3_outage_while_reading_stored_zips_is_step_retried(s3_lake, s3_endpoint, sample_mirror, instance) -> None:
    storage, proxy = s3_lake
    zip_key = "/bronze/binance/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip"
    proxy.inject("GET", zip_key, status=500, times=2)  # silver reads the verified zip back from the lake
    res = s3_resources(storage, proxy.url, sample_mirror.as_uri(), attempts=2)
    result = run_klines(res, DAYS[0], DAYS[-1], instance, raise_on_error=False)
    assert result.success, failure_text(result)
    assert [step for step, _ in retries_of(result)] == ["silver__klines"]
    assert proxy.count("GET", zip_key) == 3
    assert_exact(storage, s3_endpoint)


def test_s3_outage_longer_than_every_retry_fails_after_the_configured_retries(
    s3_lake, s3_endpoint, sample_mirror, instance
) -> None:
    storage, proxy = s3_lake
    proxy.inject("PUT", "/silver/klines/", status=503, times=1000)
    res = s3_resources(storage, proxy.url, sample_mirror.as_uri(), attempts=2)
    result = run_klines(res, DAYS[0], DAYS[-1], instance, raise_on_error=False)
    assert not result.success
    assert [step for step, _ in retries_of(result)] == ["silver__klines", "silver__klines"]  # LAKEHOUSE_RETRY_MAX=2
    assert proxy.count("PUT", "/silver/klines/") == 2 * 3  # botocore's 2 attempts, in each of 3 step attempts
    text = failure_text(result)
    assert "Exceeded max_retries of 2" in text
    assert f"S3 PUT of {storage}/silver/klines/date=2020-01-01/spot-BTCUSDT.parquet failed" in text
    assert "SlowDown" in text
    assert open_store(storage, s3_endpoint).list_keys("silver") == []

