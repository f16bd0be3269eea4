"""Bulk bronze ingestion of kline archives: list once, plan, fetch only what changed, one row per instrument-day.

Why: at universe scale the requests, not the bytes, are the cost. Asking each file's CHECKSUM costs
two requests per symbol-day, every run, even when nothing changed; a closed month is one monthly
zip instead of 28-31 daily ones. So a run

1. lists what bronze already holds (one lake listing per instrument), then what the archive holds
   (one bucket listing per instrument, in parallel): a malformed or unreachable listing fails here,
   before anything is written;
2. plans the file(s) of every instrument-day (``archive/plan.py``);
3. fetches the planned files in parallel (``download.store_listed``): a stored file whose listing
   entry is unchanged costs no request at all;
4. when a listed monthly file turns out to be absent (404: the listing ran ahead of the CDN), its
   days are planned again from the daily files;
5. returns the manifest, one row per instrument-day (``download.plan_manifest``). Files that failed
   are raised together (``ArchiveIngestError``) after the good ones are stored.

No Dagster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import polars as pl

from lakehouse_assets.archive.client import ArchiveClient
from lakehouse_assets.archive.download import (
    ArchiveIngestError,
    StoredFile,
    failed_files,
    fetch_planned,
    plan_manifest,
    stored_paths,
)
from lakehouse_assets.archive.listing import ArchiveListing
from lakehouse_assets.archive.plan import KlinePlan, list_for_plan, plan_klines
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.lake.store import LakeStore

log = logging.getLogger("lakehouse.bronze")


@dataclass(frozen=True)
class BulkStats:
    """What one run asked and got, counted per file (a monthly file serving 31 days counts once)."""

    instrument_days: int
    listing_calls: int
    monthly_files: int
    daily_files: int
    downloaded: int
    reused: int
    bytes_downloaded: int
    monthly_fallbacks: tuple[str, ...]  # "spot:BTCUSDT 2024-01": listed, but 404 when fetched

    def as_metadata(self) -> dict[str, int]:
        """What the manifest cannot say: the listing calls, and the files by period."""
        return {
            "listing_calls": self.listing_calls,
            "monthly_files": self.monthly_files,
            "daily_files": self.daily_files,
        }


def ingest_klines(
    client: ArchiveClient,
    listing: ArchiveListing,
    store: LakeStore,
    needs: Iterable[tuple[Instrument, date]],
    *,
    today: date,
    interval: str = "1m",
    accept_checksum_mismatch: bool = False,
    max_workers: int = 8,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[pl.DataFrame, BulkStats]:
    """Bronze for the instrument-days ``needs`` (see the module docstring); ``today`` is the UTC date that
    decides which months are closed."""
    needs = sorted(set(needs))
    instruments = sorted({inst for inst, _ in needs})
    held = stored_paths(store, instruments, interval, max_workers=max_workers)
    snapshot = list_for_plan(listing, needs, today=today, stored=held, interval=interval, max_workers=max_workers)
    plan = plan_klines(needs, snapshot, today=today, stored=held, interval=interval)

    def fetch(plan_: KlinePlan, done: dict) -> dict:
        todo = [f for f in plan_.files() if f.path not in done]
        return fetch_planned(client, store, todo, held=held, accept_checksum_mismatch=accept_checksum_mismatch,
                             max_workers=max_workers)  # fmt: skip

    results = fetch(plan, {})
    unavailable = {
        (f.instrument, f.label)
        for f in plan.files()
        if f.period == "monthly" and isinstance(r := results.get(f.path), StoredFile) and r.lake_path is None
    }
    if unavailable:
        shown = sorted(f"{inst.key} {month}" for inst, month in unavailable)
        log.warning("monthly file(s) listed but not served (404): %s; using the daily files", ", ".join(shown))
        list_for_plan(listing, needs, today=today, stored=held, interval=interval, max_workers=max_workers,
                      monthly_unavailable=unavailable, snapshot=snapshot)  # fmt: skip
        plan = plan_klines(needs, snapshot, today=today, stored=held, interval=interval,
                           monthly_unavailable=unavailable)  # fmt: skip
        results.update(fetch(plan, results))

    failures = failed_files(plan, results)
    if failures:
        raise ArchiveIngestError(failures)
    manifest = plan_manifest(plan, results, public_url=client.public_url, fetched_at=now())
    files = {f.path: f for f in plan.files()}
    stored = {path: r for path, r in results.items() if path in files and isinstance(r, StoredFile) and r.lake_path}
    stats = BulkStats(
        instrument_days=manifest.height,
        listing_calls=snapshot.requests,
        monthly_files=sum(1 for p in stored if files[p].period == "monthly"),
        daily_files=sum(1 for p in stored if files[p].period == "daily"),
        downloaded=sum(1 for r in stored.values() if r.downloaded),
        reused=sum(1 for r in stored.values() if not r.downloaded),
        bytes_downloaded=sum(r.bytes or 0 for r in stored.values() if r.downloaded),
        monthly_fallbacks=tuple(sorted(f"{inst.key} {month}" for inst, month in unavailable)),
    )
    return manifest, stats
