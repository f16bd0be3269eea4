"""Bronze ingestion: copy archive files into the lake byte for byte, verified, with one manifest row each.

The raw zip is stored under ``bronze/binance/<the archive's own path>`` so its lineage is its
path: anyone can diff it against data.binance.vision. The manifest row says where it came from,
its sha256, and how far we trust it (``checksum_status``):

* ``verified``: sha256 equals the published ``.CHECKSUM``;
* ``no_checksum``: the archive (or mirror) publishes no CHECKSUM for this file;
* ``mismatch_accepted``: still mismatching after a second download, and the run was told to accept it;
* ``missing``: the archive answered 404. Not an error: daily files land T+1 and some never appear;
  the gap-fill layer uses these rows.

A mismatch is retried once (Binance has published stale CHECKSUM files and re-uploaded zips),
then fails naming the file. Nothing unverified is written to the lake.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime

import polars as pl

from lakehouse_assets.archive_client import ArchiveClient, ArchiveFetchError, ArchiveNotFound, parse_checksum
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.lake_store import LakeStore

RAW_PREFIX = "bronze/binance"

log = logging.getLogger("lakehouse.bronze")

MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "market": pl.String(),
    "symbol": pl.String(),
    "interval": pl.String(),
    "date": pl.Date(),
    "source_url": pl.String(),
    "lake_path": pl.String(),
    "sha256": pl.String(),
    "bytes": pl.Int64(),
    "checksum_status": pl.String(),
    "published_sha256": pl.String(),
    "downloaded": pl.Boolean(),
    "fetched_at": pl.Datetime("ms", "UTC"),
}


class ChecksumMismatchError(RuntimeError):
    def __init__(self, file: str, instrument: Instrument, day: date | str, expected: str, actual: str) -> None:
        self.file = file
        super().__init__(
            f"{file} ({instrument.key}, {day}): sha256 {actual} does not match the published CHECKSUM "
            f"{expected}, also after downloading both again; not stored. If Binance's CHECKSUM is known to be "
            "stale, rerun with config accept_checksum_mismatch: true"
        )


class ArchiveIngestError(RuntimeError):
    """Raised once per run with every file that failed, after the good files are safely stored."""

    def __init__(self, failures: list[tuple[str, Exception]]) -> None:
        self.failures = failures
        lines = "\n".join(f"- {name}: {exc}" for name, exc in failures)
        super().__init__(f"{len(failures)} archive file(s) failed:\n{lines}")


@dataclass(frozen=True)
class ManifestRow:
    market: str
    symbol: str
    interval: str
    date: date
    source_url: str
    lake_path: str | None
    sha256: str | None
    bytes: int | None
    checksum_status: str
    published_sha256: str | None
    downloaded: bool
    fetched_at: datetime


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _published_digest(client: ArchiveClient, path: str) -> tuple[bytes | None, str | None]:
    raw = client.fetch_optional(path + ".CHECKSUM")
    if raw is None:
        return None, None
    try:
        return raw, parse_checksum(raw, expected_name=path.rsplit("/", 1)[-1])
    except ValueError as exc:
        raise ValueError(f"{path}.CHECKSUM is malformed: {exc}") from exc


@dataclass(frozen=True)
class StoredFile:
    """Outcome of fetching one archive file into the lake (any data type: daily klines, monthly funding...)."""

    source_url: str
    lake_path: str | None
    sha256: str | None
    bytes: int | None
    checksum_status: str
    published_sha256: str | None
    downloaded: bool


def store_verified(
    client: ArchiveClient,
    store: LakeStore,
    path: str,
    *,
    instrument: Instrument,
    period: date | str,
    accept_checksum_mismatch: bool = False,
) -> StoredFile:
    """Copy one archive file into ``bronze/binance/<path>`` after checking it against its CHECKSUM.

    A copy already in the lake whose sha256 still equals the published CHECKSUM is reused without
    downloading the zip again (only the small CHECKSUM is fetched, so a re-published file is noticed).
    ``period`` (a day, or a month like ``2026-04``) only serves error messages.
    """
    name = path.rsplit("/", 1)[-1]
    lake_key = f"{RAW_PREFIX}/{path}"
    source_url = client.url_for(path)
    checksum_raw, expected = _published_digest(client, path)
    if expected is not None and store.exists(lake_key):
        stored = store.get_bytes(lake_key)
        if _sha256(stored) == expected:
            return StoredFile(source_url, lake_key, expected, len(stored), "verified", expected, False)
    data: bytes | None = None
    status = "no_checksum"
    for attempt in (1, 2):
        try:
            data = client.fetch(path)
        except ArchiveNotFound:
            return StoredFile(source_url, None, None, None, "missing", expected, False)
        if expected is None or _sha256(data) == expected:
            status = "verified" if expected else "no_checksum"
            break
        if attempt == 1:
            log.warning("%s (%s, %s): sha256 mismatch, downloading zip and CHECKSUM again", name, instrument.key, period)
            checksum_raw, expected = _published_digest(client, path)
    else:
        assert data is not None and expected is not None
        if not accept_checksum_mismatch:
            raise ChecksumMismatchError(name, instrument, period, expected, _sha256(data))
        status = "mismatch_accepted"
    assert data is not None
    store.put_bytes(lake_key, data)
    if checksum_raw is not None:
        store.put_bytes(lake_key + ".CHECKSUM", checksum_raw)
    return StoredFile(source_url, lake_key, _sha256(data), len(data), status, expected, True)


def ingest_file(
    client: ArchiveClient,
    store: LakeStore,
    instrument: Instrument,
    day: date,
    *,
    interval: str = "1m",
    accept_checksum_mismatch: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ManifestRow:
    stored = store_verified(
        client,
        store,
        instrument.daily_klines_path(interval, day),
        instrument=instrument,
        period=day,
        accept_checksum_mismatch=accept_checksum_mismatch,
    )
    return ManifestRow(
        market=instrument.market, symbol=instrument.symbol, interval=interval, date=day, fetched_at=now(),
        **asdict(stored),
    )


def ingest_files(
    client: ArchiveClient,
    store: LakeStore,
    jobs: Iterable[tuple[Instrument, date]],
    *,
    interval: str = "1m",
    accept_checksum_mismatch: bool = False,
    max_workers: int = 8,
) -> pl.DataFrame:
    """Fetch many files in parallel (downloads are I/O-bound); every failure is collected, then raised together."""
    jobs = list(jobs)

    def run(job: tuple[Instrument, date]) -> ManifestRow | Exception:
        try:
            return ingest_file(
                client, store, job[0], job[1], interval=interval, accept_checksum_mismatch=accept_checksum_mismatch
            )
        except (ArchiveFetchError, ChecksumMismatchError, ValueError, OSError, RuntimeError) as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        results = list(pool.map(run, jobs))
    failures = [
        (job[0].daily_klines_path(interval, job[1]).rsplit("/", 1)[-1] + f" ({job[0].key}, {job[1]})", res)
        for job, res in zip(jobs, results)
        if isinstance(res, Exception)
    ]
    if failures:
        raise ArchiveIngestError(failures)
    rows = [asdict(r) for r in results if isinstance(r, ManifestRow)]
    return pl.DataFrame(rows, schema=MANIFEST_SCHEMA)
