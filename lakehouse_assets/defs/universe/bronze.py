"""bronze/exchange_info: the exchange's own instrument lists (spot, USD-M, COIN-M ``exchangeInfo``), stored raw, per UTC day."""

import functools

import dagster as dg
import polars as pl

from lakehouse_assets.defs.common.keys import BRONZE_EXCHANGE_INFO
from lakehouse_assets.defs.common.metadata import md_list, md_table
from lakehouse_assets.defs.common.partitions import daily_partitions_with_today, range_backfill_policy, window_days
from lakehouse_assets.defs.common.retries import failure_for, network_retry_policy
from lakehouse_assets.defs.common.selection import SYMBOLS_TAG, InstrumentSelection
from lakehouse_assets.defs.resources import BinanceRestResource, LakeResource, UniverseResource
from lakehouse_assets.instruments import MARKETS, Instrument, parse_instrument
from lakehouse_assets.lake.io_manager import SCOPE_ALL, SCOPE_KEY
from lakehouse_assets.universe import exchange_info_reports as reports
from lakehouse_assets.universe.exchange_info_bronze import (
    MANIFEST_SYMBOL,
    ExchangeInfoIngestError,
    ingest_exchange_info,
    utc_today,
)

GROUP = "universe"


@dg.asset(
    key=BRONZE_EXCHANGE_INFO,
    group_name=GROUP,
    partitions_def=daily_partitions_with_today,
    backfill_policy=range_backfill_policy,
    metadata={"partition_expr": "date"},
    pool="binance_api",
    kinds={"binance", "ccxt", "parquet"},
    retry_policy=network_retry_policy(),
)
def exchange_info(
    context: dg.AssetExecutionContext,
    config: InstrumentSelection,
    lake: LakeResource,
    universe: UniverseResource,
    binance_rest: BinanceRestResource,
) -> dg.Output[pl.DataFrame]:
    """The raw `exchangeInfo` answers of the markets LAKEHOUSE_SYMBOLS names (spot /api/v3, USD-M /fapi/v1,
    COIN-M /dapi/v1), fetched through ccxt with the REST client's URL overrides, rate limit and retries, and
    stored byte for byte under `bronze/binance/api/<market>/exchangeInfo/date=YYYY-MM-DD/exchangeInfo.json`.
    This table is the manifest: one row per market and day (source_url, lake_path, sha256, bytes, server_time,
    symbols, fetched_at, upstream_status). exchangeInfo describes the exchange NOW, so only the current UTC day's
    partition fetches; a past day re-lists the answer stored that day (`past_day`) and fails, naming it, when
    none was stored: today's universe filed under a past day would be look-ahead. A fetch that fails or returns
    a malformed body keeps the answer already stored for the day (`fetch_failed`); without one the run fails
    and writes nothing. COIN-M contract sizes for silver/klines come from these answers."""
    markets, scope = _markets(context, config, universe)
    days = window_days(context)
    rest = binance_rest.client() if binance_rest.enabled else None
    fetch = None
    if rest is not None:  # ccxt is imported only when REST is used
        from lakehouse_assets.exchange.exchange_info_fetch import fetch_exchange_info

        fetch = functools.partial(fetch_exchange_info, rest)
    previous = lake.scan_stored(BRONZE_EXCHANGE_INFO, [d.isoformat() for d in days])
    context.log.info(
        f"exchangeInfo of {', '.join(markets)} for {len(days)} day(s); REST "
        + (", ".join(rest.describe(m) for m in markets) if rest is not None else "off (LAKEHOUSE_REST_FILL=0)")
    )
    try:
        result = ingest_exchange_info(
            lake.store(), markets, days, today=utc_today(), fetch=fetch,
            previous=previous.collect() if previous is not None else None,
        )  # fmt: skip
    except ExchangeInfoIngestError as exc:
        raise failure_for(
            str(exc), (e for _, e in exc.failures),
            metadata={"failed": md_list((f"{what}: {e}" for what, e in exc.failures), empty=None)},
        ) from exc  # fmt: skip
    for problem in result.problems:
        context.log.warning(problem)
    newest = reports.newest(result.answers)
    manifest = result.manifest
    last = manifest.sort("date").group_by("market", maintain_order=True).last().sort("market")
    return dg.Output(
        manifest,
        metadata={
            SCOPE_KEY: scope,
            "markets": ", ".join(markets),
            "symbols": dg.MetadataValue.json({m: int(n) for m, n in last.select("market", "symbols").iter_rows()}),
            "statuses": dg.MetadataValue.json(reports.status_counts(newest)),
            "bytes": dg.MetadataValue.json({m: int(n) for m, n in last.select("market", "bytes").iter_rows()}),
            "server_time": dg.MetadataValue.json(
                {m: t.isoformat() for m, t in last.select("market", "server_time").iter_rows()}
            ),
            "upstream_not_ok": manifest.filter(pl.col("upstream_status") != "ok").height,
            "answers": md_table(reports.overview(manifest)),
            "not_listed": md_list(reports.not_listed(newest, _exact(universe))),
            "problems": md_list(result.problems),
        },
    )


def _markets(
    context: dg.AssetExecutionContext, config: InstrumentSelection, universe: UniverseResource
) -> tuple[list[str], str]:
    """The markets to fetch: those LAKEHOUSE_SYMBOLS names (exact entries and patterns alike: a pattern is
    resolved against the instruments these answers describe), or those of the run's instrument selection."""
    requested = list(config.symbols)
    tag = context.run.tags.get(SYMBOLS_TAG) if context.run else None
    if not requested and tag:
        requested = [part for part in tag.split(",") if part.strip()]
    if requested:
        try:
            chosen = {parse_instrument(text).market for text in requested}
        except ValueError as exc:
            raise dg.Failure(
                description=f"instrument selection {requested!r} (run config 'symbols' or tag '{SYMBOLS_TAG}'): {exc}",
                allow_retries=False,
            ) from exc
        markets = [m for m in MARKETS if m in chosen]
        return markets, ",".join(f"{m}:{MANIFEST_SYMBOL}" for m in markets)
    named = {entry.market or "spot" for entry in universe.spec().entries if not entry.exclude}
    return [m for m in MARKETS if m in named], SCOPE_ALL


def _exact(universe: UniverseResource) -> list[Instrument]:
    return universe.spec().exact
