"""What the Binance archive holds, read from its bucket listing instead of probed file by file.

Why: data.binance.vision is a static site over an S3 bucket. Guessing file names and probing each
one (a HEAD or a CHECKSUM per day) cannot tell "not published yet" from "this symbol was delisted
in 2022", and costs two requests per symbol-day. The bucket's public list API (S3 ListObjects v1:
``?prefix=&delimiter=/&marker=``, ``ListBucketResult`` XML, at most 1000 entries per page) answers
which symbols exist per market and data type, and which daily/monthly files each has, with their
size, Last-Modified and ETag, in one request per 1000 files. That finds delisted symbols, each
symbol's first and last archive day, and re-published files, without downloading anything.

* Every page is followed; a listing that is not what S3 sends (not XML, another root, an entry
  without its fields, a truncated page without a marker, a marker that does not advance) is a
  :class:`ListingError` naming the (redacted) page URL, never a silently short listing.
* Pages are fetched through :class:`ArchiveClient`, so the listing has the same connect/read
  timeouts, total deadline, retries and redaction as the downloads.
* XML from the network is parsed with the stdlib parser only after refusing any DTD or entity
  declaration (no entity expansion, no external fetches).
* A ``file://`` mirror has no list API: its directory tree is listed with the same semantics (S3
  prefixes, keys in byte order), so offline runs plan from the same answers. Its ``etag`` is None:
  hashing every file of a local mirror to list it would cost as much as reading the mirror.

Pure module (no Dagster).
"""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final, Literal

from lakehouse_assets.archive.client import (
    DEFAULT_DEADLINE_SECONDS,
    ArchiveClient,
    ArchiveFetchError,
    ArchiveNotFound,
)
from lakehouse_assets.http_transfer import DEFAULT_CONNECT_TIMEOUT_SECONDS
from lakehouse_assets.instruments import MARKETS
from lakehouse_assets.redact import redact_url

__all__ = [
    "DEFAULT_LISTING_URL",
    "S3_NAMESPACE",
    "ArchiveListing",
    "KlineFile",
    "ListedFile",
    "ListingError",
]

#: Where data.binance.vision's own index page lists the bucket (path-style S3 URL).
DEFAULT_LISTING_URL: Final = "https://s3-ap-northeast-1.amazonaws.com/data.binance.vision"
S3_NAMESPACE: Final = "http://s3.amazonaws.com/doc/2006-03-01/"
_NS: Final = {"s3": S3_NAMESPACE}
_DELIMITER: Final = "/"
_DECLARATION_RE: Final = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)

Period = Literal["daily", "monthly"]


class ListingError(Exception):
    """The listing could not be read or is not a well-formed S3 listing; names the (redacted) URL.

    ``transient`` is True when the page could not be fetched for reasons that may pass (timeouts,
    5xx); a malformed answer is not transient: asking again returns the same page.
    """

    def __init__(self, url: str, reason: str, *, transient: bool = False) -> None:
        self.url = redact_url(url)
        self.reason = reason
        self.transient = transient
        super().__init__(f"archive listing {self.url}: {reason}")


@dataclass(frozen=True)
class ListedFile:
    """One object of the bucket (or file of a mirror) as the listing reports it."""

    key: str
    size: int
    last_modified: datetime  # UTC, millisecond precision (what S3 reports)
    etag: str | None  # without S3's quotes; None for a file:// mirror


@dataclass(frozen=True)
class KlineFile:
    """A kline zip of the archive with the day (daily) or month (monthly, ``day`` = its 1st) it covers."""

    file: ListedFile
    period: Period
    day: date
    checksum: ListedFile | None  # the published ``.CHECKSUM`` sibling, if any

    @property
    def key(self) -> str:
        return self.file.key

    @property
    def month(self) -> str:
        return self.day.strftime("%Y-%m")

    @property
    def has_checksum(self) -> bool:
        return self.checksum is not None


@dataclass(frozen=True)
class _Page:
    dirs: list[str]
    files: list[ListedFile]
    truncated: bool
    next_marker: str | None


class ArchiveListing:
    """Lists the Binance archive bucket (or a ``file://`` mirror) by S3 prefix, following every page.

    The client settings are those of :class:`ArchiveClient` (timeouts, deadline, attempts);
    ``client`` is public so tests can make its backoff instantaneous.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_LISTING_URL,
        *,
        timeout: float = 30.0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
        max_attempts: int = 5,
        backoff_seconds: float = 0.5,
    ) -> None:
        self.client = ArchiveClient(
            base_url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            deadline_seconds=deadline_seconds,
            max_attempts=max_attempts,
            backoff_seconds=backoff_seconds,
        )
        self.base_url = self.client.base_url
        self._root = (
            Path(urllib.request.url2pathname(urllib.parse.urlsplit(self.base_url).path))
            if self.client.scheme == "file"
            else None
        )

    # ------------------------------------------------------------------ raw listing

    def list_dirs(self, prefix: str) -> list[str]:
        """The common prefixes (``.../BTCUSDT/``) directly under ``prefix``, S3 semantics."""
        return self._list(prefix)[0]

    def list_files(self, prefix: str) -> list[ListedFile]:
        """The objects directly under ``prefix`` (not in deeper "directories"), S3 semantics."""
        return self._list(prefix)[1]

    # ------------------------------------------------------------------ archive layout

    def symbols(self, market: str, data_type: str = "klines", period: Period = "daily") -> list[str]:
        """Symbols with a directory under ``data/<market>/<period>/<data_type>/``, delisted ones included."""
        prefix = f"{_market_root(market)}/{period}/{data_type}/"
        return [d[len(prefix) :].rstrip(_DELIMITER) for d in self.list_dirs(prefix)]

    def kline_files(
        self, market: str, symbol: str, interval: str = "1m", period: Period = "daily", *, within: str = ""
    ) -> list[KlineFile]:
        """The published kline zips of one symbol and interval, oldest first, each with its CHECKSUM sibling.

        Names that do not follow Binance's ``<SYM>-<interval>-<YYYY-MM[-DD]>.zip`` are left out: a
        planner must never request a file whose period it cannot tell. ``within`` narrows the listing
        to names starting with ``<SYM>-<interval>-<within>`` (``"2024-03"``: that month's daily files,
        one page instead of the symbol's whole history).
        """
        if within and not re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?-?", within):
            raise ValueError(f"within must be a date prefix like '2024', '2024-03' or '2024-03-', got {within!r}")
        directory = f"{_market_root(market)}/{period}/klines/{symbol}/{interval}/"
        prefix = directory + (f"{symbol}-{interval}-{within}" if within else "")
        stamp = r"(\d{4})-(\d{2})-(\d{2})" if period == "daily" else r"(\d{4})-(\d{2})()"
        pattern = re.compile(rf"{re.escape(symbol)}-{re.escape(interval)}-{stamp}\.zip")
        files = self.list_files(prefix)
        by_key = {f.key: f for f in files}
        result: list[KlineFile] = []
        for listed in files:
            match = pattern.fullmatch(listed.key[len(directory) :])
            if match is None:
                continue
            year, month, day = match.groups()
            try:
                covered = date(int(year), int(month), int(day or 1))
            except ValueError:
                continue
            result.append(KlineFile(listed, period, covered, by_key.get(listed.key + ".CHECKSUM")))
        return sorted(result, key=lambda f: f.day)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ArchiveListing:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ArchiveListing({redact_url(self.base_url)!r})"

    # ------------------------------------------------------------------ S3 list API

    def _list(self, prefix: str) -> tuple[list[str], list[ListedFile]]:
        if self._root is not None:
            return _list_directory(self._root, prefix)
        dirs: list[str] = []
        files: list[ListedFile] = []
        marker = ""
        while True:
            url = self._page_url(prefix, marker)
            page = _parse_page(self._get(url), url, prefix)
            dirs.extend(page.dirs)
            files.extend(page.files)
            if not page.truncated:
                return dirs, files
            following = page.next_marker or (page.files[-1].key if page.files else page.dirs[-1] if page.dirs else None)
            if following is None:
                raise ListingError(url, "page is truncated but gives no NextMarker and no key to continue from")
            if following <= marker:
                raise ListingError(url, f"marker does not advance: {following!r} after {marker!r}")
            marker = following

    def _page_url(self, prefix: str, marker: str) -> str:
        parts = urllib.parse.urlsplit(self.base_url)
        params = {"prefix": prefix, "delimiter": _DELIMITER}
        if marker:
            params["marker"] = marker
        query = urllib.parse.urlencode(params)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))

    def _get(self, url: str) -> bytes:
        try:
            return self.client.fetch_url(url)
        except ArchiveNotFound:
            raise ListingError(url, "HTTP 404: no list API at this URL (check LAKEHOUSE_ARCHIVE_LISTING_URL)") from None
        except ArchiveFetchError as exc:
            raise ListingError(url, exc.last_error, transient=exc.transient) from exc


# ----------------------------------------------------------------------------------- helpers


def _market_root(market: str) -> str:
    if market not in MARKETS:
        raise ValueError(f"unknown market {market!r}: expected one of {', '.join(MARKETS)}")
    return MARKETS[market]


def _parse_page(body: bytes, url: str, prefix: str) -> _Page:
    """One ``ListBucketResult`` page, every field checked: a half-read listing would plan wrong downloads."""
    if _DECLARATION_RE.search(body):
        raise ListingError(url, "refusing an answer with a DTD or entity declaration")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ListingError(url, f"answer is not XML ({exc}): {body[:80]!r}") from None
    if root.tag != f"{{{S3_NAMESPACE}}}ListBucketResult":
        raise ListingError(url, f"expected an S3 ListBucketResult, got <{root.tag}>")
    truncated = _required(root, "IsTruncated", url).lower()
    if truncated not in ("true", "false"):
        raise ListingError(url, f"IsTruncated is {truncated!r}, expected true or false")
    files: list[ListedFile] = []
    for entry in root.findall("s3:Contents", _NS):
        key = _required(entry, "Key", url)
        size_text = _required(entry, "Size", url, key)
        modified_text = _required(entry, "LastModified", url, key)
        try:
            size = int(size_text)
            modified = datetime.fromisoformat(modified_text)
        except ValueError:
            raise ListingError(url, f"{key}: unreadable Size {size_text!r} or LastModified {modified_text!r}") from None
        if size < 0 or modified.tzinfo is None:
            raise ListingError(url, f"{key}: negative Size or LastModified without a time zone")
        etag = entry.findtext("s3:ETag", None, _NS)
        files.append(ListedFile(key, size, modified.astimezone(UTC), etag.strip('"') if etag else None))
    dirs = [_required(entry, "Prefix", url, "CommonPrefixes") for entry in root.findall("s3:CommonPrefixes", _NS)]
    outside = [name for name in [*dirs, *(f.key for f in files)] if not name.startswith(prefix)]
    if outside:
        raise ListingError(url, f"entries outside the requested prefix {prefix!r}: {outside[:3]}")
    next_marker = root.findtext("s3:NextMarker", None, _NS) or None
    return _Page(dirs, files, truncated == "true", next_marker)


def _required(element: ET.Element, name: str, url: str, where: str = "ListBucketResult") -> str:
    text = element.findtext(f"s3:{name}", None, _NS)
    if text is None or not text.strip():
        raise ListingError(url, f"{where}: missing <{name}>")
    return text.strip()


def _list_directory(root: Path, prefix: str) -> tuple[list[str], list[ListedFile]]:
    """S3 prefix/delimiter semantics over a directory tree: ``a/b`` matches ``a/b*`` entries of ``a/``."""
    head, _, start = prefix.rpartition(_DELIMITER)
    if head and any(part in (".", "..") for part in head.split(_DELIMITER)):
        raise ValueError(f"not a valid listing prefix: {prefix!r}")
    directory = root.joinpath(*head.split(_DELIMITER)) if head else root
    if not directory.is_dir():
        return [], []
    base = head + _DELIMITER if head else ""
    dirs: list[str] = []
    files: list[ListedFile] = []
    for entry in directory.iterdir():
        if not entry.name.startswith(start):
            continue
        if entry.is_file():
            stat = entry.stat()
            ms = stat.st_mtime_ns // 1_000_000
            modified = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)
            files.append(ListedFile(base + entry.name, stat.st_size, modified, None))
        elif entry.is_dir() and any(p.is_file() for p in entry.rglob("*")):
            dirs.append(base + entry.name + _DELIMITER)  # S3 has no empty "directories"
    return sorted(dirs), sorted(files, key=lambda f: f.key)
