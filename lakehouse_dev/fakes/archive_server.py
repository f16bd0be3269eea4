"""A local stand-in for data.binance.vision: serves a mirror directory over HTTP on 127.0.0.1.

Why: the download client's retry/integrity logic only means something if it is exercised over
a real socket (keep-alive, resets, short bodies, slow replies), and tests must not touch the
internet. Faults are injected per path substring; every request is recorded so tests can assert
that a file was (not) downloaded again.

It also answers the S3 list API (``GET <listing_path>?prefix=&delimiter=&marker=``) the way the
real bucket behind data.binance.vision does, built from the files it serves, so the archive
listing is tested over the same protocol, paging included (``page_size``; ``rewrite_listing`` lets
a test damage a page).
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import mimetypes
import socket
import struct
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from xml.sax.saxutils import escape

from lakehouse_dev.fakes.trickle import trickle

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"


logger = logging.getLogger("lakehouse.tests.archive_server")


@dataclass
class Fault:
    """One injected misbehaviour, applied to the next ``remaining`` matching requests."""

    path_substring: str
    remaining: int
    status: int | None = None
    delay: float = 0.0
    reset: bool = False
    truncate: bool = False
    retry_after: float | None = None
    methods: frozenset[str] = frozenset({"GET", "HEAD"})
    trickle_bytes_per_second: float | None = None
    redirect_loop: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ArchiveServer

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hanging up on purpose (timeouts in tests) are expected; keep pytest output clean.
        logger.debug("archive server: error while serving %s", client_address, exc_info=True)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.owner._count_connection()  # one call per accepted TCP connection, however many requests it carries
        super().process_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like CloudFront; exercises pooled connections
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("archive server: " + format, *args)

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        owner = self.server.owner
        method = "HEAD" if head else "GET"
        split = urllib.parse.urlsplit(self.path)
        url_path = urllib.parse.unquote(split.path)
        owner.authorizations.append(self.headers.get("Authorization"))  # basic auth is accepted, never checked
        owner._record(method, url_path)
        # A list request is matched with its query too, so a fault can target one prefix's listing.
        fault = owner._take_fault(method, f"{url_path}?{urllib.parse.unquote(split.query)}" if split.query else url_path)
        if fault is not None and fault.delay > 0 and owner._stopping.wait(fault.delay):
            self.close_connection = True  # server shutting down: abandon the delayed reply
            return
        if fault is not None and fault.reset:
            self._reset()
            return
        if fault is not None and fault.redirect_loop:
            # /x -> /x?loop -> /x -> ...: a CDN rule pointing back at itself.
            target = split.path if split.query else f"{split.path}?loop"
            self._send_simple(302, head=head, extra_headers={"Location": target})
            return
        if fault is not None and fault.status is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = _format_seconds(fault.retry_after)
            self._send_simple(fault.status, head=head, extra_headers=headers)
            return
        if split.path == owner.listing_path and (split.query or owner.listing_path != "/"):
            query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
            page = owner.listing_page(query)
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            if not head:
                self.wfile.write(page)
            return

        file_path = owner._resolve(url_path)
        if file_path is None:
            self._send_simple(404, head=head)
            return
        body = file_path.read_bytes()
        if fault is not None and fault.trickle_bytes_per_second and head:
            # A HEAD answer is all headers: trickle the header block itself.
            head_block = (
                f"HTTP/1.1 200 OK\r\nContent-Type: {_content_type(file_path)}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            self._trickle(head_block, fault.trickle_bytes_per_second)
            return
        self.send_response(200)
        self.send_header("Content-Type", _content_type(file_path))
        self.send_header("Content-Length", str(len(body)))
        # Like S3/CloudFront: a content hash as ETag, so a re-published file is detectable by HEAD.
        self.send_header("ETag", f'"{hashlib.md5(body).hexdigest()}"')
        self.send_header("Last-Modified", email.utils.formatdate(file_path.stat().st_mtime, usegmt=True))
        if fault is not None and fault.truncate:
            self.send_header("Connection", "close")
            self.end_headers()
            if not head:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
            self.close_connection = True
            return
        if fault is not None and fault.trickle_bytes_per_second and not head:
            self.end_headers()
            self._trickle(body, fault.trickle_bytes_per_second)
            return
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_simple(self, status: int, *, head: bool, extra_headers: dict[str, str] | None = None) -> None:
        body = f"{status} {self.responses.get(status, ('',))[0]}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _trickle(self, body: bytes, bytes_per_second: float) -> None:
        trickle(self, body, bytes_per_second, self.server.owner._stopping)

    def _reset(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), like a load balancer dropping the connection."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _content_type(path: Path) -> str:
    if path.name.endswith(".zip"):
        return "application/zip"
    if path.name.endswith(".CHECKSUM"):
        return "text/plain"
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class ArchiveServer:
    """Serve ``root`` (a mirror in data.binance.vision layout) on an ephemeral 127.0.0.1 port.

    Use as a context manager; ``base_url`` is ready for ``ArchiveClient(base_url)``.
    """

    def __init__(self, root: Path, *, page_size: int = 1000, listing_path: str = "/") -> None:
        self.root = Path(root).resolve()
        #: Entries (keys + common prefixes) per list page: S3's max-keys default is 1000.
        self.page_size = page_size
        #: Where the S3 list API answers: "/" (a bucket host) or e.g. "/data.binance.vision" (path style).
        self.listing_path = listing_path
        #: Called as ``rewrite_listing(body, query)`` on every list page before it is sent: a test's hook
        #: to make a page malformed or to freeze its marker.
        self.rewrite_listing: Callable[[bytes, dict[str, str]], bytes] | None = None
        self._lock = threading.Lock()
        #: (method, decoded URL path) of every request, in arrival order. A plain list (appended
        #: under a lock) so tests can filter it or ``.clear()`` it between phases.
        self.requests: list[tuple[str, str]] = []
        #: The Authorization header of every request (None when absent): a mirror URL with user-info
        #: sends basic auth, which this server accepts without checking.
        self.authorizations: list[str | None] = []
        #: TCP connections accepted so far: with keep-alive, far fewer than requests.
        self.connections = 0
        self._faults: list[Fault] = []
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ArchiveServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="archive-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in an injected delay
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> ArchiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("ArchiveServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ request log

    def count(self, method: str, path_substring: str = "") -> int:
        """How many ``method`` requests hit a path containing ``path_substring``."""
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and path_substring in p)

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def _count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    # ------------------------------------------------------------------ faults

    def inject(
        self,
        path_substring: str,
        *,
        status: int | None = None,
        times: int = 1,
        delay: float = 0.0,
        reset: bool = False,
        truncate: bool = False,
        retry_after: float | None = None,
        methods: tuple[str, ...] = ("GET", "HEAD"),
        trickle_bytes_per_second: float | None = None,
        redirect_loop: bool = False,
    ) -> None:
        """Misbehave on the next ``times`` requests whose path contains ``path_substring``.

        ``delay`` sleeps first and combines with the others; ``reset`` drops the connection with a
        TCP RST; ``status`` replies with that status (plus Retry-After if given); ``truncate`` sends a
        full Content-Length but only half the body, then closes; ``trickle_bytes_per_second`` sends the
        headers (full Content-Length) at once, then the body at that rate, so no single read ever times
        out (a HEAD gets its header block at that rate); ``redirect_loop`` answers 302 to ``?loop`` and back, forever (each hop is one request, so
        inject it with a large ``times``). Faults are matched in injection order. A list request is matched
        on its path and decoded query (``prefix=data/spot/daily/klines/BTCUSDT/``...), so one prefix's listing
        can fail while the others answer.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        if sum([status is not None, reset, truncate, bool(trickle_bytes_per_second), redirect_loop]) > 1:
            raise ValueError("status, reset, truncate, trickle and redirect_loop are mutually exclusive for one fault")
        fault = Fault(
            path_substring=path_substring,
            remaining=times,
            status=status,
            delay=delay,
            reset=reset,
            truncate=truncate,
            retry_after=retry_after,
            methods=frozenset(m.upper() for m in methods),
            trickle_bytes_per_second=trickle_bytes_per_second,
            redirect_loop=redirect_loop,
        )
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and method in fault.methods and fault.path_substring in path:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # ------------------------------------------------------------------ files

    def _resolve(self, url_path: str) -> Path | None:
        """Map a URL path to a regular file under root; anything escaping root is a 404."""
        relative = url_path.lstrip("/")
        if not relative:
            return None
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    # ------------------------------------------------------------------ S3 list API

    def keys(self, prefix: str = "") -> list[str]:
        """Every served file (under ``prefix``) as an S3 key (root-relative, ``/``-separated), in S3's order.

        Only the prefix's directory is walked: listing one symbol of a mirror holding years of files for
        hundreds of symbols (the benchmark's) must not walk them all.
        """
        head = prefix.rpartition("/")[0]
        base = (self.root / head).resolve() if head else self.root
        if not base.is_relative_to(self.root) or not base.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(key for key in keys if key.startswith(prefix))

    def listing_page(self, query: dict[str, str]) -> bytes:
        """One ``ListBucketResult`` page, paged like S3 ListObjects (v1): ``marker`` excluded, NextMarker
        given when a delimiter is, a common prefix rolling up every key under it."""
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        marker = query.get("marker", "")
        limit = self.page_size
        if "max-keys" in query:
            limit = min(limit, int(query["max-keys"]))
        entries: list[tuple[str, Path | None]] = []  # (key or common prefix, file or None)
        truncated = False
        for key in self.keys(prefix):
            if key <= marker:
                continue
            rest = key[len(prefix) :]
            entry: tuple[str, Path | None] = (key, self.root / key)
            if delimiter and delimiter in rest:
                common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
                if marker.startswith(common):
                    continue  # rolled up into a prefix an earlier page returned
                if entries and entries[-1][0] == common:
                    continue
                entry = (common, None)
            if len(entries) == limit:
                truncated = True
                break
            entries.append(entry)
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n',
            f'<ListBucketResult xmlns="{S3_NAMESPACE}">',
            "<Name>data.binance.vision</Name>",
            f"<Prefix>{escape(prefix)}</Prefix><Marker>{escape(marker)}</Marker>",
            f"<MaxKeys>{limit}</MaxKeys>",
        ]
        if delimiter:
            parts.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
        parts.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
        if truncated and delimiter and entries:
            parts.append(f"<NextMarker>{escape(entries[-1][0])}</NextMarker>")
        for name, path in entries:
            if path is None:
                parts.append(f"<CommonPrefixes><Prefix>{escape(name)}</Prefix></CommonPrefixes>")
                continue
            body = path.read_bytes()
            ms = path.stat().st_mtime_ns // 1_000_000
            mtime = datetime.fromtimestamp(ms // 1000, UTC)
            parts.append(
                f"<Contents><Key>{escape(name)}</Key>"
                f"<LastModified>{mtime.strftime('%Y-%m-%dT%H:%M:%S')}.{ms % 1000:03d}Z</LastModified>"
                f"<ETag>&quot;{hashlib.md5(body).hexdigest()}&quot;</ETag><Size>{len(body)}</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
        parts.append("</ListBucketResult>")
        page = "".join(parts).encode("utf-8")
        if self.rewrite_listing is not None:
            page = self.rewrite_listing(page, query)
        return page
