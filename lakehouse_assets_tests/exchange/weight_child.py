"""Fetch one USD-M BTCUSDT day of 1m klines through the REST client, in a process of its own.

The shared-weight test starts two of these at once against one REST stand-in: Dagster runs are
separate processes, and only separate processes show that the budget file (not an object in
memory) is what they share.

Usage: python -m lakehouse_assets_tests.exchange.weight_child BASE_URL STATE_DIR LIMIT WINDOW DAY BARRIER N
Waits until N processes have touched BARRIER (a directory), so the fetches overlap, then prints one
JSON line: rows, close_sum, the client's weight report and the error, if any.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from lakehouse_assets.exchange.weight_budget import BudgetConfig
from lakehouse_assets.instruments import MARKETS, Instrument
from lakehouse_assets.klines.rest import RestKlinesClient, RestSettings


def main(base_url: str, state_dir: str, limit: str, window: str, day: str, barrier: str, n: str) -> None:
    budget = BudgetConfig(
        state_dir=Path(state_dir), limits=dict.fromkeys(MARKETS, int(limit)), fraction=0.8,
        window_seconds=int(window), margin_seconds=0.2,
    )
    settings = RestSettings(base_urls=dict.fromkeys(MARKETS, base_url), page_limit=100, max_attempts=2,
                            backoff_seconds=0.01, weight_budget=budget)
    client = RestKlinesClient(settings)
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)
    Path(barrier, str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(list(Path(barrier).iterdir())) < int(n) and time.monotonic() < deadline:
        time.sleep(0.02)
    outcome = client.fetch(Instrument("um", "BTCUSDT"), "1m", start, start + timedelta(days=1))
    print(json.dumps({
        "rows": outcome.frame.height,
        "close_sum": float(outcome.frame["close"].sum()) if outcome.frame.height else 0.0,
        "report": client.weight_report(),
        "error": outcome.error,
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
