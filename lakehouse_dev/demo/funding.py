"""The funding part of ``make demo``: the bundled real USD-M BTCUSDT fundingRate month (2026-04).

Runs ``funding_job`` (bronze/funding_archive -> silver/funding_rates) over the month with the
universe ``um:BTCUSDT``: the sample has no COIN-M funding month, and the demo stays offline. Then it
prints what bronze stored (30 days served by one verified zip), the month in silver (snapped
slots, the interval read from the data, annualized rates), and a DuckDB as-of join showing the
no-look-ahead funding state of hourly bars.

gold/funding_features does that join for the gold/features bars of futures instruments, but the
sample has no futures klines in 2026-04 (nor funding beside its futures kline days), so the demo
does not build it: ``gold.funding_features`` does not exist in the demo lake.
"""

from __future__ import annotations

from typing import Any

from lakehouse_dev.demo import runs
from lakehouse_dev.demo.sample import FUNDING

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
    return runs.run(job, instance, FUNDING.start, FUNDING.end, symbols=FUNDING.symbols).success


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
    print(
        "gold.funding_features (funding at every gold/features bar) is not built by the demo: the sample has no\n"
        "futures klines in its funding month. On a real lake it follows gold/features through the automation."
    )
