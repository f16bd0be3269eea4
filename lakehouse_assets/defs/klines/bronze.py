"""bronze/klines_archive: the raw 1m kline zips of every instrument, per UTC day, plus their manifest."""

from collections.abc import Iterator

import dagster as dg
import polars as pl
from pydantic import Field

from lakehouse_assets.archive.bulk import ingest_klines
from lakehouse_assets.archive.download import ArchiveIngestError
from lakehouse_assets.archive.listing import ListingError
from lakehouse_assets.defs.common import sensors
from lakehouse_assets.defs.common.keys import BRONZE_KLINES
from lakehouse_assets.defs.common.metadata import md_list, md_table
from lakehouse_assets.defs.common.partitions import daily_partitions, range_backfill_policy, window_days
from lakehouse_assets.defs.common.retries import failure_for, ingest_failure, network_retry_policy
from lakehouse_assets.defs.common.selection import InstrumentSelection, select_universe
from lakehouse_assets.defs.resources import BinanceArchiveResource, LakeResource, UniverseResource
from lakehouse_assets.klines import reports
from lakehouse_assets.klines.agreement import compare_with_monthly
from lakehouse_assets.lake.io_manager import SCOPE_KEY
from lakehouse_assets.redact import redact_url

#: WARN check: where bronze holds a day twice (daily file and its month's file), they agree on its rows.
MONTHLY_AGREEMENT_CHECK = "monthly_matches_daily"


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
    check_specs=[
        dg.AssetCheckSpec(
            MONTHLY_AGREEMENT_CHECK,
            asset=BRONZE_KLINES,
            description="WARN when a day's daily file and its month's monthly file (both stored) disagree on the "
            "day's bars; the daily file serves the day, the manifest's `disagreement` says how they differ.",
        )
    ],
)
def klines_archive(
    context: dg.AssetExecutionContext,
    config: BronzeConfig,
    archive: BinanceArchiveResource,
    lake: LakeResource,
    universe: UniverseResource,
) -> Iterator[dg.Output[pl.DataFrame] | dg.AssetCheckResult]:
    """Raw Binance 1m kline archives (data.binance.vision layout), one daily partition for every configured
    instrument, planned from the archive's bucket listing (listed once per instrument and run): a closed
    month takes its one monthly zip, the running month (or a month whose monthly file is not out yet) the
    daily zips, and a file the listing does not hold is never requested. Each zip is stored byte for byte
    under `bronze/binance/<archive path>` after its sha256 is checked against the published CHECKSUM, and
    a stored file whose listing entry (size, Last-Modified, ETag) is unchanged costs no request. This table
    is the manifest, one row per instrument-day: the file serving it (`period` daily/monthly, `lake_path`),
    source URL, sha256, bytes, checksum status, fetched_at, upstream_status. A day without a file is
    `missing`, not a failure; a stored file stays in use when the archive answers 404, fails or stops
    listing it. When a day is held by both a daily and a monthly file the daily one serves it and the two
    are compared (`monthly_agrees`, `disagreement`, check `monthly_matches_daily`)."""
    days = window_days(context)
    run = select_universe(context, config, universe, days)  # point in time: no download before listing/after delisting
    instruments, scope = run.instruments, run.scope
    context.log.info(
        f"fetching {len(instruments)} instrument(s) x {len(days)} day(s) from {redact_url(archive.base_url)}, "
        f"planned from the listing at {redact_url(archive.resolved_listing_url())}"
    )
    store = lake.store()
    try:
        with archive.client() as client, archive.listing() as listing:
            manifest, stats = ingest_klines(
                client,
                listing,
                store,
                run.pairs(),
                today=sensors.utc_now().date(),
                accept_checksum_mismatch=config.accept_checksum_mismatch,
                max_workers=archive.max_workers,
            )
    except ListingError as exc:  # before anything was downloaded or written
        raise failure_for(str(exc), [exc]) from exc
    except ArchiveIngestError as exc:
        raise ingest_failure(exc.failures, str(exc)) from exc
    manifest, agreement = compare_with_monthly(manifest, store, zip_limits=archive.zip_limits())
    disagreeing = agreement.filter(pl.col("disagreement").is_not_null())
    yield dg.AssetCheckResult(
        check_name=MONTHLY_AGREEMENT_CHECK,
        passed=disagreeing.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{disagreeing.height} of {agreement.height} day(s) held by both a daily and a monthly file "
        "disagree (the daily file serves them)",
        metadata={"compared_days": agreement.height, "disagreements": md_table(disagreeing)},
    )
    yield dg.Output(
        manifest,
        metadata={
            SCOPE_KEY: scope,
            **run.metadata(),
            **reports.manifest_counts(manifest),
            **stats.as_metadata(),
            "monthly_fallbacks": md_list(stats.monthly_fallbacks),
            "upstream_not_ok": md_list(reports.upstream_problems(manifest)),
            "missing_files": md_list(reports.missing_files(manifest)),
            "monthly_disagreements": disagreeing.height,
            "manifest": md_table(reports.manifest_overview(manifest)),
        },
    )
