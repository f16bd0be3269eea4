"""The ccxt REST client sharing one request-weight budget, against the REST stand-in that enforces a limit.

The stand-in counts Binance's weights per fixed window, reports ``X-MBX-USED-WEIGHT-<window>`` on every
answer and refuses with 429 past ``weight_limit``. Clients with separate sessions (threads) and
separate processes share the budget through its state directory only. Tests that assert exact waits
run the server's and the budget's windows on one fake clock; the concurrent ones use short real
windows (2 s) and assert what the server saw (no 429, peak weight), never durations.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from lakehouse_assets.exchange.client import RestAccessError
from lakehouse_assets.exchange.weight_budget import BudgetConfig
from lakehouse_assets.instruments import MARKETS
from lakehouse_assets.klines.gapfill import FetchOutcome
from lakehouse_assets.klines.rest import RestKlinesClient, RestSettings
from lakehouse_assets_tests.exchange.test_weight_budget import WINDOW_START, FakeTime
from lakehouse_assets_tests.samples import REPO, SPOT, UM, real_day
from lakehouse_dev.fakes.archive_server import ArchiveServer
from lakehouse_dev.fakes.rest_server import BinanceRestServer

DAY = date(2022, 5, 4)
OTHER_DAY = date(2022, 5, 5)


def make_client(
    base_url: str, state_dir: Path | None, *, limit: int = 100, window: int = 60, **overrides: object
) -> RestKlinesClient:
    budget = None
    if state_dir is not None:
        budget = BudgetConfig(state_dir=state_dir, limits=dict.fromkeys(MARKETS, limit), fraction=0.8,
                              window_seconds=window, margin_seconds=0.5 if window >= 60 else 0.2)
    options: dict = {"backoff_seconds": 0.01, "max_attempts": 3, "page_limit": 1000, **overrides}
    settings = RestSettings(base_urls=dict.fromkeys(MARKETS, base_url), weight_budget=budget, **options)
    return RestKlinesClient(settings, sleep=lambda seconds: None)


def on_fake_clock(client: RestKlinesClient, clock: FakeTime) -> RestKlinesClient:
    assert client.budget is not None
    client.budget.clock, client.budget.sleep = clock.time, clock.sleep
    return client


def fetch_day(client: RestKlinesClient, day: date) -> FetchOutcome:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return client.fetch(UM, "1m", start, start + timedelta(days=1))


def assert_real_day(outcome: FetchOutcome, day: date) -> None:
    assert outcome.error is None
    assert outcome.frame.height == 1440
    assert outcome.frame.drop("source").equals(real_day(UM, day).drop("source"))


# --------------------------------------------------------------------------- the stand-in's accounting


def test_the_stand_in_reports_used_weight_per_request_and_refuses_past_its_limit(rest_server: BinanceRestServer) -> None:
    clock = FakeTime(WINDOW_START + 10)
    rest_server.clock = clock.time
    rest_server.weight_limit = 12
    client = make_client(rest_server.base_url, None, max_attempts=1)
    outcome = fetch_day(client, DAY)  # two pages of weight 5, then a third page would not fit ...
    assert_real_day(outcome, DAY)
    headers = client.exchange("um").last_response_headers
    assert headers["X-MBX-USED-WEIGHT-1M"] == "10"
    outcome = fetch_day(client, DAY)  # ... so the next day's first page is refused
    assert outcome.error is not None and "HTTP 429 (rate limit)" in outcome.error
    assert [(r.weight, r.used_weight, r.status) for r in rest_server.kline_requests()] == [
        (5, 5, 200), (5, 10, 200), (5, 10, 429)
    ]
    assert client.exchange("um").last_response_headers["Retry-After"] == "50"  # seconds to the next window
    assert (rest_server.peak_weight, rest_server.weight_rejections) == (10, 1)


# --------------------------------------------------------------------------- one client, fake clock


def test_a_server_reported_weight_near_the_limit_makes_the_client_wait_instead_of_getting_429(
    rest_server: BinanceRestServer, tmp_path: Path
) -> None:
    clock = FakeTime(WINDOW_START + 30)
    rest_server.clock, rest_server.weight_limit = clock.time, 100
    rest_server.use_weight(92)  # another client on this IP
    client = on_fake_clock(make_client(rest_server.base_url, tmp_path), clock)
    assert_real_day(fetch_day(client, DAY), DAY)
    # page 1 was sent (nothing known yet) and answered "97 used"; page 2 (5 more) waited for the next minute.
    assert clock.sleeps == [30.5]
    assert [(r.window, r.used_weight, r.status) for r in rest_server.kline_requests()] == [
        (WINDOW_START, 97, 200), (WINDOW_START + 60, 5, 200)
    ]
    assert rest_server.weight_rejections == 0
    assert client.weight_report() == {
        "rest_weight_used": 10, "rest_weight_waits": 1, "rest_weight_wait_seconds": 30.5, "rest_rate_limited": 0,
        "rest_server_used_weight_max": 97,
    }


def test_without_the_budget_the_same_situation_earns_429s(rest_server: BinanceRestServer) -> None:
    clock = FakeTime(WINDOW_START + 30)
    rest_server.clock, rest_server.weight_limit = clock.time, 100
    rest_server.use_weight(92)
    outcome = fetch_day(make_client(rest_server.base_url, None), DAY)
    assert outcome.error is not None and "HTTP 429" in outcome.error
    assert rest_server.weight_rejections == 3  # page 2, then both retries, in the same window


def test_a_429_retry_after_is_honoured_by_another_client(rest_server: BinanceRestServer, tmp_path: Path) -> None:
    clock = FakeTime(WINDOW_START + 5)
    rest_server.clock = clock.time
    rest_server.fail("/fapi/v1/klines", 429, retry_after=7)
    first = on_fake_clock(make_client(rest_server.base_url, tmp_path, max_attempts=1), clock)
    outcome = fetch_day(first, DAY)
    assert outcome.error is not None and "HTTP 429" in outcome.error
    assert first.weight_report()["rest_rate_limited"] == 1
    second = on_fake_clock(make_client(rest_server.base_url, tmp_path), clock)  # own session, own budget object
    assert_real_day(fetch_day(second, DAY), DAY)
    assert clock.sleeps == [7.0]  # waited out the other client's Retry-After before its first request
    assert [r.status for r in rest_server.kline_requests()] == [429, 200, 200]
    assert second.weight_report()["rest_weight_waits"] == 1


def test_a_long_ban_stops_other_clients_at_once_and_no_secret_leaks(
    rest_server: BinanceRestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = rest_server.base_url.replace("http://", "http://lakeuser:s3cr3t@")
    clock = FakeTime(WINDOW_START)
    rest_server.clock = clock.time
    rest_server.fail("/fapi/v1/klines", 418, retry_after=3600)
    with caplog.at_level(logging.DEBUG):
        banned = on_fake_clock(make_client(base, tmp_path), clock)
        with pytest.raises(RestAccessError, match="HTTP 418"):
            fetch_day(banned, DAY)
        other = on_fake_clock(make_client(base, tmp_path), clock)
        with pytest.raises(RestAccessError) as caught:
            fetch_day(other, OTHER_DAY)
    message = str(caught.value)
    assert "HTTP 418 (IP banned)" in message and "every process waits until" in message
    assert len(rest_server.kline_requests()) == 1  # the other client sent nothing
    assert clock.sleeps == []
    port = base.rsplit(":", 1)[1]
    assert [p.name for p in tmp_path.iterdir()] == [f"127.0.0.1_{port}.json"]
    for text in (message, caplog.text, (tmp_path / f"127.0.0.1_{port}.json").read_text()):
        assert "s3cr3t" not in text and "lakeuser" not in text


# --------------------------------------------------------------------------- concurrent clients, real clock


def fetch_in_threads(clients: list[RestKlinesClient], days: list[date]) -> list[FetchOutcome]:
    outcomes: list[FetchOutcome | None] = [None] * len(clients)
    barrier = threading.Barrier(len(clients))

    def run(i: int) -> None:
        barrier.wait()
        outcomes[i] = fetch_day(clients[i], days[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(o is not None for o in outcomes)
    return [o for o in outcomes if o is not None]


@pytest.fixture
def limited_server(rest_server: BinanceRestServer) -> BinanceRestServer:
    rest_server.weight_window_seconds, rest_server.weight_limit = 2, 30
    return rest_server


def test_two_clients_sharing_the_budget_never_exceed_the_limit(limited_server: BinanceRestServer, tmp_path: Path) -> None:
    clients = [make_client(limited_server.base_url, tmp_path, limit=30, window=2, page_limit=100) for _ in range(2)]
    outcomes = fetch_in_threads(clients, [DAY, OTHER_DAY])
    for outcome, day in zip(outcomes, [DAY, OTHER_DAY], strict=True):
        assert_real_day(outcome, day)
    requests = limited_server.kline_requests()
    assert len(requests) == 30 and {r.weight for r in requests} == {2}  # 15 pages of 100 each, weight 2
    assert limited_server.weight_rejections == 0
    assert limited_server.peak_weight <= 30
    reports = [c.weight_report() for c in clients]
    assert sum(r["rest_weight_used"] for r in reports) == 60
    assert sum(r["rest_weight_waits"] for r in reports) >= 1  # 60 weight at 24 per window: they had to wait
    assert sum(r["rest_rate_limited"] for r in reports) == 0


def test_two_clients_without_the_budget_get_429s(limited_server: BinanceRestServer) -> None:
    clients = [make_client(limited_server.base_url, None, page_limit=100, max_attempts=10) for _ in range(2)]
    for client in clients:
        client._sleep = lambda seconds: threading.Event().wait(min(seconds, 2.0))  # really wait out Retry-After
    outcomes = fetch_in_threads(clients, [DAY, OTHER_DAY])
    assert limited_server.weight_rejections > 0
    assert all(o.error is None for o in outcomes)  # the retry policy still gets there, after the 429s


def test_two_processes_share_the_budget_through_its_state_directory(
    limited_server: BinanceRestServer, tmp_path: Path
) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    state = tmp_path / "state"
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "lakehouse_assets_tests.exchange.weight_child", limited_server.base_url,
             str(state), "30", "2", day.isoformat(), str(barrier), "2"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for day in (DAY, OTHER_DAY)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=180)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    for result, day in zip(results, (DAY, OTHER_DAY), strict=True):
        expected = real_day(UM, day)
        assert result["error"] is None
        assert result["rows"] == 1440
        assert result["close_sum"] == pytest.approx(float(expected["close"].sum()), rel=1e-12)
    assert limited_server.weight_rejections == 0
    assert limited_server.peak_weight <= 30
    assert len(limited_server.kline_requests()) == 30
    assert sum(r["report"]["rest_weight_waits"] for r in results) >= 1
    assert [p.name for p in state.iterdir()] == [f"127.0.0.1_{limited_server.base_url.rsplit(':', 1)[1]}.json"]


# --------------------------------------------------------------------------- through Dagster


def test_the_gap_fill_reports_the_weight_it_used(
    tmp_path: Path, mirror: Path, rest_server: BinanceRestServer, instance: dg.DagsterInstance
) -> None:
    from lakehouse_assets_tests.harness import resources, run_gapfill, run_klines

    zip_path = mirror / SPOT.daily_klines_path("1m", date(2020, 1, 2))
    for path in (zip_path, Path(f"{zip_path}.CHECKSUM")):
        path.unlink()  # the archive lacks the day: it comes from REST, two spot pages of weight 2
    rest_server.clock = lambda: float(WINDOW_START)  # one server window, whatever the real clock does
    state = tmp_path / "state"
    with ArchiveServer(mirror) as archive:
        res = resources(tmp_path / "lake", archive.base_url, "spot:BTCUSDT", rest_url=rest_server.base_url,
                        state_dir=str(state))
        assert run_klines(res, "2020-01-02", None, instance).success
        result = run_gapfill(res, "2020-01-02", None, instance)
    assert result.success
    metadata = result.asset_materializations_for_node("klines_filled")[0].metadata
    assert metadata["rest_requests"].value == 2
    assert {k: metadata[k].value for k in metadata if k.startswith(("rest_weight", "rest_rate", "rest_server"))} == {
        "rest_weight_used": 4, "rest_weight_waits": 0, "rest_weight_wait_seconds": 0.0, "rest_rate_limited": 0,
        "rest_server_used_weight_max": 4,
    }
    assert [p.name for p in state.iterdir()] == [f"127.0.0.1_{rest_server.base_url.rsplit(':', 1)[1]}.json"]


# --------------------------------------------------------------------------- settings and resource


def test_the_rest_resource_builds_the_budget_from_its_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from lakehouse_assets.defs.resources import rest_resource_from_env

    monkeypatch.setenv("LAKEHOUSE_REST_WEIGHT_LIMITS", "um=1200")
    monkeypatch.setenv("LAKEHOUSE_REST_WEIGHT_BUDGET", "0.5")
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path / "state"))
    settings = rest_resource_from_env().process_config_and_initialize().settings()
    assert settings.weight_budget == BudgetConfig(
        state_dir=tmp_path / "state", limits={"spot": 6000, "um": 1200, "cm": 2400}, fraction=0.5,
        max_block_seconds=120.0,
    )
    assert settings.weight_budget.budget("um") == 600

    monkeypatch.delenv("LAKEHOUSE_STATE_DIR")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    settings = rest_resource_from_env().process_config_and_initialize().settings()
    assert settings.weight_budget.state_dir == tmp_path / "home" / "lakehouse_state"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LAKEHOUSE_REST_WEIGHT_BUDGET", "0", "LAKEHOUSE_REST_WEIGHT_BUDGET='0': expected a number > 0 and <= 1"),
        ("LAKEHOUSE_REST_WEIGHT_LIMITS", "um=0",
         "LAKEHOUSE_REST_WEIGHT_LIMITS='um=0': 'um=0': '0' is not a whole number between 1 and 1000000"),
        ("LAKEHOUSE_STATE_DIR", "s3://bucket/state", "LAKEHOUSE_STATE_DIR='s3://bucket/state': expected a local directory"),
        ("LAKEHOUSE_ARCHIVE_CONCURRENCY", "0", "LAKEHOUSE_ARCHIVE_CONCURRENCY='0': expected an integer between 1 and 64"),
    ],
)
def test_bad_settings_are_named(name: str, value: str, message: str) -> None:
    from lakehouse_assets import settings

    loaded = settings.load({name: value}, dotenv_file=Path("/nonexistent/.env"))
    assert any(error.startswith(message) for error in loaded.errors), loaded.errors
