"""Sensors, schedule, declarative automation, alerts and freshness, against real archive files.

The sensor and the freshness check read the clock through ``sensors.utc_now``; tests freeze it
at a moment when the bundled real files (2020-01-01..03 spot BTCUSDT) are "the last few days".
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse_assets import alerts
from lakehouse_assets.archive.watch import ArchiveFeed, load_cursor, plan_requests
from lakehouse_assets.defs import operations
from lakehouse_assets.defs.common.keys import BRONZE_KLINES, KLINE_GAPS, KLINES_FILLED, SILVER_KLINES
from lakehouse_assets.defs.klines import automation as klines_automation
from lakehouse_assets.defs.resources import AlertWebhookResource, LakeResource, UniverseResource
from lakehouse_assets_tests.harness import (
    SHIPPED,
    automation_defs,
    materialize,
    project_defs,
    resources,
    run_klines,
)
from lakehouse_assets_tests.samples import rewrite_zip_csv, utc
from lakehouse_dev.fakes.archive_server import ArchiveServer

SPOT = "data/spot/daily/klines/BTCUSDT/1m"
CM = "data/futures/cm/daily/klines/BTCUSD_PERP/1m"


def tick(server_url: str, symbols: str, cursor: str | None = None, instance: dg.DagsterInstance | None = None):
    res = resources("unused-lake", server_url, symbols)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=res, definitions=project_defs(res)
    ) as context:
        return klines_automation.klines_archive_sensor.evaluate_tick(context)


def republish(zip_path: Path) -> str:
    """Binance re-uploading a file: same CSV rows, new zip bytes, new CHECKSUM. Returns the old sha256 line."""
    old = Path(str(zip_path) + ".CHECKSUM").read_text()
    rewrite_zip_csv(zip_path, lambda text: text)  # re-zipped: identical rows, different bytes and sha256
    assert Path(str(zip_path) + ".CHECKSUM").read_text() != old
    return old


# --------------------------------------------------------------------------- new-archive sensor


def listing_entry(path: Path) -> str:
    """What the stand-in's listing says about a file on disk: size, ETag (MD5 of the body), Last-Modified (ms)."""
    ms = path.stat().st_mtime_ns // 1_000_000
    modified = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)
    etag = hashlib.md5(path.read_bytes()).hexdigest()
    return f"{path.stat().st_size}|{etag}|{modified.isoformat(timespec='milliseconds')}"


def test_sensor_requests_each_day_with_files_once(mirror, clock):
    with ArchiveServer(mirror) as server:
        first = tick(server.base_url, "spot:BTCUSDT,spot:ETHUSDT")
        # 2020-01-04 06:00 UTC: the newest partition is 2020-01-03; the sensor watches the last 3 days
        assert [r.partition_key for r in first.run_requests] == ["2020-01-01", "2020-01-02", "2020-01-03"]
        assert all(r.tags["lakehouse/archive_files"] == "1/2" for r in first.run_requests)  # ETHUSDT: not listed
        assert all(r.tags["dagster/priority"] == "10" for r in first.run_requests)
        assert len({r.run_key for r in first.run_requests}) == 3
        # the cursor holds each file's listing entry (zip and CHECKSUM), and None for the unlisted ones
        state = load_cursor(first.cursor)
        zip_path = mirror / SPOT / "BTCUSDT-1m-2020-01-02.zip"
        assert state["2020-01-02"]["spot:BTCUSDT"] == (
            f"listing:{listing_entry(zip_path)};checksum:{listing_entry(Path(str(zip_path) + '.CHECKSUM'))}"
        )
        assert state["2020-01-02"]["spot:BTCUSDT"].startswith("listing:70593|")  # the real zip's size
        assert state["2020-01-02"]["spot:ETHUSDT"] is None
        # one listing page per instrument (its January daily files), and not a single file request
        assert server.requests == [("GET", "/"), ("GET", "/")]
        second = tick(server.base_url, "spot:BTCUSDT,spot:ETHUSDT", cursor=first.cursor)
        assert second.run_requests == []
        assert "no new or re-published files" in second.skip_message


def test_late_arrival_and_republished_file_trigger_again(mirror, clock):
    late = mirror / SPOT / "BTCUSDT-1m-2020-01-03.zip"
    hidden = mirror.parent / "hidden"
    hidden.mkdir()
    for suffix in ("", ".CHECKSUM"):
        Path(str(late) + suffix).rename(hidden / (late.name + suffix))
    with ArchiveServer(mirror) as server:
        first = tick(server.base_url, "spot:BTCUSDT")
        assert [r.partition_key for r in first.run_requests] == ["2020-01-01", "2020-01-02"]

        for suffix in ("", ".CHECKSUM"):  # the late file lands
            (hidden / (late.name + suffix)).rename(Path(str(late) + suffix))
        second = tick(server.base_url, "spot:BTCUSDT", cursor=first.cursor)
        assert [r.partition_key for r in second.run_requests] == ["2020-01-03"]

        republish(mirror / SPOT / "BTCUSDT-1m-2020-01-02.zip")  # a new sha256 for a day already ingested
        third = tick(server.base_url, "spot:BTCUSDT", cursor=second.cursor)
        assert [r.partition_key for r in third.run_requests] == ["2020-01-02"]
        earlier_key = next(r.run_key for r in first.run_requests if r.partition_key == "2020-01-02")
        assert third.run_requests[0].run_key != earlier_key
        assert "1 new/changed file" in third.run_requests[0].tags["lakehouse/trigger"]

        assert tick(server.base_url, "spot:BTCUSDT", cursor=third.cursor).run_requests == []


def test_files_without_checksum_are_fingerprinted_by_their_listing_entry(mirror, clock):
    clock.set(utc(2022, 10, 26, 9, 0))  # newest partition 2022-10-25; the COIN-M zips have no CHECKSUM
    with ArchiveServer(mirror) as server:
        first = tick(server.base_url, "cm:BTCUSD_PERP")
        assert [r.partition_key for r in first.run_requests] == ["2022-10-24", "2022-10-25"]
        zip_path = mirror / CM / "BTCUSD_PERP-1m-2022-10-25.zip"
        assert load_cursor(first.cursor)["2022-10-25"]["cm:BTCUSD_PERP"] == f"listing:{listing_entry(zip_path)}"
        assert server.requests == [("GET", "/")]  # no HEAD, no CHECKSUM: the listing has it all
        rewrite_zip_csv(zip_path, lambda t: t, update_checksum=False)
        second = tick(server.base_url, "cm:BTCUSD_PERP", cursor=first.cursor)
        assert [r.partition_key for r in second.run_requests] == ["2022-10-25"]


def test_a_failing_listing_defers_its_days_and_keeps_the_cursor(mirror, clock):
    january = "prefix=data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01&"
    with ArchiveServer(mirror) as server:
        first = tick(server.base_url, "spot:BTCUSDT")
        assert [r.partition_key for r in first.run_requests] == ["2020-01-01", "2020-01-02", "2020-01-03"]

        # Binance re-publishes 2020-01-02 while the listing answers 503 (beyond the tick's 2 attempts).
        republish(mirror / SPOT / "BTCUSDT-1m-2020-01-02.zip")
        server.inject(january, status=503, times=10)
        second = tick(server.base_url, "spot:BTCUSDT", cursor=first.cursor)
        assert second.run_requests == [] and "file(s) could not be listed" in second.skip_message
        assert load_cursor(second.cursor) == load_cursor(first.cursor)  # what the cursor knew is kept

        server.clear_faults()
        third = tick(server.base_url, "spot:BTCUSDT", cursor=second.cursor)
        assert [r.partition_key for r in third.run_requests] == ["2020-01-02"]


def test_monthly_feed_change_requests_every_watched_day_of_the_month():
    """A feed whose file covers a month (e.g. funding): one changed file re-requests each watched day."""
    feed = ArchiveFeed("monthly", lambda inst, day: f"m/{inst.symbol}-{day:%Y-%m}.zip", lookback_days=5)
    from lakehouse_assets.instruments import Instrument

    inst = [Instrument("um", "BTCUSDT")]
    days = [date(2026, 5, 2) - timedelta(days=i) for i in range(5)]  # 04-28 .. 05-02
    published = {"m/BTCUSDT-2026-04.zip": "sha256:a"}
    first = plan_requests(feed, inst, days, published.get, None)
    assert [r.day.isoformat() for r in first.requests] == ["2026-04-28", "2026-04-29", "2026-04-30"]
    published["m/BTCUSDT-2026-04.zip"] = "sha256:b"  # re-published month
    published["m/BTCUSDT-2026-05.zip"] = "sha256:c"  # and the new month appears
    second = plan_requests(feed, inst, days, published.get, first.cursor)
    assert [r.day.isoformat() for r in second.requests] == [d.isoformat() for d in sorted(days)]
    assert plan_requests(feed, inst, days, published.get, "not json").requests  # a garbled cursor starts fresh


# --------------------------------------------------------------------------- sensor -> bronze -> automation -> silver


def test_new_archive_flows_through_to_silver_by_automation(tmp_path, mirror, clock, instance):
    lake = tmp_path / "lake"
    with ArchiveServer(mirror) as server:
        res = resources(str(lake), server.base_url, "spot:BTCUSDT")
        # The shipped assets with the condition lakehouse_automation gives them, evaluated for the two layers this
        # test follows (silver's gap-fill, gold and the hourly freshness check have tests of their own).
        defs = automation_defs(res)
        layers = dg.AssetSelection.assets(BRONZE_KLINES, SILVER_KLINES).without_checks()
        bronze_job = defs.resolve_job_def(klines_automation.klines_archive_sensor.job_name)  # what the sensor runs
        evaluation = utc(2020, 1, 4, 6, 5)

        def evaluate(cursor: object = None):
            return dg.evaluate_automation_conditions(
                defs=defs, instance=instance, asset_selection=layers, evaluation_time=evaluation, cursor=cursor
            )

        auto = evaluate()
        assert auto.total_requested == 0  # nothing upstream yet

        sensed = tick(server.base_url, "spot:BTCUSDT", instance=instance)
        for request in sensed.run_requests:
            assert bronze_job.execute_in_process(
                instance=instance, partition_key=request.partition_key, tags=request.tags
            ).success

        auto = evaluate(auto.cursor)
        assert sorted(auto.get_requested_partitions(SILVER_KLINES)) == ["2020-01-01", "2020-01-02", "2020-01-03"]
        for day in sorted(auto.get_requested_partitions(SILVER_KLINES)):
            assert materialize([SILVER_KLINES], res, day, None, instance).success  # as automation launches it
        auto = evaluate(auto.cursor)
        assert auto.total_requested == 0  # handled: nothing requested twice

        # Binance re-publishes 2020-01-02: the sensor re-requests bronze, automation follows for that day only
        republish(mirror / SPOT / "BTCUSDT-1m-2020-01-02.zip")
        again = tick(server.base_url, "spot:BTCUSDT", cursor=sensed.cursor, instance=instance)
        assert [r.partition_key for r in again.run_requests] == ["2020-01-02"]
        assert bronze_job.execute_in_process(instance=instance, partition_key="2020-01-02").success
        auto = evaluate(auto.cursor)
        assert auto.get_requested_partitions(SILVER_KLINES) == {"2020-01-02"}

    day = pl.read_parquet(lake / "silver/klines/date=2020-01-02/spot-BTCUSDT.parquet")
    assert day.height == 1440
    noon = day.filter(pl.col("open_time") == utc(2020, 1, 2, 12, 0)).row(0, named=True)
    assert (noon["open"], noon["close"], noon["trade_count"]) == (7139.73, 7147.40, 338)


def test_automation_sensor_covers_new_downstream_assets_without_editing_them(instance):
    """A gold asset added later (no automation condition of its own) follows silver by the default condition."""
    from lakehouse_assets.defs.common.partitions import daily_partitions

    @dg.asset(key=["gold", "probe_feature"], deps=[SILVER_KLINES], partitions_def=daily_partitions)
    def probe_feature() -> None: ...

    # Deliberately not the harness: the point is a NEW asset, so it is merged into the shipped definitions here.
    defs = dg.Definitions.merge(SHIPPED, dg.Definitions(assets=[probe_feature]))
    sensor = operations.lakehouse_automation
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    today = datetime.now(UTC).date()
    recent, old = (today - timedelta(days=2)).isoformat(), (today - timedelta(days=100)).isoformat()

    first = sensor(dg.build_sensor_context(instance=instance, definitions=defs, sensor_name=sensor.name))
    assert first.run_requests == []  # a fresh deployment does not start a mass backfill
    for day in (recent, old):
        instance.report_runless_asset_event(dg.AssetMaterialization(BRONZE_KLINES, partition=day))
    second = sensor(dg.build_sensor_context(instance=instance, definitions=defs, sensor_name=sensor.name,
                                            cursor=first.cursor))
    requested = {(key.to_user_string(), r.partition_key) for r in second.run_requests for key in r.asset_selection}
    # silver follows bronze, and the new gold asset is requested in the same run (it reads silver); other
    # downstream assets of the project come along the same way. 100 days ago is outside the 62-day window.
    assert {("silver/klines", recent), ("gold/probe_feature", recent)} <= requested
    assert {partition for _, partition in requested} == {recent}
    assert not any(key.startswith("bronze/") for key, _ in requested)
    assert all(r.tags["dagster/priority"] == "5" for r in second.run_requests)
    # bronze is never targeted by automation (the archive sensor and the schedule drive it)
    targeted = sensor.asset_selection.resolve(defs.resolve_asset_graph())
    assert BRONZE_KLINES not in targeted and SILVER_KLINES in targeted


# --------------------------------------------------------------------------- schedule


def test_daily_schedule_requests_the_rest_only_day_and_the_final_day():
    repo = SHIPPED.get_repository_def()
    schedule = klines_automation.lakehouse_daily
    assert schedule.cron_schedule == "15 0 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    result = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=utc(2026, 5, 9, 0, 15), repository_def=repo))
    assert [r.partition_key for r in result.run_requests] == ["2026-05-08", "2026-05-07"]
    assert {r.tags["dagster/priority"] for r in result.run_requests} == {"10"}
    assert len({r.run_key for r in result.run_requests}) == 2
    # never before the first partition
    first = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=utc(2020, 1, 2, 0, 15), repository_def=repo))
    assert [r.partition_key for r in first.run_requests] == ["2020-01-01"]


def test_hourly_schedule_refreshes_todays_rest_only_partition():
    repo = SHIPPED.get_repository_def()
    schedule = klines_automation.lakehouse_today
    result = schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=utc(2026, 5, 9, 13, 5), repository_def=repo)
    )
    (request,) = result.run_requests
    assert request.partition_key == "2026-05-09"  # the running UTC day: only the REST layer has it
    job = repo.get_job(schedule.job_name)
    assert set(job.asset_layer.executable_asset_keys) == {KLINES_FILLED, KLINE_GAPS}
    assert request.run_key == "lakehouse_today:2026-05-09T13:05"


# --------------------------------------------------------------------------- alerts


class _Webhook:
    """A local webhook receiver: records JSON bodies, answers with the queued statuses (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[dict] = []
        self.statuses = list(statuses or [])
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.bodies.append(json.loads(body))
                status = owner.statuses.pop(0) if owner.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[_Webhook]:
    hook = _Webhook()
    yield hook
    hook.close()


def test_failed_run_is_posted_to_the_webhook(tmp_path, sample_mirror, instance, webhook):
    res = resources(str(tmp_path / "lake"), sample_mirror.as_uri(), "spot:BTCUSDT")
    result = run_klines(res, "2020-01-01", "2020-01-02", instance, raise_on_error=False,
                       tags={"lakehouse/symbols": "spot:DOGEUSDT"})  # outside the universe: a clear failure
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = next(
        e for e in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    ).dagster_event
    context = dg.build_run_status_sensor_context(
        sensor_name="lakehouse_failure_alerts",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
        resources={"alerts": AlertWebhookResource(url=webhook.url, ui_url="http://dagster.example:3000")},
    ).for_run_failure()
    operations.lakehouse_failure_alerts(context)

    (body,) = webhook.bodies
    assert body["run_id"] == result.run_id and body["job_name"] == "klines_job"
    assert body["partitions"] == "2020-01-01…2020-01-02"
    assert body["url"] == f"http://dagster.example:3000/runs/{result.run_id}"
    (step,) = body["failed_steps"]
    assert step["step"] == "bronze__klines_archive"
    assert "spot:DOGEUSDT not in the configured universe" in step["error"]
    assert "klines_job" in body["text"] and "spot:DOGEUSDT not in the configured universe" in body["text"]


def test_alert_delivery_retries_5xx_and_gives_up_on_4xx():
    hook = _Webhook(statuses=[503, 500])
    try:
        assert alerts.post_alert(hook.url, {"text": "x"}, backoff_seconds=0.01) == 200
        assert len(hook.bodies) == 3
        hook.statuses = [404]
        with pytest.raises(alerts.AlertDeliveryError, match="after 1 attempt\\(s\\): HTTP 404"):
            alerts.post_alert(hook.url, {"text": "x"}, backoff_seconds=0.01)
        assert len(hook.bodies) == 4
    finally:
        hook.close()


# --------------------------------------------------------------------------- freshness


def test_freshness_check_warns_when_newest_candle_is_older_than_36h(tmp_path, sample_mirror, instance, clock):
    lake = tmp_path / "lake"
    res = resources(str(lake), sample_mirror.as_uri(), "spot:BTCUSDT")
    assert run_klines(res, "2020-01-01", "2020-01-03", instance).success
    check = klines_automation.silver_klines_freshness

    def evaluate(symbols: str) -> dg.AssetCheckResult:
        return check(lake=LakeResource(storage=str(lake)), universe=UniverseResource(symbols=symbols))

    clock.set(utc(2020, 1, 4, 6, 0))  # newest candle closes 2020-01-03 23:59:59.999: 6 h old
    fresh = evaluate("spot:BTCUSDT")
    assert fresh.passed and fresh.severity == dg.AssetCheckSeverity.WARN
    assert fresh.metadata["oldest_age_hours"].value == 6.0
    assert fresh.metadata["newest_data"].value == "2020-01-03T23:59:59.999000+00:00"

    clock.set(utc(2020, 1, 5, 12, 1))  # 36 h 1 min later: stale
    stale = evaluate("spot:BTCUSDT")
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.WARN
    assert "spot:BTCUSDT" in stale.description and stale.metadata["oldest_age_hours"].value == 36.02

    clock.set(utc(2020, 1, 4, 6, 0))  # an instrument with no data at all is stale too
    partial = evaluate("spot:BTCUSDT,spot:ETHUSDT")
    assert not partial.passed and stale.metadata["stale_instruments"].value == 1
    assert "spot:ETHUSDT" in partial.description and "spot:BTCUSDT" not in partial.description
