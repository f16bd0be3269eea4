"""The funding part of ``make demo``: the bundled real USD-M BTCUSDT fundingRate month (2026-04).

Runs ``funding_job`` (bronze/funding_archive -> silver/funding_rates) over the month for
``um:BTCUSDT`` only: the sample has no COIN-M funding month, and the demo stays offline. Then it
prints what bronze stored (30 days served by one verified zip), the month in silver (snapped
slots, the interval read from the data, annualized rates), and a DuckDB as-of join showing the
no-look-ahead funding state of hourly bars. (gold/funding_features does the same join for the
gold/features bars; the sample has no USD-M klines in 2026-04 to show it on.)
"""

from __future__ import annotations

import time
from typing import Any

FUNDING_RANGE = ("2026-04-01", "2026-04-30")  # lakehouse_assets_tests/data/binance/PROVENANCE.md
FUNDING_SYMBOLS = "um:BTCUSDT"

BRONZE_SQL = """
select market, symbol, source, checksum_status, count(*) as days, count(distinct lake_path) as files,
       min(date) as first_day, max(date) as last_day
from bronze.funding_archive group by all order by all
"""

SILVER_SQL = """
select market, symbol, strftime(funding_time, '%Y-%m') as month, count(*) as settlements,
       string_agg(distinct funding_interval_hours::varchar, ',') as interval_h,
       count(*) filter (where calc_time <> funding_time) as snapped,
       max(epoch_ms(calc_time) - epoch_ms(funding_time)) as max_late_ms,
       round(avg(funding_rate) * 100, 5) as mean_rate_pct,
       round(avg(funding_rate * 24 / funding_interval_hours * 365) * 100, 3) as mean_annualized_pct,
       round(min(funding_rate) * 100, 5) as min_pct, round(max(funding_rate) * 100, 5) as max_pct
from silver.funding_rates group by all order by all
"""

# What gold/funding_features computes, in plain SQL: each hourly bar sees the last settlement whose
# calc_time is at or before the bar's close.
ASOF_SQL = """
with bars as (
  select open_time, open_time + interval 1 hour - interval 1 millisecond as close_time
  from generate_series(timestamptz '2026-04-10 06:00:00+00', timestamptz '2026-04-10 10:00:00+00', interval 1 hour) t(open_time))
select b.open_time, f.funding_time as last_funding_time, f.calc_time,
       round(f.funding_rate * 100, 6) as rate_pct,
       round(f.funding_rate * 24 / f.funding_interval_hours * 365 * 100, 4) as annualized_pct
from bars b asof left join silver.funding_rates f
  on f.market = 'um' and f.symbol = 'BTCUSDT' and b.close_time >= f.calc_time
order by b.open_time
"""


def run_funding(defs: Any, instance: Any) -> bool:
    job = defs.resolve_job_def("funding_job")
    began = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": FUNDING_RANGE[0],
            "dagster/asset_partition_range_end": FUNDING_RANGE[1],
            "lakehouse/symbols": FUNDING_SYMBOLS,
        },
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )
    status = "ok" if result.success else "FAILED"
    print(
        f"funding_job {FUNDING_RANGE[0]}..{FUNDING_RANGE[1]} ({FUNDING_SYMBOLS}): {status} in "
        f"{time.perf_counter() - began:.1f}s (run {result.run_id[:8]})"
    )
    if not result.success:
        for event in result.all_events:
            if event.is_failure:
                print(event.message)
    else:
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        print("  silver/funding_rates checks: " + ", ".join(f"{k} {'passed' if v else 'FAILED'}" for k, v in checks.items()))
    return result.success


def print_funding() -> None:
    import polars as pl

    from lakehouse_assets import query

    with pl.Config(tbl_rows=40, tbl_cols=-1, tbl_width_chars=200):
        print("\nbronze.funding_archive — where each day's funding comes from (one monthly zip serves the month):")
        print(query(BRONZE_SQL))
        print("\nsilver.funding_rates — the month; funding_rate is per interval, annualized = rate x 24/interval x 365:")
        print(query(SILVER_SQL))
        print("\nNo look-ahead: hourly bars see the last settlement visible at their close (DuckDB ASOF JOIN):")
        print(query(ASOF_SQL))
