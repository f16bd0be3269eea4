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
``fetch_failed``, or ``not_listed``: the bucket listing does not hold the file, so it was not
asked for), separately from how far the stored bytes are trusted. A file already stored and
verified stays in use when the archive answers 404, cannot be reached or stops listing it (CDN
files do vanish and reappear): a bad moment upstream never turns a good day into a missing one.

Planned from the listing (``store_listed``, ``plan_manifest``): what the listing said about each
file (size, Last-Modified, ETag of the zip and of its CHECKSUM) is recorded next to bronze, under
``bronze/archive_listing/<archive path>.json``, once the file is stored and verified. A stored file
whose listing entry is unchanged is reused without a single request; a changed entry (Binance
re-published the file) fetches the CHECKSUM and, if the digest changed, the zip. The manifest keeps
one row per instrument-day and says which file serves it (``period`` daily/monthly, ``lake_path``).

A mismatch is retried once (Binance has published stale CHECKSUM files and re-uploaded zips),
then fails naming the file. Nothing unverified is written to the lake, and neither is a body
that is not a zip at all (an HTML error page served with 200).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime

import polars as pl

from lakehouse_assets.archive.client import ArchiveClient, ArchiveFetchError, ArchiveNotFound, parse_checksum
from lakehouse_assets.archive.listing import KlineFile, ListedFile
from lakehouse_assets.archive.plan import KlinePlan, PlannedFile
from lakehouse_assets.instruments import MARKETS, Instrument
from lakehouse_assets.lake.store import LakeObjectNotFound, LakeStore

RAW_PREFIX = "bronze/binance"
#: What the listing said about each stored file: ``<LISTING_PREFIX>/<archive path>.json``.
LISTING_PREFIX = "bronze/archive_listing"

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
    # Which file serves the day: 'daily' (its own zip) or 'monthly' (lake_path is the month's zip).
    "period": pl.String(),
    # The serving file as this run's listing reported it (null: not listed, or not planned from a listing).
    "listed_size": pl.Int64(),
    "listed_last_modified": pl.Datetime("ms", "UTC"),
    "listed_etag": pl.String(),
    # Set when bronze holds the day twice (a daily file serves it, its month's file holds it too).
    "monthly_lake_path": pl.String(),
    # Whether the two agree on the day's rows (null: not compared); disagreement says how they differ.
    "monthly_agrees": pl.Boolean(),
    "disagreement": pl.String(),
}

UPSTREAM_OK = "ok"
UPSTREAM_NOT_FOUND = "not_found"
UPSTREAM_FAILED = "fetch_failed"
UPSTREAM_NOT_LISTED = "not_listed"

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
    period: str = "daily"
    listed_size: int | None = None
    listed_last_modified: datetime | None = None
    listed_etag: str | None = None
    monthly_lake_path: str | None = None
    monthly_agrees: bool | None = None
    disagreement: str | None = None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _published_digest(
    client: ArchiveClient, path: str, published: bool | None = None
) -> tuple[bytes | None, str | None]:
    if published is False:  # the listing holds no CHECKSUM: asking would only earn a 404
        return None, None
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
    checksum_published: bool | None = None,
) -> StoredFile:
    """Copy one archive file into ``bronze/binance/<path>`` after checking it against its CHECKSUM.

    A copy already in the lake whose sha256 still equals the published CHECKSUM is reused without
    downloading the zip again (only the small CHECKSUM is fetched, so a re-published file is noticed).
    ``period`` (a day, or a month like ``2026-04``) only serves error messages. ``checksum_published``:
    whether the listing holds the CHECKSUM (False: it is never asked for; None: unknown, ask).
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
        checksum_raw, expected = _published_digest(client, path, checksum_published)
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
            checksum_raw, expected = _published_digest(client, path, checksum_published)
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
    """Fetch many daily files in parallel (downloads are I/O-bound); every failure is collected, then raised together.

    Without a listing: each file's CHECKSUM is asked for (two requests per instrument-day). The assets plan
    from the listing instead (``archive/bulk.py``); this stays for a mirror without a list API.
    """
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


# ----------------------------------------------------------------------------- planned from the listing


def listing_record_key(path: str) -> str:
    """Where bronze records what the listing said about the archive file ``path`` when it was stored."""
    return f"{LISTING_PREFIX}/{path}.json"


def _entry(listed: ListedFile | None) -> dict[str, object] | None:
    if listed is None:
        return None
    return {
        "size": listed.size,
        "last_modified": listed.last_modified.isoformat(timespec="milliseconds"),
        "etag": listed.etag,
    }


def listing_state(listed: KlineFile) -> dict[str, object]:
    """The part of a listing entry whose change means "re-published": the zip's and its CHECKSUM's
    size, Last-Modified and ETag."""
    return {"zip": _entry(listed.file), "checksum": _entry(listed.checksum)}


_RECORD_FIELDS = ("listing", "sha256", "bytes", "checksum_status", "published_sha256")


def read_listing_record(store: LakeStore, path: str) -> dict[str, object] | None:
    """The record of ``path``; None when there is none or it cannot be read (then the file is verified again)."""
    try:
        raw = store.get_bytes(listing_record_key(path))
    except LakeObjectNotFound:
        return None
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        log.warning("%s is unreadable; verifying %s against its CHECKSUM again", listing_record_key(path), path)
        return None
    if not isinstance(record, dict) or any(name not in record for name in _RECORD_FIELDS):
        return None
    return record


def _write_listing_record(store: LakeStore, path: str, listed: KlineFile, stored: StoredFile) -> None:
    record = {
        "path": path,
        "listing": listing_state(listed),
        "sha256": stored.sha256,
        "bytes": stored.bytes,
        "checksum_status": stored.checksum_status,
        "published_sha256": stored.published_sha256,
    }
    # Written last, after the zip and its CHECKSUM: a crash before it only costs one CHECKSUM request next run.
    store.put_bytes(listing_record_key(path), json.dumps(record, sort_keys=True).encode())


def _from_record(record: Mapping[str, object], source_url: str, lake_key: str, upstream: str) -> StoredFile:
    size = record["bytes"]
    return StoredFile(
        source_url,
        lake_key,
        str(record["sha256"]) if record["sha256"] is not None else None,
        int(size) if isinstance(size, int) else None,
        str(record["checksum_status"]),
        str(record["published_sha256"]) if record["published_sha256"] is not None else None,
        False,
        upstream,
    )


def store_listed(
    client: ArchiveClient,
    store: LakeStore,
    planned: PlannedFile,
    *,
    held: bool | None = None,
    accept_checksum_mismatch: bool = False,
) -> StoredFile:
    """Make sure bronze holds ``planned``, asking the archive only what its listing entry makes necessary.

    * not listed: never requested; a stored copy stays in use (``not_listed``), else the file is missing;
    * listed, stored, and its listing entry unchanged since it was stored: reused, zero requests;
    * otherwise (new file, changed entry, or a copy stored before entries were recorded):
      ``store_verified``, whose CHECKSUM request is skipped when the listing holds no CHECKSUM.

    ``held``: whether bronze holds the zip (known from one lake listing per instrument); None: ask the lake.
    """
    lake_key = f"{RAW_PREFIX}/{planned.path}"
    source_url = client.public_url(planned.path)
    if held is None:
        held = store.exists(lake_key)
    listed = planned.listed
    record = read_listing_record(store, planned.path) if held else None
    if listed is None:
        if record is not None:
            return _from_record(record, source_url, lake_key, UPSTREAM_NOT_LISTED)
        copy = _stored_copy(store, lake_key) if held else None
        if copy is not None:
            data, digest, status = copy
            log.warning("%s (%s, %s): not in the archive listing; keeping the copy bronze holds",
                        planned.name, planned.instrument.key, planned.label)  # fmt: skip
            return StoredFile(source_url, lake_key, _sha256(data), len(data), status, digest, False, UPSTREAM_NOT_LISTED)
        return StoredFile(source_url, None, None, None, "missing", None, False, UPSTREAM_NOT_LISTED)
    if record is not None and record["listing"] == listing_state(listed):
        return _from_record(record, source_url, lake_key, UPSTREAM_OK)
    stored = store_verified(
        client,
        store,
        planned.path,
        instrument=planned.instrument,
        period=planned.label,
        accept_checksum_mismatch=accept_checksum_mismatch,
        checksum_published=listed.has_checksum,
    )
    if stored.lake_path is not None and stored.upstream_status == UPSTREAM_OK:
        _write_listing_record(store, planned.path, listed, stored)
    return stored


def stored_paths(store: LakeStore, instruments: Iterable[Instrument], interval: str = "1m", max_workers: int = 8) -> set[str]:
    """Archive paths of the kline zips bronze holds for ``instruments`` (daily and monthly): one lake
    listing per instrument and period, instead of one existence check per file."""
    prefixes = [
        f"{RAW_PREFIX}/{MARKETS[inst.market]}/{period}/klines/{inst.symbol}/{interval}"
        for inst in sorted(set(instruments))
        for period in ("daily", "monthly")
    ]
    if not prefixes:
        return set()
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(prefixes)))) as pool:
        listed = list(pool.map(store.list_keys, prefixes))
    start = len(RAW_PREFIX) + 1
    return {key[start:] for keys in listed for key in keys if key.endswith(".zip")}


def fetch_planned(
    client: ArchiveClient,
    store: LakeStore,
    files: Iterable[PlannedFile],
    *,
    held: set[str] | None = None,
    accept_checksum_mismatch: bool = False,
    max_workers: int = 8,
) -> dict[str, StoredFile | Exception]:
    """``store_listed`` for every file, in parallel; a failure is returned (by path), never raised."""
    files = list(files)

    def run(planned: PlannedFile) -> StoredFile | Exception:
        try:
            return store_listed(
                client, store, planned,
                held=None if held is None else planned.path in held,
                accept_checksum_mismatch=accept_checksum_mismatch,
            )  # fmt: skip
        except (ArchiveFetchError, ChecksumMismatchError, ValueError, OSError, RuntimeError) as exc:
            return exc

    if not files:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(files)))) as pool:
        return dict(zip((f.path for f in files), pool.map(run, files)))


def failed_files(plan: KlinePlan, results: Mapping[str, StoredFile | Exception]) -> list[tuple[str, Exception]]:
    """``(file (instrument, period), error)`` for every planned file that failed, as ``ArchiveIngestError`` lists them."""
    return [
        (f"{planned.name} ({planned.instrument.key}, {planned.label})", result)
        for planned in plan.files()
        if isinstance(result := results.get(planned.path), Exception)
    ]


def plan_manifest(
    plan: KlinePlan,
    results: Mapping[str, StoredFile | Exception],
    *,
    public_url: Callable[[str], str],
    fetched_at: datetime,
) -> pl.DataFrame:
    """One manifest row per planned instrument-day, saying which stored file serves it.

    The daily file wins when bronze holds both (``monthly_lake_path`` then names the monthly one, for
    the comparison); a day no stored file serves is ``missing``, with what the archive answered (or
    ``not_listed``). Days whose file failed have no row: the run fails naming that file.
    """
    rows: list[dict[str, object]] = []
    for day in plan.days:
        outcome: dict[str, StoredFile] = {}
        failed = False
        for planned in (day.daily, day.monthly):
            if planned is None:
                continue
            result = results.get(planned.path)
            if isinstance(result, Exception):
                failed = True
            elif result is not None:
                outcome[planned.period] = result
        if failed:
            continue
        daily, monthly = outcome.get("daily"), outcome.get("monthly")
        serving: tuple[PlannedFile, StoredFile] | None = None
        if daily is not None and daily.lake_path is not None and day.daily is not None:
            serving = (day.daily, daily)
        elif monthly is not None and monthly.lake_path is not None and day.monthly is not None:
            serving = (day.monthly, monthly)
        if serving is None:
            planned = day.daily or day.monthly
            path = planned.path if planned is not None else day.instrument.daily_klines_path(plan.interval, day.day)
            answer = (daily or monthly).upstream_status if (daily or monthly) else UPSTREAM_NOT_LISTED
            rows.append(
                dict(
                    market=day.instrument.market, symbol=day.instrument.symbol, interval=plan.interval, date=day.day,
                    source_url=public_url(path), lake_path=None, sha256=None, bytes=None, checksum_status="missing",
                    published_sha256=(daily or monthly).published_sha256 if (daily or monthly) else None,
                    downloaded=False, fetched_at=fetched_at, upstream_status=answer,
                    period=planned.period if planned is not None else "daily",
                )  # fmt: skip
            )
            continue
        planned, stored = serving
        listed = planned.listed.file if planned.listed is not None else None
        both = planned.period == "daily" and monthly is not None and monthly.lake_path is not None
        rows.append(
            dict(
                market=day.instrument.market, symbol=day.instrument.symbol, interval=plan.interval, date=day.day,
                source_url=stored.source_url, lake_path=stored.lake_path, sha256=stored.sha256, bytes=stored.bytes,
                checksum_status=stored.checksum_status, published_sha256=stored.published_sha256,
                downloaded=stored.downloaded, fetched_at=fetched_at, upstream_status=stored.upstream_status,
                period=planned.period,
                listed_size=listed.size if listed else None,
                listed_last_modified=listed.last_modified if listed else None,
                listed_etag=listed.etag if listed else None,
                monthly_lake_path=monthly.lake_path if both and monthly is not None else None,
            )  # fmt: skip
        )
    return pl.DataFrame(rows, schema=MANIFEST_SCHEMA)
