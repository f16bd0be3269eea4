"""Download client for the Binance public-data archive (data.binance.vision) or a mirror of it.

Why this exists instead of a bare ``requests.get``:

* A missing file is normal (daily files land T+1, files vanish and reappear), so 404 is a
  distinct, non-fatal :class:`ArchiveNotFound` rather than a generic failure.
* CloudFront/S3 throttles (429/418/503) and drops connections under parallel bronze loads, so
  transient failures are retried with capped exponential backoff + jitter, honouring Retry-After.
* A truncated transfer must never reach bronze: the body length is checked against
  Content-Length, and ``Accept-Encoding: identity`` keeps that comparison meaningful.
* Tests and offline runs point the same client at ``http://127.0.0.1:PORT`` or at a
  ``file:///`` mirror with the archive's layout.
* A server that trickles a body must not hold a pool slot forever: every transfer (zip, CHECKSUM,
  HEAD) has a connect timeout, a read timeout and a total deadline (``http_transfer``); a deadline
  overrun is transient like any timeout, and the final error names the URL and the time spent.
* A mirror URL may carry credentials (``http://user:pass@mirror``): the real URL is used for the
  request only; every message, log line and ``public_url`` is redacted (``redact``).
* At universe scale a backfill downloads thousands of small files: a TCP (and TLS) handshake per
  file would cost more than the file. All threads of one client share one keep-alive connection
  pool of ``concurrency`` connections per host (``LAKEHOUSE_ARCHIVE_CONCURRENCY``), which is also
  the hard cap on parallel transfers: a thread beyond it waits for a free connection.

No Dagster imports: retries are logged through ``logging`` (logger ``lakehouse.archive``),
which Dagster captures.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Final

import requests

from lakehouse_assets.http_transfer import (
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DeadlineSession,
    TransferDeadlineExceeded,
    pooled_adapter,
    retry_after_seconds,
    validate_timeouts,
)
from lakehouse_assets.redact import redact_text, redact_url

__all__ = [
    "DEFAULT_BASE_URL",
    "ArchiveClient",
    "ArchiveFetchError",
    "ArchiveNotFound",
    "parse_checksum",
]

logger = logging.getLogger("lakehouse.archive")

DEFAULT_BASE_URL: Final = "https://data.binance.vision"
#: Total time for one transfer: a 70 KB daily zip needs >= 400 B/s, a 5 MB monthly zip >= 28 KB/s.
DEFAULT_DEADLINE_SECONDS: Final = 180.0
#: Parallel transfers (and pooled keep-alive connections per host) of one client.
DEFAULT_CONCURRENCY: Final = 8
#: Beyond this a mirror or CloudFront sees a burst that looks like abuse, and 2 cores cannot parse faster anyway.
MAX_CONCURRENCY: Final = 64

#: Statuses worth retrying: server trouble and throttling (418 = Binance's "you were warned").
RETRYABLE_STATUSES: Final = frozenset({408, 418, 429, 500, 502, 503, 504})

_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_HEX: Final = frozenset("0123456789abcdef")


class ArchiveNotFound(Exception):
    """The archive has no such file (yet). Callers should treat this as "retry later", not fatal."""

    def __init__(self, url: str) -> None:
        self.url = redact_url(url)
        super().__init__(f"not (yet) in the archive: {self.url}")


class ArchiveFetchError(Exception):
    """We gave up on a URL; the message names the (redacted) URL, attempts, time spent and the last error.

    ``transient`` is False when no retry can help (403, other 4xx, a redirect loop, an unreadable
    local file), True when the client gave up on errors that may pass (timeouts, resets, 5xx).
    """

    def __init__(
        self,
        url: str,
        attempts: int,
        last_error: str,
        *,
        status: int | None = None,
        elapsed_seconds: float | None = None,
        transient: bool = True,
    ) -> None:
        self.url = redact_url(url)
        plural = "attempt" if attempts == 1 else "attempts"
        spent = f" in {elapsed_seconds:.1f} s" if elapsed_seconds is not None else ""
        self.last_error = redact_text(last_error)
        super().__init__(f"giving up on {self.url} after {attempts} {plural}{spent}; last error: {self.last_error}")
        self.attempts = attempts
        self.status = status
        self.elapsed_seconds = elapsed_seconds
        self.transient = transient


class _Retryable(Exception):
    """Internal: a failure worth another attempt (carries an optional server-requested delay)."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class _Fatal(Exception):
    """Internal: a failure that retrying cannot fix (403, other 4xx, unreadable local file)."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def parse_checksum(text: bytes, *, expected_name: str | None = None) -> str:
    """Return the lowercase sha256 hex digest from a Binance ``.zip.CHECKSUM`` file.

    Format is sha256sum's ``<64 hex>  <file name>``; Binance omits the trailing newline, copies
    that passed through editors have one. ``expected_name`` guards against pairing a CHECKSUM
    with the wrong zip (only the base name is compared; a ``*`` binary-mode marker is accepted).
    """
    try:
        decoded = text.decode("utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        raise ValueError(f"CHECKSUM is not UTF-8 text: {text[:80]!r}") from exc
    lines = [line for line in decoded.splitlines() if line.strip()]
    if len(lines) != 1:
        raise ValueError(f"CHECKSUM must hold exactly one '<sha256>  <name>' line, got {len(lines)}: {text[:200]!r}")
    parts = lines[0].split(None, 1)
    digest = parts[0].lower()
    if len(digest) != 64 or not set(digest) <= _HEX:
        raise ValueError(f"CHECKSUM does not start with a 64-hex sha256 digest: {text[:200]!r}")
    if expected_name is not None:
        if len(parts) < 2:
            raise ValueError(f"CHECKSUM names no file but {expected_name!r} was expected: {text!r}")
        name = parts[1].strip().lstrip("*")
        expected = expected_name.rsplit("/", 1)[-1]
        if name.rsplit("/", 1)[-1] != expected:
            raise ValueError(f"CHECKSUM is for {name!r}, expected {expected!r}")
    return digest


def _redirect_loop_reason(url: str, limit: int, exc: requests.TooManyRedirects) -> str:
    """Name where the loop starts and the hops it cycles through (redacted), not only "Exceeded 30 redirects"."""
    hops: list[str] = []
    response = exc.response
    if response is not None:
        for hop in [*response.history, response]:
            target = hop.headers.get("Location")
            if target:
                hops.append(redact_url(urllib.parse.urljoin(hop.url or url, target)))
    distinct = list(dict.fromkeys(hops))
    chain = f", cycling through {' -> '.join(distinct[:4])}" if distinct else ""
    return f"redirect loop: more than {limit} redirects from {redact_url(url)}{chain}"


class ArchiveClient:
    """Thread-safe, retrying reader of archive-relative paths (``data/spot/daily/...zip``).

    ``sleep`` and ``rng`` are plain attributes so tests can make backoff instantaneous and
    deterministic. One ``requests.Session`` per thread (``threading.local``) because Session is
    not documented as thread-safe and bronze fetches from a ThreadPoolExecutor; every session
    mounts the client's one connection pool (``concurrency`` keep-alive connections per host), so
    connections are reused across threads and across thread pools for the client's lifetime.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = 30.0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
        max_attempts: int = 5,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 20.0,
        max_retry_after_seconds: float = 300.0,
        user_agent: str = "lakehouse-assets/0.1 (+archive_client)",
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"archive concurrency must be an integer between 1 and {MAX_CONCURRENCY}, got {concurrency!r}")
        validate_timeouts(connect=connect_timeout, read=timeout, deadline=deadline_seconds, what="archive client")
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https", "file"):
            raise ValueError(
                f"unsupported archive base URL {redact_url(base_url)!r}: expected https://, http:// or file:///"
            )
        if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file URL must be file:///absolute/path, got {redact_url(base_url)!r}")
        self.base_url = base_url.rstrip("/")
        self.scheme = parsed.scheme
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.deadline_seconds = deadline_seconds
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.max_retry_after_seconds = max_retry_after_seconds
        self.user_agent = user_agent
        self.concurrency = concurrency
        # A loopback mirror must never be sent through an HTTP(S)_PROXY from the environment.
        self._trust_env = (parsed.hostname or "") not in _LOOPBACK_HOSTS
        self.sleep: Callable[[float], None] = time.sleep
        self.rng: random.Random = random.Random()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._pool = pooled_adapter(pool_maxsize=concurrency, pool_block=True)

    # ------------------------------------------------------------------ public API

    def url_for(self, path: str) -> str:
        """Full URL of an archive-relative path; segments are percent-encoded (symbols may be non-ASCII)."""
        segments = [s for s in path.strip().strip("/").split("/") if s]
        if not segments or any(s in (".", "..") for s in segments):
            raise ValueError(f"not a valid archive-relative path: {path!r}")
        return self.base_url + "/" + "/".join(urllib.parse.quote(s, safe="") for s in segments)

    def public_url(self, path: str) -> str:
        """``url_for(path)`` without credentials: what logs, errors and the manifest's ``source_url`` show."""
        return redact_url(self.url_for(path))

    def fetch(self, path: str) -> bytes:
        """Download one file completely, or raise ArchiveNotFound / ArchiveFetchError."""
        url = self.url_for(path)
        if self.scheme == "file":
            return self._with_retries("READ", url, lambda: self._read_file(url))
        return self._with_retries("GET", url, lambda: self._http_once("GET", url))

    def fetch_url(self, url: str) -> bytes:
        """GET a complete http(s) URL, query included, with this client's deadlines and retries.

        For answers that are not archive files (an S3 list page, ``?prefix=...&marker=...``), which
        ``url_for`` cannot express; 404 is still ArchiveNotFound, the rest ArchiveFetchError.
        """
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"fetch_url needs an http(s) URL, got {redact_url(url)!r}")
        return self._with_retries("GET", url, lambda: self._http_once("GET", url))

    def fetch_optional(self, path: str) -> bytes | None:
        """Like fetch, but a missing file is None (e.g. a zip whose CHECKSUM was never published)."""
        try:
            return self.fetch(path)
        except ArchiveNotFound:
            return None

    def exists(self, path: str) -> bool:
        """HEAD probe, cheap enough for a sensor polling for newly published files."""
        url = self.url_for(path)
        if self.scheme == "file":
            return self._local_path(url).is_file()
        try:
            self._with_retries("HEAD", url, lambda: self._http_once("HEAD", url))
        except ArchiveNotFound:
            return False
        return True

    def head(self, path: str) -> dict[str, str] | None:
        """HEAD probe returning the response headers (ETag, Last-Modified, Content-Length), None on 404.

        The new-archive sensor fingerprints files by these headers when no CHECKSUM is published,
        so a re-published file is noticed without downloading it. A file:// mirror reports size and
        mtime instead.
        """
        url = self.url_for(path)
        if self.scheme == "file":
            local = self._local_path(url)
            if not local.is_file():
                return None
            stat = local.stat()
            return {"Content-Length": str(stat.st_size), "Last-Modified": str(stat.st_mtime_ns)}
        headers: dict[str, str] = {}
        try:
            self._with_retries("HEAD", url, lambda: self._http_once("HEAD", url, headers_out=headers))
        except ArchiveNotFound:
            return None
        return headers

    def close(self) -> None:
        """Close every per-thread session and the pooled sockets they share."""
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._pool.close()
        self._local = threading.local()

    def __enter__(self) -> ArchiveClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ArchiveClient({redact_url(self.base_url)!r}, timeout={self.timeout}, "
            f"deadline_seconds={self.deadline_seconds}, max_attempts={self.max_attempts}, "
            f"concurrency={self.concurrency})"
        )

    # ------------------------------------------------------------------ retry loop

    def _backoff(self, attempt: int) -> float:
        """Capped exponential backoff with equal jitter (half fixed, half random) to de-synchronise threads."""
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2.0 ** (attempt - 1))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def _with_retries(self, method: str, url: str, once: Callable[[], bytes]) -> bytes:
        last: _Retryable | None = None
        started = time.monotonic()
        shown = redact_url(url)
        for attempt in range(1, self.max_attempts + 1):
            try:
                return once()
            except ArchiveNotFound:
                raise
            except _Fatal as exc:
                raise ArchiveFetchError(
                    url, attempt, exc.reason, status=exc.status, elapsed_seconds=time.monotonic() - started,
                    transient=False,
                ) from None
            except _Retryable as exc:
                last = exc
                if attempt == self.max_attempts:
                    break
                if exc.retry_after is not None:
                    if exc.retry_after > self.max_retry_after_seconds:
                        # Retrying earlier than the server asked risks a longer ban (Binance 418).
                        raise ArchiveFetchError(
                            url,
                            attempt,
                            f"{exc.reason}; server asked to wait {exc.retry_after:.0f} s "
                            f"(> max_retry_after_seconds={self.max_retry_after_seconds:.0f})",
                            status=exc.status,
                            elapsed_seconds=time.monotonic() - started,
                        ) from None
                    delay = exc.retry_after + self.rng.uniform(0, min(1.0, self.backoff_seconds))
                else:
                    delay = self._backoff(attempt)
                logger.warning(
                    "%s %s failed (attempt %d/%d): %s; retrying in %.2f s",
                    method,
                    shown,
                    attempt,
                    self.max_attempts,
                    exc.reason,
                    delay,
                )
                self.sleep(delay)
        assert last is not None
        elapsed = time.monotonic() - started
        logger.error(
            "%s %s: giving up after %d attempts in %.1f s: %s", method, shown, self.max_attempts, elapsed, last.reason
        )
        raise ArchiveFetchError(url, self.max_attempts, last.reason, status=last.status, elapsed_seconds=elapsed)

    # ------------------------------------------------------------------ transports

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            # Connect/read timeouts and the total deadline live in the session; it never retries itself.
            session = DeadlineSession(
                connect_timeout=self.connect_timeout,
                read_timeout=self.timeout,
                deadline_seconds=self.deadline_seconds,
                adapter=self._pool,
            )
            session.trust_env = self._trust_env
            session.headers.update(
                # identity: Content-Length must describe the bytes we keep, so no transparent gzip.
                {"User-Agent": self.user_agent, "Accept-Encoding": "identity"}
            )
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _http_once(self, method: str, url: str, headers_out: dict[str, str] | None = None) -> bytes:
        session = self._session()
        try:
            response = session.request(method, url, allow_redirects=True)
        except TransferDeadlineExceeded as exc:
            raise _Retryable(exc.reason) from None
        except requests.Timeout as exc:
            kind = "connect" if isinstance(exc, requests.exceptions.ConnectTimeout) else "read"
            timeout = self.connect_timeout if kind == "connect" else self.timeout
            raise _Retryable(f"{kind} timeout after {timeout:g} s ({type(exc).__name__})") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            # ChunkedEncodingError is what requests raises for an IncompleteRead (truncated body).
            raise _Retryable(redact_text(f"{type(exc).__name__}: {exc}")) from None
        except requests.exceptions.ContentDecodingError as exc:
            raise _Retryable(redact_text(f"{type(exc).__name__}: {exc}")) from None
        except requests.TooManyRedirects as exc:
            raise _Fatal(_redirect_loop_reason(url, session.max_redirects, exc)) from None
        except requests.RequestException as exc:  # an invalid URL or header: no retry fixes it
            raise _Fatal(redact_text(f"{type(exc).__name__}: {exc}")) from None
        with response:
            status = response.status_code
            if status == 404:
                raise ArchiveNotFound(url)
            if status in RETRYABLE_STATUSES:
                raise _Retryable(
                    f"HTTP {status} {response.reason or ''}".rstrip(),
                    status=status,
                    retry_after=retry_after_seconds(response.headers.get("Retry-After"), now=time.time()),
                )
            if status != 200:
                raise _Fatal(f"HTTP {status} {response.reason or ''}".rstrip(), status=status)
            if headers_out is not None:
                headers_out.clear()
                headers_out.update(response.headers)
            if method == "HEAD":
                return b""
            body = response.content
            expected = response.headers.get("Content-Length")
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if expected is not None and encoding in ("", "identity"):
                try:
                    expected_len = int(expected)
                except ValueError:
                    raise _Retryable(f"unparseable Content-Length {expected!r}", status=status) from None
                if len(body) != expected_len:
                    raise _Retryable(f"truncated body: got {len(body)} of {expected_len} bytes", status=status)
            return body

    def _local_path(self, url: str) -> Path:
        return Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))

    def _read_file(self, url: str) -> bytes:
        path = self._local_path(url)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise ArchiveNotFound(url) from None
        except IsADirectoryError:
            raise ArchiveNotFound(url) from None
        except PermissionError as exc:
            raise _Fatal(f"{type(exc).__name__}: {exc}") from None
        except OSError as exc:
            # e.g. a flaky network mount: worth the same backoff as a flaky HTTP server.
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
