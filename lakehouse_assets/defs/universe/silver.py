"""silver/instruments: the point-in-time instruments table (one row per instrument and validity period)."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from lakehouse_assets.archive.listing import ListingError
from lakehouse_assets.defs.common import sensors
from lakehouse_assets.defs.common.checks import check_result, raise_if_blocked
from lakehouse_assets.defs.common.keys import BRONZE_EXCHANGE_INFO, SILVER_INSTRUMENTS
from lakehouse_assets.defs.common.metadata import md_list, md_table
from lakehouse_assets.defs.common.retries import failure_for, network_retry_policy
from lakehouse_assets.defs.resources import BinanceArchiveResource, LakeResource, UniverseResource
from lakehouse_assets.exchange.exchange_info import ExchangeInfoError
from lakehouse_assets.klines.chart import chart_markdown
from lakehouse_assets.lake.io_manager import MISSING_KEY, MISSING_SKIP
from lakehouse_assets.redact import redact_url
from lakehouse_assets.universe import instruments_report as report
from lakehouse_assets.universe.archive_coverage import archive_coverage
from lakehouse_assets.universe.instruments_chart import traded_chart_svg
from lakehouse_assets.universe.instruments_quality import CHECK_DESCRIPTIONS, validate_instruments
from lakehouse_assets.universe.instruments_table import build_instruments
from lakehouse_assets.universe.snapshot_history import AnswerError, fold_answers

_ac = dg.AutomationCondition
#: Rebuilt after every new exchangeInfo answer. Not the sensor's default ``follow_upstream``: that waits
#: until no upstream partition is missing, and past days of exchangeInfo can never be fetched.
INSTRUMENTS_AUTOMATION = (
    _ac.any_deps_updated().since_last_handled() & ~_ac.any_deps_in_progress() & ~_ac.in_progress()
).with_label("after each bronze/exchange_info update")

_SHOWN = (
    "market",
    "symbol",
    "kind",
    "status",
    "valid_from",
    "valid_to",
    "first_archive_day",
    "last_archive_day",
    "source",
)


@dg.asset(
    key=SILVER_INSTRUMENTS,
    group_name="silver",
    ins={"answers": dg.AssetIn(key=BRONZE_EXCHANGE_INFO, metadata={MISSING_KEY: MISSING_SKIP})},
    kinds={"polars", "parquet"},
    pool="binance_archive",
    retry_policy=network_retry_policy(),
    automation_condition=INSTRUMENTS_AUTOMATION,
    check_specs=[
        dg.AssetCheckSpec(name, asset=SILVER_INSTRUMENTS, blocking=True, description=desc)
        for name, desc in CHECK_DESCRIPTIONS.items()
    ],
)
def instruments(
    context: dg.AssetExecutionContext,
    answers: pl.DataFrame | None,
    lake: LakeResource,
    universe: UniverseResource,
    archive: BinanceArchiveResource,
) -> Iterator[dg.Output[pl.DataFrame] | dg.AssetCheckResult]:
    """Every instrument of the markets LAKEHOUSE_SYMBOLS names, one row per validity period (a slowly
    changing table, unpartitioned: `silver/instruments/instruments.parquet`). Built from every stored
    exchangeInfo answer (bronze/exchange_info) and the archive's bucket listing (LAKEHOUSE_ARCHIVE_LISTING_URL):
    delisted symbols (listed by the archive, gone from exchangeInfo) end the day after their last archive
    file; a hole of LAKEHOUSE_RELIST_GAP_DAYS or more without files ends a period (a relisting starts a new
    row); attribute changes between answers (status, tick, lot, contract size) split a period. An
    instrument is expected on day D iff valid_from <= D < valid_to (null valid_to: still trading). The stored
    table is never shrunk: archive days and instruments a new listing omits are kept. Blocking checks
    (schema, unique_periods, no_overlap) run before anything is written."""
    today = sensors.utc_now().date()
    spec = universe.spec()
    markets = sorted({e.market for e in spec.entries if not e.exclude and e.market})
    store = lake.store()
    try:
        read = fold_answers(answers, store.get_bytes, markets=markets)
    except (AnswerError, ExchangeInfoError) as exc:
        raise dg.Failure(description=f"bronze/exchange_info: {exc}", allow_retries=False) from exc
    listing_url = redact_url(archive.resolved_listing_url())
    context.log.info(f"listing {', '.join(markets)} 1m klines at {listing_url} ({archive.max_workers} in parallel)")
    try:
        with archive.listing() as listing:
            coverage = archive_coverage(listing, markets, today=today, max_workers=archive.max_workers)
    except ListingError as exc:
        raise failure_for(f"{exc}; silver/instruments not written, the stored table is unchanged", [exc]) from exc
    history = read.history.frame()
    build = build_instruments(
        coverage.frame, history, newest=read.history.newest, today=today,
        relist_gap_days=universe.relist_gap_days, stored=lake.read_table(SILVER_INSTRUMENTS),
    )  # fmt: skip
    table = build.table

    outcomes = validate_instruments(table)
    yield from (check_result(outcome) for outcome in outcomes)
    raise_if_blocked("silver/instruments", outcomes)

    per_day = report.traded_per_day(table, end=today)
    if build.kept_from_stored or build.extended_from_stored:
        context.log.warning(
            f"silver/instruments kept what the stored table knew and the sources no longer show: "
            f"{len(build.kept_from_stored)} instrument(s) unchanged, {len(build.extended_from_stored)} with archive "
            "days the listing omits (never lose data)"
        )
    yield dg.Output(
        table,
        metadata={
            "markets": ", ".join(markets),
            "instruments": table.select("market", "symbol").n_unique(),
            "open_instruments": report.latest_rows(table).filter(pl.col("valid_to").is_null()).height,
            "by_market_status": md_table(report.by_market_status(table)),
            "delisted": md_table(report.delisted(table), limit=50),
            "instruments_table": md_table(report.latest_rows(table).select(_SHOWN), limit=100),
            "traded_per_day": dg.MetadataValue.md(
                chart_markdown(traded_chart_svg(per_day, title="instruments trading per day"), "instruments per day")
            ),
            "traded_by_month": md_table(report.monthly_counts(per_day), limit=36),
            "exchange_info_answers": read.parsed + read.unchanged,
            "exchange_info_parsed": read.parsed,  # the others repeat their market's previous answer
            "exchange_info_newest": md_list(f"{m}: {d.isoformat()}" for m, d in sorted(read.history.newest.items())),
            "listing_url": listing_url,
            "listed_symbols": md_list(f"{m}: {n}" for m, n in coverage.symbols.items()),
            "listing_calls": coverage.list_calls,
            "relist_gap_days": universe.relist_gap_days,
            "kept_from_stored": md_list(build.kept_from_stored[:100]),
            "archive_days_kept_from_stored": md_list(build.extended_from_stored[:100]),
        },
    )
