"""A local stand-in for Binance's REST market-data API, serving the REAL sample kline files.

Why: the gap-fill client talks to Binance through ccxt (rate limiter, URL overrides, error
mapping). That path only means something when it runs over a real socket against something
that answers like Binance, and tests must never reach the internet. This server answers the
kline endpoints of the three markets from the bundled archive files (so every REST candle is a
real Binance candle, byte for byte the archive's decimal text), plus the small endpoints ccxt
needs to load markets. Controls let a test drop minutes (as if the exchange had no data), fail
the next requests with a status (429/418/451/...), return empty or stuck pages, or repeat candles
(identical or altered, within a page or across pages); every request is logged.

Request weight, as Binance counts it per IP (every client here is 127.0.0.1): each request costs
its endpoint's documented weight (``endpoint_weight``), summed per fixed clock window
(``weight_window_seconds``, 60 like Binance's minute) and reported on every answer as
``X-MBX-USED-WEIGHT-<n><unit>`` (``-1M`` for a minute). With ``weight_limit`` set, a request that
would pass it is refused with 429, Binance's body and ``Retry-After`` (seconds to the next window),
and not counted; ``peak_weight`` and ``weight_rejections`` tell a test whether clients stayed under
it, and ``use_weight`` plays another client on the same IP.

Routes live in a table (``routes``: path -> handler), so other endpoints (e.g. funding rates) can
be added with ``add_route`` without touching the request loop.

    spot  /api/v3/klines     max limit 1000    exchangeInfo /api/v3/exchangeInfo
    um    /fapi/v1/klines    max limit 1500    exchangeInfo /fapi/v1/exchangeInfo
    cm    /dapi/v1/klines    max limit 1500    exchangeInfo /dapi/v1/exchangeInfo

exchangeInfo serves bundled answers byte for byte (real spot 2023 and USD-M 2021, a synthetic COIN-M
one) and lets a test swap them: ``server.exchange_info`` (``exchange_info_routes.py``).
"""

from __future__ import annotations

import io
import json
import logging
import math
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from lakehouse_dev.fakes.sample_files import sample_text
from lakehouse_dev.fakes.trickle import trickle

logger = logging.getLogger("lakehouse.tests.rest_server")

MARKET_DIRS = {"spot": "data/spot", "um": "data/futures/um", "cm": "data/futures/cm"}
KLINE_PATHS = {"spot": "/api/v3/klines", "um": "/fapi/v1/klines", "cm": "/dapi/v1/klines"}
MAX_LIMIT = {"spot": 1000, "um": 1500, "cm": 1500}
DEFAULT_LIMIT = 500
INTERVAL_MS = {
    "1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
    "12h": 43_200_000, "1d": 86_400_000,
}

# Error bodies as Binance sends them (https://developers.binance.com/docs/binance-spot-api-docs/errors).
ERROR_BODIES: dict[int, dict[str, Any]] = {
    400: {"code": -1121, "msg": "Invalid symbol."},
    401: {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
    418: {"code": -1003, "msg": "Way too many requests; IP(127.0.0.1) banned until 1659146914000. "
          "Please use the websocket for live updates to avoid bans."},
    429: {"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. "
          "Please use WebSocket Streams for live updates to avoid polling the API."},
    451: {"code": 0, "msg": "Service unavailable from a restricted location according to 'b. Eligibility' in "
          "https://www.binance.com/en/terms. Please contact customer service if you believe you received "
          "this message in error."},
    500: {"code": -1000, "msg": "An unknown error occurred while processing the request."},
}


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)
    trickle_bytes_per_second: float | None = None  # send the headers, then the body at this rate


Handler = Callable[["BinanceRestServer", dict[str, str]], Reply]


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    status: int = 0
    weight: int = 0  # this request's weight
    used_weight: int = 0  # the window's used weight after it (what the header said)
    window: int = 0  # start of the weight window it was counted in (server clock, epoch seconds)


def endpoint_weight(path: str, params: dict[str, str]) -> int:
    """Binance's documented IP weight of the endpoints served here (1 for the small ones)."""
    if path in (KLINE_PATHS["um"], KLINE_PATHS["cm"]):
        limit = int(params["limit"]) if params.get("limit", "").isdigit() else DEFAULT_LIMIT
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
    if path == KLINE_PATHS["spot"]:
        return 2
    if path == "/api/v3/exchangeInfo":
        return 20
    return 1


def _window_label(seconds: int) -> str:
    for unit, size in (("D", 86400), ("H", 3600), ("M", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}S"


@dataclass
class _Fault:
    path_substring: str
    remaining: int
    status: int | None = None
    retry_after: float | None = None
    body: Any = None
    empty: bool = False
    params: dict[str, str] = field(default_factory=dict)  # only requests carrying these query values
    trickle_bytes_per_second: float | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: BinanceRestServer

    def handle_error(self, request: object, client_address: object) -> None:
        logger.debug("rest server: error while serving %s", client_address, exc_info=True)


class _HTTPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("rest server: " + format, *args)

    def do_GET(self) -> None:
        owner = self.server.owner
        parts = urllib.parse.urlsplit(self.path)
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()}
        record = owner._record("GET", parts.path, params)
        owner.authorizations.append(self.headers.get("Authorization"))  # basic auth is accepted, never checked
        try:
            reply = owner._charge(record) or owner._dispatch(parts.path, params)
        except _BadRequest as exc:
            reply = Reply(400, {"code": exc.code, "msg": exc.msg})
        reply.headers.setdefault(f"X-MBX-USED-WEIGHT-{_window_label(owner.weight_window_seconds)}", str(record.used_weight))
        record.status = reply.status
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body, separators=(",", ":")).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.trickle_bytes_per_second:
            self._trickle(body, reply.trickle_bytes_per_second)
            return
        self.wfile.write(body)

    def _trickle(self, body: bytes, bytes_per_second: float) -> None:
        trickle(self, body, bytes_per_second, self.server.owner._stopping)


class _BadRequest(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


class BinanceRestServer:
    """Binance-compatible REST API on an ephemeral 127.0.0.1 port over a Binance-layout sample folder.

    ``root`` holds ``data/<market>/<daily|monthly>/klines/<SYMBOL>/<interval>/*.zip|*.csv`` (the real
    sample, or a mirror built from it). Use as a context manager; ``base_url`` goes into
    LAKEHOUSE_REST_URL / the REST resource.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._lock = threading.RLock()
        self.requests: list[Request] = []
        self._faults: list[_Fault] = []
        self._dropped: list[tuple[str, str, int, int]] = []  # (market, symbol, start_ms, end_ms)
        # (market, symbol, start_ms, end_ms, field changes): candles served twice, see duplicate_candles
        self._doubled: list[tuple[str, str, int, int, dict[int, Any]]] = []
        self._overlap: dict[str, tuple[int, dict[int, Any]]] = {}  # kline path -> (candles, field changes)
        self._last_page: dict[tuple[str, str], list[list[Any]]] = {}  # (market, symbol) -> last page served
        self._stuck: dict[str, int] = {}  # kline path -> requests left that ignore startTime
        self._rows: dict[tuple[str, str, str], list[list[Any]]] = {}
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.server_time_ms: int | None = None  # None: the real clock
        self.routes: dict[str, Handler] = {}
        #: The Authorization header of every request (None when absent): a base URL with user-info
        #: sends basic auth, which this server accepts without checking.
        self.authorizations: list[str | None] = []
        self._stopping = threading.Event()
        #: Length of the fixed weight window (seconds); the limit is per window, None = count but never refuse.
        self.weight_window_seconds = 60
        self.weight_limit: int | None = None
        self.clock: Callable[[], float] = time.time  # the server's clock, for the weight windows
        self.peak_weight = 0  # highest used weight of any window so far
        self.weight_rejections = 0  # requests refused with 429 for passing weight_limit
        self._weight_window = 0
        self._weight_used = 0
        for market, path in KLINE_PATHS.items():
            self.add_route(path, _klines_handler(market))
            prefix = path.rsplit("/", 1)[0]
            self.add_route(f"{prefix}/time", _time_handler)
            self.add_route(f"{prefix}/ping", lambda server, params: Reply(200, {}))
        from lakehouse_dev.fakes.exchange_info_routes import EXCHANGE_INFO_PATHS, ExchangeInfoRoutes

        #: What the exchangeInfo routes serve (real spot/USD-M answers, synthetic COIN-M); tests swap answers here.
        self.exchange_info = ExchangeInfoRoutes(self)
        for market, path in EXCHANGE_INFO_PATHS.items():
            self.add_route(path, lambda server, params, market=market: Reply(200, server.exchange_info.answer(market)))

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> BinanceRestServer:
        if self._httpd is None:
            self._stopping.clear()
            httpd = _Server(("127.0.0.1", 0), _HTTPHandler)
            httpd.owner = self
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="rest-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._stopping.set()  # ends trickling replies
            self._httpd.shutdown()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._httpd = None
            self._thread = None

    def __enter__(self) -> BinanceRestServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("BinanceRestServer is not running")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # ------------------------------------------------------------------ routes

    def add_route(self, path: str, handler: Handler) -> None:
        """Serve ``path`` (exact match) with ``handler(server, query_params) -> Reply``."""
        self.routes[path] = handler

    def _dispatch(self, path: str, params: dict[str, str]) -> Reply:
        fault = self._take_fault(path, params)
        if fault is not None and fault.trickle_bytes_per_second:
            handler = self.routes.get(path)
            reply = handler(self, params) if handler is not None else Reply(404, b"")
            reply.trickle_bytes_per_second = fault.trickle_bytes_per_second
            return reply
        if fault is not None:
            if fault.empty:
                return Reply(200, [])
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            body = fault.body if fault.body is not None else ERROR_BODIES.get(
                fault.status or 500, {"code": -1000, "msg": "error"}
            )
            return Reply(fault.status or 500, body, headers)
        handler = self.routes.get(path)
        if handler is None:
            return Reply(404, b"<html><body><h1>404 Not Found</h1></body></html>")
        return handler(self, params)

    # ------------------------------------------------------------------ request log

    def _record(self, method: str, path: str, params: dict[str, str]) -> Request:
        record = Request(method, path, params)
        with self._lock:
            self.requests.append(record)
        return record

    def kline_requests(self, market: str | None = None) -> list[Request]:
        """Logged kline requests (all markets, or one), in arrival order."""
        paths = set(KLINE_PATHS.values()) if market is None else {KLINE_PATHS[market]}
        with self._lock:
            return [r for r in self.requests if r.path in paths]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # ------------------------------------------------------------------ request weight

    def _roll_weight_window(self) -> float:
        now = self.clock()
        window = int(now // self.weight_window_seconds) * self.weight_window_seconds
        if window != self._weight_window:
            self._weight_window, self._weight_used = window, 0
        return now

    def _charge(self, record: Request) -> Reply | None:
        """Count the request's weight in its window, or refuse it with 429 when it would pass the limit."""
        weight = endpoint_weight(record.path, record.params)
        with self._lock:
            now = self._roll_weight_window()
            record.window, record.weight = self._weight_window, weight
            if self.weight_limit is not None and self._weight_used + weight > self.weight_limit:
                self.weight_rejections += 1
                record.used_weight = self._weight_used
                retry_after = math.ceil(self._weight_window + self.weight_window_seconds - now)
                return Reply(429, ERROR_BODIES[429], {"Retry-After": str(max(1, retry_after))})
            self._weight_used += weight
            self.peak_weight = max(self.peak_weight, self._weight_used)
            record.used_weight = self._weight_used
        return None

    def use_weight(self, weight: int) -> None:
        """Another client on the same IP spends ``weight`` in the current window."""
        with self._lock:
            self._roll_weight_window()
            self._weight_used += weight
            self.peak_weight = max(self.peak_weight, self._weight_used)

    @property
    def used_weight(self) -> int:
        """The current window's used weight."""
        with self._lock:
            self._roll_weight_window()
            return self._weight_used

    # ------------------------------------------------------------------ controls

    def fail(
        self,
        path_substring: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        body: Any = None,
        params: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests whose path contains ``path_substring`` (and, if given, whose
        query has all of ``params``) with ``status``: Binance's error body for it unless ``body`` is
        given, and ``Retry-After`` if set."""
        with self._lock:
            self._faults.append(
                _Fault(path_substring, times, status=status, retry_after=retry_after, body=body, params=dict(params or {}))
            )

    def trickle(self, path_substring: str, *, bytes_per_second: float = 1.0, times: int = 1) -> None:
        """Answer the next ``times`` matching requests normally, but send the body at ``bytes_per_second``
        after the headers: every socket read succeeds, the response never completes in useful time."""
        with self._lock:
            self._faults.append(_Fault(path_substring, times, trickle_bytes_per_second=bytes_per_second))

    def empty_pages(self, path_substring: str, *, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with ``[]`` (an empty page), whatever they ask."""
        with self._lock:
            self._faults.append(_Fault(path_substring, times, empty=True))

    def ignore_start_time(self, market: str, *, times: int = 10_000) -> None:
        """Misbehave like a broken proxy: answer kline requests as if no startTime had been sent."""
        with self._lock:
            self._stuck[KLINE_PATHS[market]] = times

    def drop(self, market: str, symbol: str, start: datetime, end: datetime) -> None:
        """Pretend the exchange has no candles with open_time in ``[start, end)`` (UTC) for this symbol."""
        with self._lock:
            self._dropped.append((market, symbol, _ms(start), _ms(end)))

    def duplicate_candles(
        self, market: str, symbol: str, start: datetime, end: datetime, *, change: dict[int, Any] | None = None
    ) -> None:
        """Serve every candle with open_time in ``[start, end)`` twice, the copy right after the original:
        identical, or with the fields at the positions in ``change`` replaced (a conflicting duplicate)."""
        with self._lock:
            self._doubled.append((market, symbol, _ms(start), _ms(end), dict(change or {})))

    def overlap_pages(self, market: str, *, candles: int = 1, change: dict[int, Any] | None = None) -> None:
        """Misbehave like an off-by-one proxy: a page that continues the previous one (same symbol,
        startTime = its last candle + one interval) starts again with the last ``candles`` candles of
        the previous page; with ``change``, those repeats carry the given fields replaced (a conflict
        across pages)."""
        with self._lock:
            self._overlap[KLINE_PATHS[market]] = (candles, dict(change or {}))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._dropped.clear()
            self._doubled.clear()
            self._overlap.clear()
            self._last_page.clear()
            self._stuck.clear()

    def _take_fault(self, path: str, params: dict[str, str]) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                matches = all(params.get(k) == v for k, v in fault.params.items())
                if fault.remaining > 0 and fault.path_substring in path and matches:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _take_stuck(self, path: str) -> bool:
        with self._lock:
            left = self._stuck.get(path, 0)
            if left > 0:
                self._stuck[path] = left - 1
                return True
        return False

    # ------------------------------------------------------------------ data

    def rows(self, market: str, symbol: str, interval: str) -> list[list[Any]]:
        """Every kline of the sample for (market, symbol, interval), as Binance REST rows, sorted, unique."""
        key = (market, symbol, interval)
        with self._lock:
            cached = self._rows.get(key)
        if cached is None:
            cached = _load_rows(self.root, market, symbol, interval)
            with self._lock:
                self._rows[key] = cached
        return cached

    def symbols(self, market: str) -> list[str]:
        base = self.root / MARKET_DIRS[market]
        found = {p.name for kind in ("daily", "monthly") for p in (base / kind / "klines").glob("*") if p.is_dir()}
        return sorted(found)

    def _visible(self, market: str, symbol: str, open_ms: int) -> bool:
        return not any(
            m == market and s == symbol and start <= open_ms < end for m, s, start, end in self._dropped
        )


# ---------------------------------------------------------------------- handlers


def _klines_handler(market: str) -> Handler:
    def handle(server: BinanceRestServer, params: dict[str, str]) -> Reply:
        symbol = params.get("symbol", "")
        interval = params.get("interval", "")
        if not symbol:
            raise _BadRequest(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if interval not in INTERVAL_MS:
            raise _BadRequest(-1120, "Invalid interval.")
        if symbol not in server.symbols(market):
            raise _BadRequest(-1121, "Invalid symbol.")
        limit = int(params.get("limit") or DEFAULT_LIMIT)
        if not 1 <= limit <= MAX_LIMIT[market]:
            raise _BadRequest(-1130, "Invalid data sent for a parameter.")
        start = int(params["startTime"]) if params.get("startTime") else None
        end = int(params["endTime"]) if params.get("endTime") else None
        if server._take_stuck(KLINE_PATHS[market]):
            start = None
        with server._lock:
            rows = [r for r in server.rows(market, symbol, interval) if server._visible(market, symbol, r[0])]
        if start is not None:
            rows = [r for r in rows if r[0] >= start]
        if end is not None:
            rows = [r for r in rows if r[0] <= end]
        # Binance: with startTime the page starts there; without it, the newest `limit` candles.
        page = rows[:limit] if start is not None else rows[-limit:]
        with server._lock:
            overlap = server._overlap.get(KLINE_PATHS[market])
            doubled = [(lo, hi, change) for m, s, lo, hi, change in server._doubled if (m, s) == (market, symbol)]
            previous = server._last_page.get((market, symbol), [])
            server._last_page[(market, symbol)] = page
        if overlap is not None and page and previous and previous[-1][0] + INTERVAL_MS[interval] == start:
            candles, change = overlap
            page = [_changed(r, change) for r in previous[-candles:]] + page
        if doubled:
            page = [
                copy
                for r in page
                for copy in (r, *(_changed(r, change) for lo, hi, change in doubled if lo <= r[0] < hi))
            ]
        return Reply(200, page)

    return handle


def _changed(row: list[Any], change: dict[int, Any]) -> list[Any]:
    return [change.get(i, value) for i, value in enumerate(row)]


def _time_handler(server: BinanceRestServer, params: dict[str, str]) -> Reply:
    now = server.server_time_ms if server.server_time_ms is not None else _ms(datetime.now(UTC))
    return Reply(200, {"serverTime": now})


# ---------------------------------------------------------------------- sample files


def _load_rows(root: Path, market: str, symbol: str, interval: str) -> list[list[Any]]:
    """Parse every daily/monthly kline file of the sample into Binance REST rows.

    Values stay the archive's exact decimal text (Binance REST returns the same strings); µs
    timestamps (spot files from 2025) become ms, as the REST API answers in ms by default.
    """
    by_open: dict[int, list[Any]] = {}
    base = root / MARKET_DIRS[market]
    for kind in ("daily", "monthly"):
        folder = base / kind / "klines" / symbol / interval
        for path in sorted(folder.glob("*")):
            text = sample_text(path)
            if text is None:
                continue
            for line in io.StringIO(text):
                fields = line.strip().split(",")
                if len(fields) != 12 or not fields[0].strip().isdigit():
                    continue  # header row or blank line
                open_ms, close_ms = int(fields[0]), int(fields[6])
                if open_ms >= 10**15:  # microseconds
                    open_ms, close_ms = open_ms // 1000, close_ms // 1000
                by_open[open_ms] = [
                    open_ms, fields[1], fields[2], fields[3], fields[4], fields[5],
                    close_ms, fields[7], int(fields[8]), fields[9], fields[10], fields[11],
                ]
    return [by_open[k] for k in sorted(by_open)]


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
