"""Watching the Binance archive for new and re-published files (the logic behind the archive sensor).

Why a separate, Dagster-free module: the decision "which days need a bronze run now" must be cheap,
idempotent and testable without a daemon. Each sensor tick

1. lists the archive's bucket once per instrument and feed prefix (``listing_probe``: the daily 1m
   files of a month are one page), never asking for a file itself, and fingerprints every
   (instrument, day) file of the last few days from its listing entry: the zip's and its
   CHECKSUM's size, ETag and Last-Modified; ``None`` when the listing does not hold it (yet);
2. compares the fingerprints of each day with the ones recorded in the cursor;
3. asks for one bronze run per day whose set of files changed: a file appeared (late arrival) or
   its entry changed (Binance re-published it). The run key is ``<feed>:<day>:<digest>``, so the
   same state never triggers twice, and a new state always does. Bronze then re-downloads exactly
   the files whose entry changed (``download.store_listed``).

A listing that fails (network trouble after the client's retries, a malformed page) never triggers
a run and never erases what the cursor knew; its days are simply looked at again on the next tick.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta

from lakehouse_assets.archive.client import ArchiveFetchError, ArchiveNotFound
from lakehouse_assets.archive.listing import ArchiveListing, ListedFile, ListingError
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.redact import redact_text

#: 2: fingerprints come from the listing (1: from CHECKSUM/HEAD probes); an older cursor starts fresh.
CURSOR_VERSION = 2

#: Returns the fingerprint of one archive path, None if it is not published (yet).
Probe = Callable[[str], str | None]


@dataclass(frozen=True)
class ArchiveFeed:
    """One family of archive files that a bronze asset ingests (e.g. daily 1m klines).

    ``path_for`` maps (instrument, day) to the archive path of the file holding that day. For a
    monthly archive several days map to the same path; a change of that file re-requests every
    watched day it covers. ``listing_prefix`` maps them to the S3 prefix listed to find that file
    (default: its directory); a narrower one (``.../BTCUSDT-1m-2024-03``) keeps a symbol with years
    of daily files to one listing page per tick.
    """

    name: str
    path_for: Callable[[Instrument, date], str]
    lookback_days: int = 3
    listing_prefix: Callable[[Instrument, date], str] | None = None

    def prefix_for(self, instrument: Instrument, day: date) -> str:
        if self.listing_prefix is not None:
            return self.listing_prefix(instrument, day)
        return self.path_for(instrument, day).rsplit("/", 1)[0] + "/"


@dataclass(frozen=True)
class DayRequest:
    """A day whose files changed since the last tick: request its bronze partition."""

    day: date
    run_key: str
    present: int
    expected: int
    changed: tuple[str, ...]


@dataclass
class WatchResult:
    requests: list[DayRequest]
    cursor: str
    probe_errors: dict[str, str] = field(default_factory=dict)
    days_without_files: list[date] = field(default_factory=list)


def _entry_text(listed: ListedFile) -> str:
    return f"{listed.size}|{listed.etag or ''}|{listed.last_modified.isoformat(timespec='milliseconds')}"


def listed_fingerprint(listed: ListedFile, checksum: ListedFile | None) -> str:
    """``listing:<size>|<etag>|<last-modified>`` of the zip, and of its CHECKSUM when one is listed."""
    text = "listing:" + _entry_text(listed)
    return text + (";checksum:" + _entry_text(checksum) if checksum is not None else "")


def listing_probe(listing: ArchiveListing, prefixes: Iterable[str], max_workers: int = 8) -> Probe:
    """List each prefix once (in parallel), then answer every path from those listings.

    The probe returns None for a path its prefix's listing does not hold, and raises the prefix's
    :class:`ListingError` for a path under a prefix that could not be listed (``probe_all`` turns it
    into a probe error: the day waits for the next tick).
    """
    unique = sorted(set(prefixes))

    def run(prefix: str) -> tuple[str, list[ListedFile] | ListingError]:
        try:
            return prefix, listing.list_files(prefix)
        except ListingError as exc:
            return prefix, exc

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(unique) or 1))) as pool:
        answers = list(pool.map(run, unique))
    files = {f.key: f for _, listed in answers if not isinstance(listed, ListingError) for f in listed}
    failed = [(prefix, listed) for prefix, listed in answers if isinstance(listed, ListingError)]

    def probe(path: str) -> str | None:
        for prefix, error in failed:
            if path.startswith(prefix):
                raise error
        listed = files.get(path)
        return None if listed is None else listed_fingerprint(listed, files.get(path + ".CHECKSUM"))

    return probe


def watched_days(latest: date, lookback_days: int, start: date) -> list[date]:
    """The newest ``lookback_days`` partitions, newest first, never before the first partition."""
    return [d for d in (latest - timedelta(days=i) for i in range(lookback_days)) if d >= start]


def _digest(files: dict[str, str | None]) -> str:
    text = json.dumps(sorted(files.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_cursor(cursor: str | None) -> dict[str, dict[str, str | None]]:
    """``{day: {instrument_key: fingerprint}}`` from a cursor string; anything unreadable starts fresh."""
    if not cursor:
        return {}
    try:
        data = json.loads(cursor)
    except json.JSONDecodeError:
        return {}
    if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
        return {}
    days = data.get("days", {})
    return {str(k): dict(v) for k, v in days.items() if isinstance(v, dict)}


def dump_cursor(days: dict[str, dict[str, str | None]]) -> str:
    return json.dumps({"v": CURSOR_VERSION, "days": days}, sort_keys=True, separators=(",", ":"))


def probe_all(paths: Iterable[str], probe: Probe, max_workers: int = 8) -> tuple[dict[str, str | None], dict[str, str]]:
    """Fingerprint many paths in parallel; failures are returned separately, never raised."""
    unique = sorted(set(paths))

    def run(path: str) -> tuple[str, str | None, str | None]:
        try:
            return path, probe(path), None
        except ArchiveNotFound:
            return path, None, None
        except (ArchiveFetchError, ListingError, OSError, ValueError) as exc:
            return path, None, redact_text(f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(unique) or 1))) as pool:
        results = list(pool.map(run, unique))
    found = {path: fp for path, fp, err in results if err is None}
    errors = {path: err for path, _, err in results if err is not None}
    return found, errors


def plan_requests(
    feed: ArchiveFeed,
    instruments: Sequence[Instrument],
    days: Sequence[date],
    probe: Probe,
    cursor: str | None,
    *,
    max_workers: int = 8,
) -> WatchResult:
    """Decide which days need a bronze run, and the next cursor (see the module docstring)."""
    previous = load_cursor(cursor)
    paths = {(inst.key, day): feed.path_for(inst, day) for day in days for inst in instruments}
    found, errors = probe_all(paths.values(), probe, max_workers=max_workers)

    requests: list[DayRequest] = []
    without_files: list[date] = []
    next_days: dict[str, dict[str, str | None]] = {}
    for day in sorted(days):
        key = day.isoformat()
        before = previous.get(key, {})
        files: dict[str, str | None] = {}
        unknown = False
        for inst in instruments:
            path = paths[(inst.key, day)]
            if path in errors:
                unknown = True
                files[inst.key] = before.get(inst.key)
            else:
                files[inst.key] = found[path]
        next_days[key] = files
        present = sum(1 for fp in files.values() if fp is not None)
        if unknown:
            continue  # decide once every probe of the day has answered
        if present == 0:
            without_files.append(day)
            continue
        if files == before:
            continue
        changed = tuple(sorted(k for k, fp in files.items() if fp is not None and before.get(k) != fp))
        if not changed:
            continue  # only disappearances: nothing new to ingest
        requests.append(
            DayRequest(
                day=day,
                run_key=f"{feed.name}:{key}:{_digest(files)}",
                present=present,
                expected=len(instruments),
                changed=changed,
            )
        )
    return WatchResult(
        requests=requests,
        cursor=dump_cursor(next_days),
        probe_errors=errors,
        days_without_files=without_files,
    )
