"""``make demo``: bronze -> silver over the bundled sample of real Binance files, offline.

It builds a local mirror of the sample (same layout as data.binance.vision), points
LAKEHOUSE_ARCHIVE_URL at it with ``file://``, runs the real job over each sample date range on
the Dagster instance in DAGSTER_HOME (so ``make dev`` shows the runs afterwards), and prints a
DuckDB query over the resulting lake.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "lakehouse_assets_tests" / "data" / "binance"

DEMO_SYMBOLS = "spot:BTCUSDT,spot:ADABTC,um:BTCUSDT,cm:BTCUSD_PERP"
# Date ranges covered by the real sample files (see lakehouse_assets_tests/data/binance/PROVENANCE.md).
DEMO_RANGES = [
    ("2020-01-01", "2020-01-03"),  # spot BTCUSDT, Binance CHECKSUMs
    ("2021-11-27", "2021-11-27"),  # spot ADABTC (satoshi prices)
    ("2022-05-04", "2022-05-06"),  # USD-M BTCUSDT, no header row
    ("2022-10-24", "2022-10-25"),  # COIN-M BTCUSD_PERP, header row, volume in contracts
    ("2023-04-15", "2023-04-15"),  # USD-M BTCUSDT with a header row
]

SUMMARY_SQL = """
select date, market, symbol,
       count(*)                 as rows,
       arg_min(close, open_time) as first_close,
       arg_max(close, open_time) as last_close,
       round(sum(volume), 4)    as volume
from silver.klines
group by all
order by date, market, symbol
"""

MANIFEST_SQL = """
select checksum_status, count(*) as files, coalesce(sum(bytes), 0)::bigint as bytes
from bronze.klines_archive group by all order by files desc
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mirror", type=Path, default=REPO / ".demo" / "mirror")
    parser.add_argument("--storage", default=os.environ.get("LAKEHOUSE_STORAGE") or str(REPO / "lakehouse_data"))
    args = parser.parse_args(argv)

    from lakehouse_dev.fixtures.sample_mirror import build_sample_mirror

    built = build_sample_mirror(SAMPLE, args.mirror)
    print(f"sample mirror: {args.mirror} ({len(built)} zip(s) built locally from Binance CSVs; see FIXTURE_BUILDER.md)")

    os.environ["LAKEHOUSE_ARCHIVE_URL"] = args.mirror.resolve().as_uri()
    os.environ["LAKEHOUSE_STORAGE"] = args.storage
    os.environ["LAKEHOUSE_SYMBOLS"] = DEMO_SYMBOLS
    os.environ.setdefault("LAKEHOUSE_START_DATE", "2020-01-01")

    from lakehouse_dev.demo import gapfill as gapfill_demo

    rest_standin = gapfill_demo.start_rest_standin()  # ccxt -> a local Binance REST API over the sample
    os.environ["LAKEHOUSE_REST_URL"] = rest_standin.base_url

    import dagster as dg

    from lakehouse_assets import query
    from lakehouse_assets.definitions import defs

    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("klines_job")
    for start, end in DEMO_RANGES:
        began = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )
        status = "ok" if result.success else "FAILED"
        print(f"klines_job {start}..{end}: {status} in {time.perf_counter() - began:.1f}s (run {result.run_id[:8]})")
        if not result.success:
            for event in result.all_events:
                if event.is_failure:
                    print(event.message)
            return 1

    print("\nsilver/klines_filled over the same days (gap-fill; REST = the local stand-in):")
    filled_ok = gapfill_demo.fill_sample_ranges(defs.resolve_job_def("klines_filled_job"), instance, DEMO_RANGES)
    showcase_ok = gapfill_demo.showcase(instance, args.mirror, REPO / ".demo" / "gapfill", rest_standin)
    rest_standin.stop()
    if not (filled_ok and showcase_ok):
        return 1

    from lakehouse_dev.demo import gold as gold_demo

    print("\ngold: resampled bars and TA-Lib features (see lakehouse_dev/demo/gold.py for which ranges):")
    if not gold_demo.run_gold(defs, instance, DEMO_RANGES, REPO / ".demo" / "charts"):
        return 1
    if not gold_demo.gapfill_to_gold(REPO / ".demo" / "gapfill" / "lake"):
        return 1

    from lakehouse_dev.demo import funding as funding_demo

    print("\nfunding: the bundled USD-M fundingRate month (monthly archive -> silver/funding_rates):")
    if not funding_demo.run_funding(defs, instance):
        return 1

    import polars as pl

    with pl.Config(tbl_rows=100, tbl_cols=-1, tbl_width_chars=160):
        print("\nbronze.klines_archive — one manifest row per file (404s are recorded as 'missing'):")
        print(query(MANIFEST_SQL))
        print("\nsilver.klines — rows and first/last close per symbol and day (DuckDB over the Parquet lake):")
        print(query(SUMMARY_SQL))
    gold_demo.print_gold()
    funding_demo.print_funding()
    print(
        f"\nLake: {args.storage}\n"
        "Next: `make dev` opens the Dagster UI (set LAKEHOUSE_ARCHIVE_URL / LAKEHOUSE_SYMBOLS as above to stay offline);\n"
        "      `.venv/bin/lakehouse query \"select * from silver.klines limit 5\"` queries the lake from a shell."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
