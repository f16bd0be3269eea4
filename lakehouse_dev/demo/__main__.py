"""``make demo``: bronze -> silver -> gap-fill -> gold, and funding, over the bundled sample of real Binance files, offline.

It builds a local mirror of the sample (same layout as data.binance.vision), points
LAKEHOUSE_ARCHIVE_URL at it with ``file://``, starts a local stand-in for Binance's REST API, and
runs the project's own jobs over each sample date range on the Dagster instance in DAGSTER_HOME (so
``make dev-offline`` shows the runs afterwards). Each range runs with LAKEHOUSE_SYMBOLS set to the
instruments the sample has on those days (``sample.py``). The showcases over damaged copies run on
throw-away instances and lakes of their own. It ends with DuckDB queries over the lake and the next steps.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lakehouse_dev import SAMPLE_DATA
from lakehouse_dev.demo import runs
from lakehouse_dev.demo.sample import KLINES, MIRROR, START_DATE, UNIVERSE, default_storage, offline_env, shell_line

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
    parser.add_argument("--mirror", type=Path, default=MIRROR)
    parser.add_argument("--storage", default=default_storage())
    args = parser.parse_args(argv)

    from lakehouse_dev.fixtures.sample_mirror import build_sample_mirror

    built = build_sample_mirror(SAMPLE_DATA, args.mirror)
    print(f"sample mirror: {args.mirror} ({len(built)} zip(s) built locally from Binance CSVs; see FIXTURE_BUILDER.md)")

    if "://" not in args.storage and Path(args.storage).is_dir():
        print(f"the lake {args.storage} exists: the demo adds to it and keeps what it holds ("
              "`make clean && make demo` starts from nothing)")
    os.environ["LAKEHOUSE_ARCHIVE_URL"] = args.mirror.resolve().as_uri()
    os.environ["LAKEHOUSE_STORAGE"] = args.storage
    os.environ["LAKEHOUSE_SYMBOLS"] = UNIVERSE  # the code location's universe; each run narrows it (runs.run)
    os.environ.setdefault("LAKEHOUSE_START_DATE", START_DATE)

    from lakehouse_dev.demo import gapfill

    rest_standin = gapfill.start_rest_standin()  # ccxt -> a local Binance REST API over the sample
    os.environ["LAKEHOUSE_REST_URL"] = rest_standin.base_url
    try:
        ok = _pipeline(args.mirror, rest_standin)
    finally:
        rest_standin.stop()
    if not ok:
        return 1
    _print_tables()
    _print_next_steps(args.storage, args.mirror)
    return 0


def _pipeline(mirror: Path, rest_standin: object) -> bool:
    import dagster as dg

    from lakehouse_assets.definitions import defs
    from lakehouse_dev.demo import funding, gapfill, gold

    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    print("\nbronze/exchange_info: today's exchangeInfo of spot, USD-M and COIN-M (REST = the local stand-in; COIN-M")
    print("contract sizes for silver/klines come from it):")
    if not _exchange_info(defs, instance):
        return False
    print("\nbronze -> silver (klines_job), one run per sample range, universe = the instruments of that range:")
    job = defs.resolve_job_def("klines_job")
    for r in KLINES:
        if not runs.run(job, instance, r.start, r.end, symbols=r.symbols).success:
            return False
    print(
        "(freshness warns, as it should: it asks whether data stopped arriving, and the sample's newest candle is\n"
        " from 2023. It stays a WARN in the UI for the demo lake; every other check passes.)"
    )

    print("\nsilver/klines_filled over the same days (gap-fill; REST = the local stand-in):")
    if not gapfill.fill_sample_ranges(defs, instance):
        return False
    if not gapfill.showcase(defs, mirror, rest_standin):
        return False

    print("\ngold: resampled bars and TA-Lib features (see lakehouse_dev/demo/gold.py for which ranges):")
    if not gold.run_gold(defs, instance):
        return False
    if not gold.gapfill_to_gold(defs):
        return False

    print("\nfunding: the bundled USD-M fundingRate month (monthly archive -> silver/funding_rates):")
    if not funding.run_funding(defs, instance):
        return False

    print("\nsilver/instruments: who traded when, from the stored exchangeInfo answers and the archive listing (for")
    print("this file:// mirror, its directory tree; the sample holds a few days per symbol, so archive days are those):")
    return _instruments(defs, instance)


def _exchange_info(defs: object, instance: object) -> bool:
    """Today's bronze/exchange_info over the whole demo universe: one answer per market, stored byte for byte."""
    from lakehouse_assets.defs.common.keys import BRONZE_EXCHANGE_INFO
    from lakehouse_assets.universe.exchange_info_bronze import utc_today

    def symbols(result: object) -> str:
        meta = result.asset_materializations_for_node(BRONZE_EXCHANGE_INFO.to_python_identifier())[0].metadata
        return ", ".join(f"{market} {n} symbols" for market, n in meta["symbols"].value.items()) + " (years-old answers: see PROVENANCE.md)"

    today = utc_today().isoformat()
    job = defs.resolve_implicit_global_asset_job_def()  # type: ignore[attr-defined]
    return runs.run(job, instance, today, today, selection=[BRONZE_EXCHANGE_INFO], label="bronze/exchange_info",
                    details=symbols).success  # fmt: skip


def _instruments(defs: object, instance: object) -> bool:
    """The unpartitioned instruments table, last: the klines runs above keep their exact universes."""
    import polars as pl

    from lakehouse_assets.defs.common.keys import SILVER_INSTRUMENTS

    node = SILVER_INSTRUMENTS.to_python_identifier()

    def counts(result: object) -> str:
        meta = result.asset_materializations_for_node(node)[0].metadata  # type: ignore[attr-defined]
        return f"{meta['instruments'].value} instruments, {meta['open_instruments'].value} still trading"

    job = defs.resolve_implicit_global_asset_job_def()  # type: ignore[attr-defined]
    result = runs.run(job, instance, None, None, selection=[SILVER_INSTRUMENTS], label="silver/instruments",
                      details=counts)
    if not result.success:
        return False
    with pl.Config(tbl_rows=20, tbl_width_chars=160):
        table = result.output_for_node(node)
        print(table.group_by("market", "status").agg(instruments=pl.col("symbol").n_unique()).sort("market", "status"))
    return True


def _print_tables() -> None:
    import polars as pl

    from lakehouse_assets import query
    from lakehouse_dev.demo import funding, gold

    with pl.Config(tbl_rows=100, tbl_cols=-1, tbl_width_chars=160):
        print("\nbronze.klines_archive — one manifest row per file (404s are recorded as 'missing'):")
        print(query(MANIFEST_SQL))
        print("\nsilver.klines — rows and first/last close per symbol and day (DuckDB over the Parquet lake):")
        print(query(SUMMARY_SQL))
    gold.print_gold()
    funding.print_funding()


def _print_next_steps(storage: str, mirror: Path) -> None:
    env = offline_env(storage, mirror)
    lake = "" if _is_default_lake(storage) else f"LAKEHOUSE_STORAGE={storage} "
    print(
        f"\nDone. Lake: {storage}   Dagster runs: {os.environ.get('DAGSTER_HOME') or '(ephemeral instance)'}\n"
        "\nNext steps:\n"
        "  make dev-offline   the Dagster UI on this lake (http://127.0.0.1:3000), nothing leaves the machine; it runs\n"
        f"                     {shell_line(env)} make dev\n"
        f'  {lake}.venv/bin/lakehouse query "select * from gold.features where interval = \'1h\' limit 5"\n'
        f"  {lake}.venv/bin/lakehouse tables\n"
        "  a notebook on .venv (or .venv/bin/python):\n"
        "      import polars as pl\n"
        "      import lakehouse_assets\n"
        "      bars = lakehouse_assets.query(\"select * from silver.klines_filled where date = '2020-01-02'\")\n"
        "      bars.group_by(\"symbol\").agg(pl.col(\"close\").last())\n"
        "  make dev           the UI on the real archive instead (downloads from data.binance.vision, REST from Binance)"
    )


def _is_default_lake(storage: str) -> bool:
    """Whether `lakehouse query` run from the project root, without LAKEHOUSE_STORAGE, reads this lake.

    When unsure, no: the printed commands then name the lake explicitly, which is always right.
    """
    from lakehouse_assets import settings
    from lakehouse_dev import REPO

    try:
        default = str(settings.SETTINGS["LAKEHOUSE_STORAGE"].parse_default())
    except Exception:  # a changed settings API must not spoil the demo's last lines
        return False
    if "://" in storage or "://" in default:
        return default == storage
    resolved = Path(default) if Path(default).is_absolute() else REPO / default
    return resolved.resolve() == Path(storage).resolve()


if __name__ == "__main__":
    raise SystemExit(main())
