"""bronze/klines_archive: the raw 1m kline zips of every instrument, per UTC day, plus their manifest."""

import dagster as dg
import polars as pl
from pydantic import Field

from lakehouse_assets.archive.download import ArchiveIngestError, ingest_files
from lakehouse_assets.defs.common.keys import BRONZE_KLINES
from lakehouse_assets.defs.common.metadata import md_list, md_table
from lakehouse_assets.defs.common.partitions import daily_partitions, range_backfill_policy, window_days
from lakehouse_assets.defs.common.retries import ingest_failure, network_retry_policy
from lakehouse_assets.defs.common.selection import InstrumentSelection, select_instruments
from lakehouse_assets.defs.resources import BinanceArchiveResource, LakeResource, UniverseResource
from lakehouse_assets.klines import reports
from lakehouse_assets.lake.io_manager import SCOPE_KEY
from lakehouse_assets.redact import redact_url


class BronzeConfig(InstrumentSelection):
    accept_checksum_mismatch: bool = Field(
        default=False,
        description="Store a file whose sha256 still differs from Binance's CHECKSUM after a second download "
        "(Binance has published stale CHECKSUMs); recorded as checksum_status='mismatch_accepted'.",
    )


@dg.asset(
    key=BRONZE_KLINES,
    group_name="bronze",
    partitions_def=daily_partitions,
    backfill_policy=range_backfill_policy,
    metadata={"partition_expr": "date"},
    pool="binance_archive",
    kinds={"binance", "parquet"},
    retry_policy=network_retry_policy(),
)
def klines_archive(
    context: dg.AssetExecutionContext,
    config: BronzeConfig,
    archive: BinanceArchiveResource,
    lake: LakeResource,
    universe: UniverseResource,
) -> dg.Output[pl.DataFrame]:
    """Raw Binance 1m kline archives (data.binance.vision layout), one daily partition for every configured
    instrument. Each zip is stored byte for byte under `bronze/binance/<archive path>` after its sha256
    is checked against the published CHECKSUM; this table is the manifest (one row per file: source URL,
    sha256, bytes, checksum status, fetched_at, upstream_status). A 404 is recorded as `missing`, not a
    failure. Files already stored with a matching sha256 are not downloaded again, and a stored verified
    file stays in use when the archive briefly answers 404 or fails (upstream_status says so)."""
    instruments, scope = select_instruments(context, config, universe.instruments())
    days = window_days(context)
    context.log.info(f"fetching {len(instruments)} instrument(s) x {len(days)} day(s) from {redact_url(archive.base_url)}")
    try:
        with archive.client() as client:
            manifest = ingest_files(
                client,
                lake.store(),
                [(inst, day) for day in days for inst in instruments],
                accept_checksum_mismatch=config.accept_checksum_mismatch,
                max_workers=archive.max_workers,
            )
    except ArchiveIngestError as exc:
        raise ingest_failure(exc.failures, str(exc)) from exc
    return dg.Output(
        manifest,
        metadata={
            SCOPE_KEY: scope,
            **reports.manifest_counts(manifest),
            "upstream_not_ok": md_list(reports.upstream_problems(manifest)),
            "missing_files": md_list(reports.missing_files(manifest)),
            "manifest": md_table(reports.manifest_overview(manifest)),
        },
    )
