"""The gold part of ``make demo``: resampled bars for every sample range, features where history allows.

gold/features reads up to 600 days before each day (see indicators.lookback_days), so it runs on
the sample range that starts at LAKEHOUSE_START_DATE (2020-01-01..03, spot BTCUSDT): there the
lookback is clipped at the first partition and the values equal TA-Lib over the whole history.
The other sample ranges sit after long stretches the sample does not contain; their features
would need those days materialized first, so the demo builds only their resampled bars.
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import dagster as dg

FEATURE_RANGE = ("2020-01-01", "2020-01-03")

LAST_HOURS_SQL = """
select market, symbol, open_time, close,
       round(rsi_14, 2) as rsi_14,
       round(macd_12_26_9, 3) as macd, round(macd_signal_12_26_9, 3) as signal, round(macd_hist_12_26_9, 3) as hist,
       round(bb_lower_20_2, 2) as bb_lower, round(bb_upper_20_2, 2) as bb_upper,
       round(atr_14, 2) as atr_14, round(vwap_24h, 2) as vwap_24h, round(realized_vol_24h, 3) as rv_24h
from gold.features
where interval = '1h'
order by open_time desc
limit 8
"""

RESAMPLED_SQL = """
select market, symbol, count(distinct date) as days,
       count(*) filter (where interval = '5m') as bars_5m,
       count(*) filter (where interval = '15m') as bars_15m,
       count(*) filter (where interval = '1h') as bars_1h,
       count(*) filter (where interval = '4h') as bars_4h,
       count(*) filter (where interval = '1d') as bars_1d,
       count(*) filter (where not is_complete) as incomplete_bars
from gold.klines_resampled
group by all
order by market, symbol
"""


def _run(
    job: dg.JobDefinition, instance: dg.DagsterInstance, start: str, end: str, selection: list[dg.AssetKey] | None
) -> bool:
    began = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        asset_selection=selection,
        raise_on_error=False,
    )
    what = "gold_job" if selection is None else "gold_job (klines_resampled only)"
    print(
        f"{what} {start}..{end}: {'ok' if result.success else 'FAILED'} in {time.perf_counter() - began:.1f}s (run {result.run_id[:8]})"
    )
    if not result.success:
        for event in result.all_events:
            if event.is_failure:
                print(event.message)
    return result.success


def run_gold(defs: dg.Definitions, instance: dg.DagsterInstance, ranges: list[tuple[str, str]], charts: Path) -> bool:
    """Materialize gold for the demo ranges; save the features charts as SVG files too."""
    from lakehouse_assets.defs.gold import GOLD_RESAMPLED

    job = defs.resolve_job_def("gold_job")
    ok = True
    for start, end in ranges:
        full = (start, end) == FEATURE_RANGE
        ok &= _run(job, instance, start, end, None if full else [GOLD_RESAMPLED])
    if not ok:
        return False
    record = instance.fetch_materializations(dg.AssetKey(["gold", "features"]), limit=1).records
    charts.mkdir(parents=True, exist_ok=True)
    for key, value in record[0].asset_materialization.metadata.items() if record else []:
        if key.startswith("chart "):
            match = re.search(r"base64,([A-Za-z0-9+/=]+)\)", str(value.value))
            if match:
                path = charts / (key.removeprefix("chart ").replace(":", "-") + ".svg")
                path.write_bytes(base64.b64decode(match.group(1)))
                print(f"chart saved: {path}")
    return True


def print_gold() -> None:
    import polars as pl

    from lakehouse_assets import query

    with pl.Config(tbl_rows=40, tbl_cols=-1, tbl_width_chars=200):
        print("\ngold.klines_resampled — bars per instrument and interval (incomplete = some minutes missing):")
        print(query(RESAMPLED_SQL))
        print(
            "\ngold.features — the last 1h bars of spot BTCUSDT with RSI(14), MACD(12,26,9), Bollinger(20,2), ATR(14):"
        )
        print(query(LAST_HOURS_SQL))
    print(
        "Charts: `make dev`, then Assets → gold/features → Overview → Metadata → `chart spot:BTCUSDT` → "
        "[Show Markdown]\n        (one chart per symbol and day: close, Bollinger bands, RSI, holes shaded; every "
        "day's is on the Events tab). The latest ones are also saved as SVG files under .demo/charts/."
    )
