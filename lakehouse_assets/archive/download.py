"""Bronze ingestion: copy archive files into the lake byte for byte, verified, with one manifest row each.

The raw zip is stored under ``bronze/binance/<the archive's own path>`` so its lineage is its
path: anyone can diff it against data.binance.vision. The manifest row says where it came from,
its sha256, and how far we trust it (``checksum_status``):

* ``verified``: sha256 equals the published ``.CHECKSUM``;
* ``no_checksum``: the archive (or mirror) publishes no CHECKSUM for this file;
* ``mismatch_accepted``: still mismatching after a second download, and the run was told to accept it;
* ``missing``: the archive answered 404 and the lake holds no copy. Not an error: daily files land
  T+1 and some never appear; the gap-fill layer uses these rows.

``upstream_status`` records what the archive answered this time (``ok``, ``not_found``,
``fetch_failed``), separately from how far the stored bytes are trusted. A file already stored
and verified stays in use when the archive answers 404 or cannot be reached (CDN files do vanish
and reappear): a bad moment upstream never turns a good day into a missing one.

A mismatch is retried once (Binance has published stale CHECKSUM files and re-uploaded zips),
then fails naming the file. Nothing unverified is written to the lake, and neither is a body
that is not a zip at all (an HTML error page served with 200).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime

import polars as pl

from lakehouse_assets.archive.client import ArchiveClient, ArchiveFetchError, ArchiveNotFound, parse_checksum
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.lake.store import LakeStore

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
    "upstream_status": pl.String(),
}

UPSTREAM_OK = "ok"
UPSTREAM_NOT_FOUND = "not_found"
UPSTREAM_FAILED = "fetch_failed"

# Local file headers, and the end-of-central-directory record an empty zip starts with.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class ChecksumMismatchError(RuntimeError):
    def __init__(self, file: str, instrument: Instrument, day: date | str, expected: str, actual: str) -> None:
        self.file = file
        super().__init__(
            f"{file} ({instrument.key}, {day}): sha256 {actual} does not match the published CHECKSUM "
            f"{expected}, also after downloading both again; not stored. If Binance's CHECKSUM is known to be "
            "stale, rerun with config accept_checksum_mismatch: true"
        )


class NotAZipError(RuntimeError):
    """The archive answered 200, twice, with something that is not a zip (a CDN/proxy error page, a
    captive portal). Never stored; not step-retried either: the next scheduled run or sensor tick asks again.
    """

    def __init__(self, file: str, instrument: Instrument, period: date | str, head: bytes) -> None:
        self.file = file
        kind = "an HTML page" if head.lstrip()[:1] == b"<" else "something that is not a zip"
        super().__init__(
            f"{file} ({instrument.key}, {period}): the archive sent {kind} ({head[:40]!r}) instead of the zip, "
            "also when asked again; not stored"
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
    upstream_status: str


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
    upstream_status: str = UPSTREAM_OK


def _stored_copy(store: LakeStore, lake_key: str) -> tuple[bytes, str | None, str] | None:
    """The copy bronze already holds: (bytes, its stored CHECKSUM digest or None, trust status).

    A copy whose stored CHECKSUM no longer matches it is not trusted (None): it will be fetched again.
    """
    if not store.exists(lake_key):
        return None
    data = store.get_bytes(lake_key)
    if not store.exists(lake_key + ".CHECKSUM"):
        return data, None, "no_checksum"
    name = lake_key.rsplit("/", 1)[-1]
    try:
        digest = parse_checksum(store.get_bytes(lake_key + ".CHECKSUM"), expected_name=name)
    except ValueError:
        return None
    return (data, digest, "verified") if _sha256(data) == digest else None


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
    source_url = client.public_url(path)  # credentials in the mirror URL never reach the manifest

    def keep_stored(upstream: str, why: Exception) -> StoredFile | None:
        held = _stored_copy(store, lake_key)
        if held is None:
            return None
        data, digest, status = held
        log.warning("%s (%s, %s): %s; keeping the copy bronze already holds", name, instrument.key, period, why)
        return StoredFile(source_url, lake_key, _sha256(data), len(data), status, digest, False, upstream)

    try:
        checksum_raw, expected = _published_digest(client, path)
    except ArchiveFetchError as exc:
        kept = keep_stored(UPSTREAM_FAILED, exc)
        if kept is None:
            raise
        return kept
    if expected is not None and store.exists(lake_key):
        stored = store.get_bytes(lake_key)
        if _sha256(stored) == expected:
            if not store.exists(lake_key + ".CHECKSUM") and checksum_raw is not None:
                # The zip landed but its CHECKSUM sibling did not (a crash between the two writes).
                store.put_bytes(lake_key + ".CHECKSUM", checksum_raw)
            return StoredFile(source_url, lake_key, expected, len(stored), "verified", expected, False)
    data: bytes | None = None
    status = "no_checksum"
    for attempt in (1, 2):
        try:
            data = client.fetch(path)
            if name.endswith(".zip") and not data.startswith(_ZIP_MAGIC):
                if attempt == 1:
                    log.warning("%s (%s, %s): the archive sent no zip, asking again", name, instrument.key, period)
                    data = client.fetch(path)
                if not data.startswith(_ZIP_MAGIC):
                    raise NotAZipError(name, instrument, period, data[:200])
        except ArchiveNotFound as exc:
            return keep_stored(UPSTREAM_NOT_FOUND, exc) or StoredFile(
                source_url, None, None, None, "missing", expected, False, UPSTREAM_NOT_FOUND
            )
        except (ArchiveFetchError, NotAZipError) as exc:
            kept = keep_stored(UPSTREAM_FAILED, exc)
            if kept is None:
                raise
            return kept
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
