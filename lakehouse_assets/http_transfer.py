"""HTTP transfers with a total deadline, not only per-read timeouts.

Why: requests' ``timeout`` bounds each socket operation, not the transfer. A server that sends
its headers and then one byte per second never trips a 30 s read timeout, so a download (or a
REST page, or a webhook POST) can hang for days while its step holds a pool slot. Every HTTP
client of the lakehouse (archive downloads, CHECKSUMs, HEAD probes, ccxt's REST calls, the alert
webhook) therefore goes through a :class:`DeadlineSession`:

* connect and read timeouts come from the session's settings (a caller's ``timeout``, e.g. the one
  ccxt passes, is replaced, so one configuration governs every path);
* a watchdog timer starts with each request; when the deadline passes it shuts the socket down,
  which wakes the blocked read at once, whatever phase it is in (headers, body, TLS);
* the body is read inside the deadline (the session buffers bodies, ``stream=True`` included), and
  a transfer that ran out of time raises :class:`TransferDeadlineExceeded`, a ``requests.Timeout``:
  every caller's retry loop already treats timeouts as transient. Its message names the
  (redacted) URL, the deadline and the time spent.

A redirect chain shares the deadline of the request that started it. Pure module (no Dagster).
"""

from __future__ import annotations

import email.utils
import math
import socket
import threading
import time
from datetime import UTC
from typing import Any, Final

import requests
import urllib3.connection
import urllib3.connectionpool
from requests.adapters import HTTPAdapter

from lakehouse_assets.redact import install_log_redaction, redact_url

__all__ = [
    "retry_after_seconds",
    "DEFAULT_CONNECT_TIMEOUT_SECONDS",
    "DeadlineSession",
    "TransferDeadlineExceeded",
    "pooled_adapter",
    "validate_timeouts",
]

DEFAULT_CONNECT_TIMEOUT_SECONDS: Final = 10.0
#: Upper bound for any configured timeout or deadline: beyond an hour it is a typo, not a slow link.
MAX_SECONDS: Final = 3600.0

# The libraries under every session here log request URLs at DEBUG: keep credentials out of those lines.
install_log_redaction("ccxt.base.exchange", "urllib3.connectionpool", "urllib3.connection", "requests")


class TransferDeadlineExceeded(requests.exceptions.Timeout):
    """No complete answer within the total deadline (transient: retry, then report)."""

    def __init__(self, url: str, deadline_seconds: float, elapsed_seconds: float) -> None:
        self.url = redact_url(url)
        self.deadline_seconds = deadline_seconds
        self.elapsed_seconds = elapsed_seconds
        #: The message without the URL, for callers whose own message names it already.
        self.reason = f"deadline of {deadline_seconds:g} s exceeded after {elapsed_seconds:.1f} s without a complete answer"
        super().__init__(f"{self.reason} from {self.url}")


def validate_timeouts(*, connect: float, read: float, deadline: float, what: str) -> None:
    """Refuse settings that would disable the bounds: 0, negative, NaN, infinite or beyond an hour.

    A deadline shorter than a timeout is allowed: the deadline then simply ends the transfer first.
    """
    for name, value in (("connect timeout", connect), ("read timeout", read), ("deadline", deadline)):
        if not (0 < value <= MAX_SECONDS):  # also False for NaN
            raise ValueError(f"{what}: {name} must be > 0 and <= {MAX_SECONDS:g} s, got {value!r}")


# ----------------------------------------------------------------------------------- watchdog

_local = threading.local()


class _Guard:
    """One transfer's deadline: a timer that shuts down every socket the transfer used."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.fired = False
        self._done = False
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Guard:
        _local.guard = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            self._connections.clear()
        _local.guard = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def register(self, connection: Any) -> None:
        with self._lock:
            if self._done:
                return
            self._connections.append(connection)
            if self.fired:
                _shutdown(connection)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for connection in self._connections:
                _shutdown(connection)


def _shutdown(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    try:
        # The plain socket's shutdown, also for an SSLSocket: wakes a read blocked in another thread
        # without touching the TLS object that thread is using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _register(connection: Any) -> None:
    guard: _Guard | None = getattr(_local, "guard", None)
    if guard is not None:
        guard.register(connection)


class _GuardedHTTPConnection(urllib3.connection.HTTPConnection):
    def connect(self) -> None:
        _register(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self)  # a pooled keep-alive connection is reused without connect()
        super().request(*args, **kwargs)


class _GuardedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        _register(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self)
        super().request(*args, **kwargs)


class _GuardedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_GUARDED_POOLS: Final = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections report to the current transfer's watchdog."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_GUARDED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools have their own classes: per-read timeouts only
            manager.pool_classes_by_scheme = dict(_GUARDED_POOLS)
        return manager


# ----------------------------------------------------------------------------------- session


def pooled_adapter(*, pool_maxsize: int = 10, pool_block: bool = False) -> HTTPAdapter:
    """A keep-alive connection pool whose connections report to the deadline watchdog.

    Several ``DeadlineSession``s may share one (urllib3's pools are thread-safe): one session per
    thread keeps requests' own state (cookies, redirects) private, while the TCP connections outlive
    any thread pool. ``pool_block=True`` makes ``pool_maxsize`` a hard cap on open connections per
    host: a thread beyond it waits for a free connection instead of opening (and dropping) another.
    ``max_retries=0``: urllib3 must not retry behind the callers' backs (they log and count attempts).
    """
    if not 1 <= pool_maxsize <= 1024:
        raise ValueError(f"pool_maxsize must be between 1 and 1024, got {pool_maxsize!r}")
    return _DeadlineAdapter(pool_connections=4, pool_maxsize=pool_maxsize, pool_block=pool_block, max_retries=0)


class DeadlineSession(requests.Session):
    """A ``requests.Session`` where every request has connect/read timeouts and a total deadline.

    Usable wherever a Session is expected, e.g. as ccxt's ``exchange.session``. ``adapter``: a shared
    pool from :func:`pooled_adapter` (then ``pool_maxsize`` is ignored); by default the session has
    its own.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        read_timeout: float,
        deadline_seconds: float,
        pool_maxsize: int = 10,
        adapter: HTTPAdapter | None = None,
    ) -> None:
        validate_timeouts(connect=connect_timeout, read=read_timeout, deadline=deadline_seconds, what="HTTP session")
        super().__init__()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadline_seconds = deadline_seconds
        if adapter is None:
            adapter = pooled_adapter(pool_maxsize=pool_maxsize)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if getattr(_local, "guard", None) is not None:
            return super().send(request, **kwargs)  # a redirect hop: the first request's deadline applies
        kwargs["timeout"] = (self.connect_timeout, self.read_timeout)
        guard = _Guard(self.deadline_seconds)
        response: requests.Response | None = None
        with guard:
            try:
                response = super().send(request, **kwargs)
                _ = response.content  # the body is part of the transfer: read it under the deadline
            except Exception as exc:  # the watchdog's shutdown surfaces as any connection/protocol error
                if guard.fired:
                    raise TransferDeadlineExceeded(request.url or "?", self.deadline_seconds, guard.elapsed) from exc
                raise
        if guard.fired:
            # A body without Content-Length ends "cleanly" at the shutdown: it is still incomplete.
            response.close()
            raise TransferDeadlineExceeded(request.url or "?", self.deadline_seconds, guard.elapsed)
        return response


def retry_after_seconds(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date, RFC 9110), counted from
    ``now`` (epoch seconds); None when absent or unreadable, so the caller falls back to its own backoff.
    One parser for the archive client and the REST weight budget, so both read a server's wait the same way."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None
