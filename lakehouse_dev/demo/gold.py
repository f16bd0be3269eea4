"""The gold part of ``make demo``: resampled bars for every sample range, features where history allows.

gold reads silver/klines_filled (the gap-filled series), which the demo has built just before.
``gapfill_to_gold`` then runs gold over the gap-fill showcase lake too (2020-01-02 with two hours
cut from its archive file and refilled from REST, 2020-01-03 entirely from REST) and compares it
with gold over the complete archive.

gold/features reads up to 600 days before each day (see indicators.lookback_days), so it runs on
the sample range that starts at LAKEHOUSE_START_DATE (2020-01-01..03, spot BTCUSDT): there the
lookback is clipped at the first partition and the values equal TA-Lib over the whole history.
The other sample ranges sit after long stretches the sample does not contain; their features
would need those days materialized first, so the demo builds only their resampled bars.
"""

from __future__ import annotations

import base64
import re
from datetime import date
from typing import Any

from lakehouse_dev.demo import runs
from lakehouse_dev.demo.gapfill import SHOWCASE_LAKE, SHOWCASE_SYMBOLS
from lakehouse_dev.demo.sample import DEMO_DIR, KLINES

FEATURE_RANGE = ("2020-01-01", "2020-01-03")
CHARTS = DEMO_DIR / "charts"

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


def run_gold(defs: Any, instance: Any) -> bool:
    """Materialize gold for the demo ranges (each with its own universe); save the features charts as SVG files."""
    import dagster as dg

    job = defs.resolve_job_def("gold_job")
    resampled_only = [dg.AssetKey(["gold", "klines_resampled"])]
    ok = True
    for r in KLINES:
        full = (r.start, r.end) == FEATURE_RANGE
        result = runs.run(
            job, instance, r.start, r.end, symbols=r.symbols,
            label="gold_job" if full else "gold_job (klines_resampled only)",
            selection=None if full else resampled_only,
        )
        ok &= result.success
    if not ok:
        return False
    record = instance.fetch_materializations(dg.AssetKey(["gold", "features"]), limit=1).records
    CHARTS.mkdir(parents=True, exist_ok=True)
    for key, value in record[0].asset_materialization.metadata.items() if record else []:
        if key.startswith("chart "):
            match = re.search(r"base64,([A-Za-z0-9+/=]+)\)", str(value.value))
            if match:
                path = CHARTS / (key.removeprefix("chart ").replace(":", "-") + ".svg")
                path.write_bytes(base64.b64decode(match.group(1)))
                print(f"chart saved: {path}")
    return True


SHOWCASE_HOURS_SQL = """
select open_time, r.source, r.minutes, r.is_complete, r.close, round(f.rsi_14, 4) as rsi_14, round(f.atr_14, 4) as atr_14
from gold.klines_resampled r join gold.features f using (market, symbol, interval, open_time)
where interval = '1h' and open_time between '2020-01-02 09:00:00+00' and '2020-01-02 13:00:00+00'
order by open_time
"""

COMPARE_COLUMNS = ("close", "rsi_14", "macd_12_26_9", "bb_upper_20_2", "atr_14", "vwap_24h")


def gapfill_to_gold(defs: Any) -> bool:
    """gold_job over the gap-fill showcase lake; compare its features with gold over the complete archive."""
    import dagster as dg
    import polars as pl

    from lakehouse_assets import query

    start, end = FEATURE_RANGE
    print(f"\nGold over the gap-fill showcase lake ({start}..{end}, spot BTCUSDT; klines_filled partly from REST):")
    select = (
        f"select interval, open_time, {', '.join(COMPARE_COLUMNS)} from gold.features "
        "where market = 'spot' and symbol = 'BTCUSDT'"
    )
    with runs.settings(LAKEHOUSE_STORAGE=str(SHOWCASE_LAKE)):
        # its own throw-away instance: runs over a damaged copy are not the demo lake's history
        job = defs.resolve_job_def("gold_job")
        if not runs.run(job, dg.DagsterInstance.ephemeral(), start, end, symbols=SHOWCASE_SYMBOLS).success:
            return False
        with pl.Config(tbl_rows=20, tbl_cols=-1, tbl_width_chars=160):
            print("gold 1h bars around the cut on 2020-01-02 (10:00–11:59 refilled from REST, which lacks 11:00–11:04):")
            print(query(SHOWCASE_HOURS_SQL))
        ours = query(select)
    complete = query(select)  # the demo lake: gold over the complete archive
    joined = ours.join(complete, on=["interval", "open_time"], how="full", suffix="_complete", coalesce=True)
    def equal(c: str) -> pl.Expr:  # both undefined, or equal to 1e-9 relative (rolling sums differ in the last bits)
        ours, theirs = pl.col(c), pl.col(f"{c}_complete")
        close = (ours - theirs).abs() <= 1e-9 * theirs.abs()
        return (ours.is_null() & theirs.is_null()) | close.fill_null(False)

    summary = (
        joined.with_columns(
            day=pl.col("open_time").dt.date(),
            same=pl.all_horizontal(equal(c) for c in COMPARE_COLUMNS),
            only_complete=pl.col("close").is_null(),
        )
        .group_by("day", "interval")
        .agg(
            rows=pl.len(),
            equal=pl.col("same").sum(),
            missing_here=pl.col("only_complete").sum(),
            first_different=pl.col("open_time").filter(~pl.col("same")).min().dt.strftime("%H:%M"),
            last_different=pl.col("open_time").filter(~pl.col("same")).max().dt.strftime("%H:%M"),
        )
        .sort("day", "interval")
    )
    with pl.Config(tbl_rows=20, tbl_cols=-1, tbl_width_chars=160):
        print(f"gold/features, showcase lake vs complete archive ({', '.join(COMPARE_COLUMNS)} equal to 1e-9):")
        print(summary)
    print(
        "The REST-filled 10:00–10:59 and the all-REST 2020-01-03 equal the archive's bars; what differs comes from the\n"
        "5 minutes nobody has: the 11:00 bar and the day's bar lack them, 1m indicators restart after 11:05 and converge\n"
        "again, and every 24h window holding the hole (VWAP) differs until it has moved past it."
    )
    day1 = summary.filter(pl.col("day") == date.fromisoformat(start))
    return day1.height == 3 and bool((day1["rows"] == day1["equal"]).all())


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
        "Charts: `make dev-offline`, then Assets → gold/features → Overview → Metadata → `chart spot:BTCUSDT` → "
        "[Show Markdown]\n        (one chart per symbol and day: close, Bollinger bands, RSI, holes shaded; every "
        "day's is on the Events tab). The latest ones are also saved as SVG files under .demo/charts/."
    )
