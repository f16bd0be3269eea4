"""bronze/funding_archive: where each futures instrument-day's funding comes from (monthly archive or REST)."""

import dagster as dg
import polars as pl
from pydantic import Field

from lakehouse_assets.archive.download import ArchiveIngestError
from lakehouse_assets.defs.common.keys import BRONZE_FUNDING
from lakehouse_assets.defs.common.metadata import md_table
from lakehouse_assets.defs.common.partitions import daily_partitions, range_backfill_policy, window_days
from lakehouse_assets.defs.common.retries import ingest_failure, network_retry_policy
from lakehouse_assets.defs.common.selection import InstrumentSelection, select_universe
from lakehouse_assets.defs.resources import (
    BinanceArchiveResource,
    BinanceRestResource,
    LakeResource,
    UniverseResource,
)
from lakehouse_assets.funding import reports
from lakehouse_assets.funding.ingest import ingest_funding
from lakehouse_assets.funding.rest import rest_access_from_client
from lakehouse_assets.instruments import futures_only
from lakehouse_assets.lake.io_manager import SCOPE_KEY
from lakehouse_assets.redact import redact_url

# Bronze, silver and gold funding share a group, so klines_job and the gold jobs are unchanged for users
# without futures, and a funding outage never blocks the kline tables.
GROUP = "funding"


class FundingBronzeConfig(InstrumentSelection):
    accept_checksum_mismatch: bool = Field(
        default=False,
        description="Store a monthly file whose sha256 still differs from Binance's CHECKSUM after a second download "
        "(recorded as checksum_status='mismatch_accepted').",
    )
    rest: bool = Field(
        default=True,
        description="Fetch days whose month has no archive yet over REST (also needs LAKEHOUSE_REST_FILL on); "
        "false records them as source='none'.",
    )


@dg.asset(
    key=BRONZE_FUNDING,
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=range_backfill_policy,
    metadata={"partition_expr": "date"},
    pool="binance_api",
    kinds={"binance", "parquet"},
    retry_policy=network_retry_policy(),
)
def funding_archive(
    context: dg.AssetExecutionContext,
    config: FundingBronzeConfig,
    archive: BinanceArchiveResource,
    lake: LakeResource,
    universe: UniverseResource,
    binance_rest: BinanceRestResource,
) -> dg.Output[pl.DataFrame]:
    """Raw funding-rate sources of every USD-M (um) and COIN-M (cm) instrument in the universe, one row per
    instrument-day saying where the day's funding comes from. Binance publishes funding only as MONTHLY archives
    (data/futures/<um|cm>/monthly/fundingRate/<SYMBOL>/<SYMBOL>-fundingRate-YYYY-MM.zip): a month is downloaded
    once, verified against its CHECKSUM, stored byte for byte under bronze/binance/<archive path> and reused for
    every day of the month (source='archive'). Days whose month is still running or not published yet come from
    ccxt fetch_funding_rate_history (binanceusdm / binancecoinm) and are stored as raw JSON under
    bronze/rest/<exchange>/fundingRate/ (source='rest'); re-materializing them once the month is published
    replaces them with the archive. Spot instruments have no funding and are skipped."""
    days = window_days(context)
    run = select_universe(context, config, universe, days)  # point in time: no month before listing/after delisting
    instruments, scope = run.instruments, run.scope
    futures = futures_only(instruments)
    rest_on = binance_rest.enabled and config.rest
    rest_client = binance_rest.client() if rest_on and futures else None
    rest = rest_access_from_client(rest_client) if rest_client is not None else None
    context.log.info(
        f"funding for {len(futures)} futures instrument(s) x {len(days)} day(s) "
        f"({len(instruments) - len(futures)} spot instrument(s) skipped); archive {redact_url(archive.base_url)}, REST {'on' if rest_on else 'off'}"
    )
    try:
        with archive.client() as client:
            manifest, stats = ingest_funding(
                client, lake.store(), futures, days, rest=rest,
                accept_checksum_mismatch=config.accept_checksum_mismatch, max_workers=archive.max_workers,
                expected=run.daily.is_expected,
            )  # fmt: skip
    except ArchiveIngestError as exc:
        raise ingest_failure(exc.failures, str(exc)) from exc  # FundingRestError knows if it may pass
    return dg.Output(
        manifest,
        metadata={
            SCOPE_KEY: scope,
            **run.metadata(),
            **reports.source_counts(manifest, stats, spot_skipped=len(instruments) - len(futures)),
            "sources": md_table(reports.sources_by_month(manifest)),
            **(rest_client.weight_report() if rest_client is not None else {}),  # REST weight used and waited for
        },
    )
