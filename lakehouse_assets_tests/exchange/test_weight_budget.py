"""The machine-wide REST weight budget, without Dagster or a server: headers, weights, windows, blocks, files.

Windows run on a fake clock (``FakeTime``): a wait is asserted as the exact number of seconds the budget
asked to sleep, never measured. The state files and their ``fcntl`` locks are real, and the last test
hammers one file from several processes.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from pathlib import Path

import pytest
from requests.structures import CaseInsensitiveDict

from lakehouse_assets.exchange.weight_budget import (
    DEFAULT_LIMITS,
    BudgetConfig,
    WeightBudget,
    WeightBudgetBlocked,
    default_state_dir,
    host_key,
    parse_retry_after,
    parse_used_weights,
    parse_weight_limits,
    request_weight,
    used_weight,
)

WINDOW_START = 60 * 16_666_667  # a minute boundary (epoch seconds)
UM_KLINES = "https://fapi.binance.com/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1000"  # weight 5
SPOT_KLINES = "https://api.binance.com/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1000"  # weight 2


class FakeTime:
    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def budget(state_dir: Path, clock: FakeTime, **overrides: object) -> WeightBudget:
    options: dict = {"limits": {"spot": 100, "um": 100, "cm": 100}, "fraction": 0.8, "margin_seconds": 0.5,
                     **overrides}
    return WeightBudget(BudgetConfig(state_dir=state_dir, **options), clock=clock.time, sleep=clock.sleep)


# --------------------------------------------------------------------------- headers and weights


def test_used_weight_headers_by_window_case_insensitive() -> None:
    headers = CaseInsensitiveDict({
        "x-mbx-used-weight": "119",  # legacy bare header: one minute, the explicit -1M wins
        "X-MBX-USED-WEIGHT-1M": "120",
        "X-MBX-USED-WEIGHT-10S": "7",
        "X-MBX-USED-WEIGHT-1H": "not a number",
        "X-MBX-ORDER-COUNT-10S": "3",
        "Content-Type": "application/json",
    })
    assert parse_used_weights(headers) == {60: 120, 10: 7}
    assert used_weight(headers, 60) == 120
    assert used_weight(headers, 3600) is None
    assert parse_used_weights({"X-MBX-USED-WEIGHT": "55"}) == {60: 55}
    assert parse_used_weights({"x-mbx-used-weight-2s": "9", "X-MBX-USED-WEIGHT-1D": "4000"}) == {2: 9, 86400: 4000}
    assert parse_used_weights(None) == {}


def test_retry_after_seconds_or_http_date() -> None:
    assert parse_retry_after({"Retry-After": "7"}, now=0.0) == 7.0
    assert parse_retry_after({"retry-after": "Thu, 01 Jan 1970 00:01:40 GMT"}, now=40.0) == 60.0
    assert parse_retry_after({"Retry-After": "soon"}, now=0.0) is None
    assert parse_retry_after({}, now=0.0) is None


@pytest.mark.parametrize(
    ("url", "weight"),
    [
        ("https://api.binance.com/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1000", 2),
        ("https://api.binance.com/api/v3/exchangeInfo", 20),
        ("https://api.binance.com/api/v3/time", 1),
        ("https://fapi.binance.com/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=99", 1),
        ("https://fapi.binance.com/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=100", 2),
        ("https://fapi.binance.com/fapi/v1/klines?symbol=BTCUSDT&interval=1m", 5),  # default limit 500
        ("https://dapi.binance.com/dapi/v1/klines?symbol=BTCUSD_PERP&interval=1m&limit=1000", 5),
        ("https://fapi.binance.com/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1500", 10),
        ("http://127.0.0.1:8080/mirror/fapi/v1/klines?limit=1000", 5),  # a base URL with a path prefix
        ("https://fapi.binance.com/fapi/v1/exchangeInfo", 1),
        ("https://fapi.binance.com/fapi/v1/fundingRate?symbol=BTCUSDT", 1),
    ],
)
def test_request_weight_is_binances_documented_ip_weight(url: str, weight: int) -> None:
    assert request_weight(url) == weight


def test_one_budget_file_per_host_without_credentials() -> None:
    assert host_key("http://user:secret@127.0.0.1:8080/fapi/v1/klines?x=1") == "127.0.0.1_8080"
    assert host_key("https://fapi.binance.com/fapi/v1/klines") == "fapi.binance.com_443"
    assert host_key("http://Mirror.Example:80/api") == "mirror.example_80"


def test_weight_limits_setting() -> None:
    assert parse_weight_limits("spot=6000,um=2400,cm=2400") == DEFAULT_LIMITS
    assert parse_weight_limits("um=1200") == {"spot": 6000, "um": 1200, "cm": 2400}
    with pytest.raises(ValueError, match=r"'xx=5' is not market=limit with market one of spot, um, cm"):
        parse_weight_limits("xx=5")
    with pytest.raises(ValueError, match=r"'spot=0': '0' is not a whole number between 1 and 1000000"):
        parse_weight_limits("spot=0")


def test_default_state_dir_follows_dagster_home(tmp_path: Path) -> None:
    assert default_state_dir({"DAGSTER_HOME": str(tmp_path)}) == tmp_path / "lakehouse_state"
    assert default_state_dir({}).name.startswith("lakehouse-state-")


# --------------------------------------------------------------------------- windows


def test_past_the_budget_a_process_sleeps_until_the_next_window(tmp_path: Path) -> None:
    clock = FakeTime(WINDOW_START + 10)
    b = budget(tmp_path, clock)  # 0.8 x 100 = 80 per window
    tickets = [b.acquire(UM_KLINES, "um") for _ in range(16)]  # 16 x 5 = 80: exactly the budget
    assert clock.sleeps == []
    assert [t.mark for t in tickets][-1] == 80
    ticket = b.acquire(UM_KLINES, "um")
    assert clock.sleeps == [50.5]  # to the next minute (50 s) plus the margin
    assert (ticket.window, ticket.mark) == (WINDOW_START + 60, 5)  # a fresh window
    assert b.report() == {"rest_weight_used": 85, "rest_weight_waits": 1, "rest_weight_wait_seconds": 50.5,
                          "rest_rate_limited": 0}


def test_clients_with_separate_objects_share_one_count_per_host(tmp_path: Path) -> None:
    clock = FakeTime(WINDOW_START)
    first, second = budget(tmp_path, clock), budget(tmp_path, clock)
    for _ in range(10):
        first.acquire(UM_KLINES, "um")  # 50
    for _ in range(6):
        second.acquire(UM_KLINES, "um")  # 80
    assert clock.sleeps == []
    second.acquire(UM_KLINES, "um")
    assert clock.sleeps == [60.5]
    # another host has its own budget
    spot = budget(tmp_path, clock)
    spot.acquire(SPOT_KLINES, "spot")
    assert clock.sleeps == [60.5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api.binance.com_443.json", "fapi.binance.com_443.json"]


def test_a_server_reported_weight_near_the_limit_makes_every_client_wait(tmp_path: Path) -> None:
    clock = FakeTime(WINDOW_START + 30)
    ours, other = budget(tmp_path, clock), budget(tmp_path, clock)
    ticket = ours.acquire(UM_KLINES, "um")  # mark 5
    ours.observe(ticket, 200, {"X-MBX-USED-WEIGHT-1M": "77"})  # someone else on this IP used 72
    assert clock.sleeps == []
    other.acquire(UM_KLINES, "um")  # 5 + 72 + 5 = 82 > 80: a client that sent nothing yet waits too
    assert clock.sleeps == [30.5]
    assert ours.report()["rest_server_used_weight_max"] == 77
    assert other.report()["rest_weight_waits"] == 1


def test_a_lower_server_figure_never_lowers_the_estimate(tmp_path: Path) -> None:
    clock = FakeTime(WINDOW_START)
    b = budget(tmp_path, clock)
    first = b.acquire(UM_KLINES, "um")
    for _ in range(14):
        b.acquire(UM_KLINES, "um")  # 75 taken, 70 of it still in flight
    b.observe(first, 200, {"X-MBX-USED-WEIGHT-1M": "5"})  # the server has only seen the first one yet
    b.acquire(UM_KLINES, "um")  # 80: still fits
    assert clock.sleeps == []
    b.acquire(UM_KLINES, "um")
    assert clock.sleeps == [60.5]


def test_retry_after_of_a_429_is_honoured_by_every_client(tmp_path: Path) -> None:
    clock = FakeTime(WINDOW_START + 5)
    got_429, other = budget(tmp_path, clock), budget(tmp_path, clock)
    ticket = got_429.acquire(UM_KLINES, "um")
    got_429.observe(ticket, 429, {"Retry-After": "7", "X-MBX-USED-WEIGHT-1M": "20"})
    other.acquire(UM_KLINES, "um")
    assert clock.sleeps == [7.0]
    assert got_429.report()["rest_rate_limited"] == 1
    assert other.report()["rest_weight_waits"] == 1


def test_a_429_without_retry_after_blocks_until_the_next_window(tmp_path: Path) -> None:
    clock = FakeTime(WINDOW_START + 45)
    b = budget(tmp_path, clock)
    b.observe(b.acquire(UM_KLINES, "um"), 429, {})
    b.acquire(UM_KLINES, "um")
    assert clock.sleeps == [15.5]


def test_a_long_ban_is_reported_not_slept_through_and_names_no_secret(tmp_path: Path) -> None:
    clock = FakeTime(WINDOW_START)
    banned, other = budget(tmp_path, clock, max_block_seconds=120.0), budget(tmp_path, clock, max_block_seconds=120.0)
    url = "http://user:s3cr3t@127.0.0.1:8080/fapi/v1/klines?limit=1000&signature=abc123"
    banned.observe(banned.acquire(url, "um"), 418, {"Retry-After": "3600"})
    with pytest.raises(WeightBudgetBlocked) as caught:
        other.acquire(url, "um")
    assert caught.value.status == 418
    assert clock.sleeps == []
    message = str(caught.value)
    assert "HTTP 418 (IP banned)" in message and "3600 s" in message and "127.0.0.1:8080" in message
    assert "s3cr3t" not in message and "abc123" not in message
    assert "s3cr3t" not in "".join(p.read_text() for p in tmp_path.iterdir())


def test_an_unreadable_state_file_starts_the_window_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeTime(WINDOW_START)
    (tmp_path / "fapi.binance.com_443.json").write_text('{"window": 12')  # a write cut short
    with caplog.at_level(logging.WARNING, logger="lakehouse.rest"):
        ticket = budget(tmp_path, clock).acquire(UM_KLINES, "um")
    assert (ticket.window, ticket.mark) == (WINDOW_START, 5)
    assert "is unreadable" in caplog.text
    assert json.loads((tmp_path / "fapi.binance.com_443.json").read_text())["acquired"] == 5


def test_config_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fraction must be > 0 and <= 1"):
        BudgetConfig(state_dir=tmp_path, fraction=1.5)
    with pytest.raises(ValueError, match="weight limits must be"):
        BudgetConfig(state_dir=tmp_path, limits={"um": 0})
    assert BudgetConfig(state_dir=tmp_path).budget("spot") == 4800
    assert BudgetConfig(state_dir=tmp_path).budget("um") == 1920


# --------------------------------------------------------------------------- several processes, one file


def _take(state_dir: str, times: int) -> int:
    b = WeightBudget(BudgetConfig(state_dir=Path(state_dir), limits={"um": 1_000_000}), clock=lambda: WINDOW_START + 1.0)
    return max(b.acquire(UM_KLINES, "um", weight=1).mark for _ in range(times))


def test_processes_taking_weight_at_once_lose_no_update(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        marks = pool.starmap(_take, [(str(tmp_path), 150)] * 4)
    state = json.loads((tmp_path / "fapi.binance.com_443.json").read_text())
    assert state["acquired"] == 600  # 4 x 150 read-modify-writes under the lock, none lost
    assert max(marks) == 600
