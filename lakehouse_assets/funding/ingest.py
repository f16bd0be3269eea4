"""Bronze for funding: the monthly archive when it exists, REST (ccxt) for the days it does not cover yet.

Per futures instrument and month touched by the run:

1. If the month is over, fetch ``<SYMBOL>-fundingRate-YYYY-MM.zip`` + ``.CHECKSUM`` once, verify it and
   store it byte for byte under ``bronze/binance/<archive path>`` (``archive_ingest.store_verified``:
   a copy already in the lake that still matches the published CHECKSUM is reused, not downloaded).
   Every day of the month in the run then points at that one zip.
2. If the month is still running, or its archive is not published yet (404: monthly files land days
   to weeks after month end), the days come from REST and each day's raw response is stored as JSON.
   Rerunning those days after the month is published takes the archive instead, so REST rows are
   replaced, never mixed with archive rows for the same day.

The manifest has one row per (instrument, day) saying which source the day uses. Spot instruments
have no funding and are skipped.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime

import polars as pl

from lakehouse_assets.archive.client import ArchiveClient, ArchiveFetchError
from lakehouse_assets.archive.download import ArchiveIngestError, ChecksumMismatchError, StoredFile, store_verified
from lakehouse_assets.funding.parse import funding_month_file
from lakehouse_assets.funding.rest import (
    FUNDING_ENDPOINTS,
    FundingRestError,
    RestAccess,
    day_payloads,
    fetch_funding_info,
    fetch_funding_rows,
    rest_lake_path,
)
from lakehouse_assets.funding.schema import month_bounds, month_of
from lakehouse_assets.instruments import MARKETS, Instrument, futures_only
from lakehouse_assets.lake.store import LakeStore
from lakehouse_assets.redact import redact_text

log = logging.getLogger("lakehouse.bronze")

FUNDING_MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "market": pl.String(),
    "symbol": pl.String(),
    "date": pl.Date(),
    "month": pl.String(),
    "source": pl.String(),  # 'archive' | 'rest' | 'none' (no archive yet and REST disabled)
    "source_url": pl.String(),
    "lake_path": pl.String(),
    "sha256": pl.String(),
    "bytes": pl.Int64(),
    # archive: verified | no_checksum | mismatch_accepted; REST responses have no checksum: 'rest'
    "checksum_status": pl.String(),
    "published_sha256": pl.String(),
    "downloaded": pl.Boolean(),  # this run fetched the file (false: reused from the lake)
    "fetched_at": pl.Datetime("ms", "UTC"),
    "note": pl.String(),  # why a day is not from the archive
}


def funding_month_path(instrument: Instrument, month: str) -> str:
    """Archive-relative path of a monthly funding file, as data.binance.vision lays it out."""
    return f"{MARKETS[instrument.market]}/monthly/fundingRate/{instrument.symbol}/{funding_month_file(instrument.symbol, month)}"


def month_may_be_published(month: str, today: date) -> bool:
    """Only a finished month can have an archive; probing the running one would always 404."""
    return month_bounds(month)[1] <= today


@dataclass(frozen=True)
class FundingIngestStats:
    months_from_archive: int
    months_downloaded: int
    months_reused: int
    months_missing: int
    rest_days: int
    rest_rows: int


def ingest_funding(
    client: ArchiveClient,
    store: LakeStore,
    instruments: list[Instrument],
    days: list[date],
    *,
    rest: RestAccess | None,
    accept_checksum_mismatch: bool = False,
    today: date | None = None,
    max_workers: int = 4,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    expected: Callable[[Instrument, date], bool] | None = None,
) -> tuple[pl.DataFrame, FundingIngestStats]:
    """``expected(instrument, day)``: whether the instrument traded that day (the point-in-time universe;
    None: every day). A day it did not trade gets no manifest row, and a month without such a day is
    neither downloaded nor asked of REST."""
    today = today or now().date()
    futures = futures_only(instruments)
    trading = expected or (lambda _inst, _day: True)
    months = sorted({month_of(d) for d in days})
    jobs = [
        (inst, m) for inst in futures for m in months
        if month_may_be_published(m, today) and any(trading(inst, d) for d in days if month_of(d) == m)
    ]  # fmt: skip

    def fetch_month(job: tuple[Instrument, str]) -> StoredFile | Exception:
        inst, month = job
        try:
            return store_verified(
                client, store, funding_month_path(inst, month), instrument=inst, period=month,
                accept_checksum_mismatch=accept_checksum_mismatch,
            )  # fmt: skip
        except (ArchiveFetchError, ChecksumMismatchError, ValueError, OSError, RuntimeError) as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        results = dict(zip(jobs, pool.map(fetch_month, jobs)))
    failures: list[tuple[str, Exception]] = [
        (f"{funding_month_file(inst.symbol, month)} ({inst.key}, {month})", res)
        for (inst, month), res in results.items()
        if isinstance(res, Exception)
    ]
    stored = {job: res for job, res in results.items() if isinstance(res, StoredFile) and res.checksum_status != "missing"}

    fetched_at = now()
    rows: list[dict[str, object]] = []
    rest_days: dict[Instrument, list[date]] = {}
    failed_months = {job for job, res in results.items() if isinstance(res, Exception)}
    for inst in futures:
        for day in days:
            if not trading(inst, day):
                continue  # before its listing or after its delisting: nothing to fetch, nothing missing
            if (inst, month_of(day)) in failed_months:
                continue  # the run fails for this month anyway; no REST fallback for a refused archive
            archived = stored.get((inst, month_of(day)))
            if archived is None:
                rest_days.setdefault(inst, []).append(day)
                continue
            rows.append(
                dict(
                    market=inst.market, symbol=inst.symbol, date=day, month=month_of(day), source="archive",
                    source_url=archived.source_url, lake_path=archived.lake_path, sha256=archived.sha256,
                    bytes=archived.bytes, checksum_status=archived.checksum_status,
                    published_sha256=archived.published_sha256, downloaded=archived.downloaded, fetched_at=fetched_at,
                    note=None if archived.upstream_status == "ok"
                    else f"archive answered {archived.upstream_status}; the stored verified copy is used",
                )  # fmt: skip
            )

    rest_rows = 0
    info_by_market: dict[str, dict[str, dict]] = {}
    for inst, wanted in rest_days.items():
        why = {
            month: ("archive not published yet (404)" if (inst, month) in results else "month not over yet: no archive")
            for month in {month_of(d) for d in wanted}
        }
        if rest is None:
            for day in wanted:
                rows.append(
                    dict(
                        market=inst.market, symbol=inst.symbol, date=day, month=month_of(day), source="none",
                        source_url=None, lake_path=None, sha256=None, bytes=None, checksum_status="missing",
                        published_sha256=None, downloaded=False, fetched_at=fetched_at,
                        note=f"{why[month_of(day)]}; REST disabled (LAKEHOUSE_REST_FILL)",
                    )  # fmt: skip
                )
            continue
        label = f"{inst.key} REST funding for {wanted[0]}..{wanted[-1]}"
        try:
            exchange = rest.exchange(inst.market)
            if inst.market not in info_by_market:  # one fundingInfo call per market and run
                info_by_market[inst.market] = fetch_funding_info(exchange, call=lambda fn: rest.call(inst, fn))
            symbol = rest.symbol(inst)
            payloads = day_payloads(
                inst,
                wanted,
                lambda lo, hi: fetch_funding_rows(exchange, symbol, inst.symbol, lo, hi, call=lambda fn: rest.call(inst, fn)),
                info_by_market[inst.market].get(inst.symbol),
                now=fetched_at,
            )
        except Exception as exc:  # ccxt and the REST client raise their own types; name what failed
            message = redact_text(f"{label}: {type(exc).__name__}: {exc}")  # library messages may carry the URL
            failures.append((label, FundingRestError(message, transient=_transient(exc))))
            continue
        endpoint = FUNDING_ENDPOINTS[inst.market]
        for day, payload in payloads.items():
            key = rest_lake_path(inst, day)
            store.put_bytes(key, payload)
            rest_rows += payload.count(b'"fundingTime"')
            rows.append(
                dict(
                    market=inst.market, symbol=inst.symbol, date=day, month=month_of(day), source="rest",
                    source_url=f"{rest.describe(inst.market)} {endpoint}?symbol={inst.symbol}",
                    lake_path=key, sha256=hashlib.sha256(payload).hexdigest(), bytes=len(payload),
                    checksum_status="rest", published_sha256=None, downloaded=True, fetched_at=fetched_at,
                    note=why[month_of(day)],
                )  # fmt: skip
            )
    if failures:
        raise ArchiveIngestError(failures)

    manifest = pl.DataFrame(rows, schema=FUNDING_MANIFEST_SCHEMA).sort("market", "symbol", "date")
    archive_files = {(j, r.lake_path) for j, r in stored.items()}
    stats = FundingIngestStats(
        months_from_archive=len(archive_files),
        months_downloaded=sum(1 for r in stored.values() if r.downloaded),
        months_reused=sum(1 for r in stored.values() if not r.downloaded),
        months_missing=sum(1 for r in results.values() if isinstance(r, StoredFile) and r.checksum_status == "missing"),
        rest_days=sum(len(v) for v in rest_days.values()),
        rest_rows=rest_rows,
    )
    return manifest, stats


def _transient(exc: Exception) -> bool:
    """Throttling and network trouble may pass on a retry; a geo-block, an auth error or a bad symbol will not."""
    from lakehouse_assets.exchange.client import is_transient as exchange_error_is_transient  # imports ccxt

    if isinstance(exc, FundingRestError):
        return exc.transient
    verdict = exchange_error_is_transient(exc)  # RestAccessError no; FetchStopped unless the symbol is unknown
    if verdict is not None:
        return verdict
    return isinstance(exc, (ArchiveFetchError, TimeoutError, ConnectionError))
