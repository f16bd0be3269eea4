"""Klines over an exchange's REST API through ccxt: paginated, rate-limited, retried, honest.

Why ccxt: its per-exchange rate limiter (``enableRateLimit``, request weights), error mapping and
the same code path for any exchange. Why not ``fetch_ohlcv`` for Binance: it returns only
open/high/low/close/volume, while the silver table also carries quote volume, trade count and
taker-buy volumes. Binance's kline endpoints return all 12 archive fields, so for any exchange
class derived from ``ccxt.binance`` (binance, binanceusdm, binancecoinm, binanceus, ...) this
client calls ccxt's *implicit* raw endpoints (``publicGetKlines`` spot, ``fapiPublicGetKlines``
USD-M, ``dapiPublicGetKlines`` COIN-M) -- still through ccxt's limiter and URL table -- and the
rows go through the same parser as the archive files (``kline_parse.parse_klines_csv``), so a
REST candle and an archive candle for the same minute are identical value for value, COIN-M
unit normalisation included. No market list is needed for that path, so nothing but kline
requests is sent.

Any other ccxt exchange id falls back to ``fetch_ohlcv`` (markets are loaded once): the columns
it cannot know (quote volume, trade count, taker-buy and contract volumes) stay null, never
guessed; see ``kline_gapfill.validation_view`` for how the quality checks treat them.

Pagination: ``since`` = window start, then last open_time + one interval (never the last candle
again, so no duplicate per page), ``endTime`` = window end - 1 ms; stop at the window end, on an
empty page, or when a page brings nothing new (a server ignoring ``startTime`` cannot loop us).

Duplicates are held to the archive's standard: every copy of a candle a server sends, within a
page or repeated on a later one, is kept until the window is complete and judged by the archive
parser's rule (``kline_parse.drop_identical_duplicates``). Identical copies are dropped and counted
(``FetchOutcome.duplicates_dropped``); copies that differ fail the whole window ("fetch failed:
conflicting duplicate candles at ..."), none of its rows used, since nothing says which is right.

Errors: 429 and 418 are retried after ``Retry-After`` (or exponential backoff); a 418 ban longer
than ``max_retry_wait_seconds`` stops at once. Timeouts, resets and 5xx are retried. What no retry
fixes raises ``RestAccessError`` with what happened and what to do: 451 (geo-block), 401/403
(auth or WAF), 404 (the base URL does not serve this API), an unknown exchange id. A symbol the
exchange does not know, or retries running out, ends that window with ``FetchOutcome.error``
(the rows fetched so far are kept and the gap reason says "fetch failed: ...").

Transport: every exchange gets a ``http_transfer.DeadlineSession`` as its ``session``, so a request
has a connect timeout, a read timeout and a total deadline (a server trickling its answer byte by
byte ends as a retried ``RequestTimeout``, reported with the URL and the time spent). The base URL
may carry credentials: it is used for requests only; ``describe``, every log line and every error
message (ccxt's included, scrubbed where they leave ccxt) show it redacted.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import ccxt
import polars as pl

from lakehouse_assets.http_transfer import (
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DeadlineSession,
    TransferDeadlineExceeded,
    validate_timeouts,
)
from lakehouse_assets.redact import redact_exception, redact_text, redact_url

from lakehouse_assets.instruments import MARKETS, Instrument
from lakehouse_assets.klines.gapfill import SOURCE_REST, FetchOutcome
from lakehouse_assets.klines.parse import (
    FILE_COLUMNS,
    ArchiveFileError,
    ConflictingRowsError,
    drop_identical_duplicates,
    parse_klines_csv,
)
from lakehouse_assets.klines.schema import SILVER_KLINES_SCHEMA, empty_klines, interval_to_timedelta

logger = logging.getLogger("lakehouse.rest")

DEFAULT_EXCHANGES: dict[str, str] = {"spot": "binance", "um": "binanceusdm", "cm": "binancecoinm"}
# ccxt implicit methods for Binance's raw kline endpoints, per market.
RAW_KLINE_METHODS: dict[str, str] = {
    "spot": "publicGetKlines",  # GET /api/v3/klines   (max 1000 per page)
    "um": "fapiPublicGetKlines",  # GET /fapi/v1/klines  (max 1500)
    "cm": "dapiPublicGetKlines",  # GET /dapi/v1/klines  (max 1500)
}
# 1000 fits every Binance market and is the cheapest weight per candle on the futures APIs.
DEFAULT_PAGE_LIMIT = 1000
# Binance's documented maxima per request; a larger configured page is clamped, not sent (it would be a 400).
RAW_MAX_LIMIT: dict[str, int] = {"spot": 1000, "um": 1500, "cm": 1500}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RestAccessError(RuntimeError):
    """The REST source refuses us in a way no retry will fix (geo-block, auth, wrong URL, config)."""


@dataclass(frozen=True)
class RestSettings:
    """Everything the client needs; built by ``resources.BinanceRestResource`` from env vars."""

    exchanges: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_EXCHANGES))
    base_urls: Mapping[str, str | None] = field(default_factory=dict)  # market -> scheme://host[/prefix]
    page_limit: int = DEFAULT_PAGE_LIMIT
    timeout_seconds: float = 10.0  # read timeout: longest silence between two bytes of an answer
    connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS
    deadline_seconds: float = 60.0  # total time for one request (one page of up to 1500 candles, ~250 KB)
    max_attempts: int = 5
    backoff_seconds: float = 1.0
    max_retry_wait_seconds: float = 120.0
    rate_limit_ms: int | None = None  # None: ccxt's own value for the exchange
    kline_api: str = "auto"  # "auto" (raw endpoints on Binance-family exchanges) or "ohlcv" (always fetch_ohlcv)

    def __post_init__(self) -> None:
        if self.page_limit < 1:
            raise ValueError(f"page_limit must be >= 1, got {self.page_limit}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        validate_timeouts(connect=self.connect_timeout_seconds, read=self.timeout_seconds,
                          deadline=self.deadline_seconds, what="REST settings")
        if self.kline_api not in ("auto", "ohlcv"):
            raise ValueError(f"kline_api must be 'auto' or 'ohlcv', got {self.kline_api!r}")
        unknown = set(self.exchanges) - set(MARKETS)
        if unknown:
            raise ValueError(f"exchange ids given for unknown market(s) {sorted(unknown)}; markets: {', '.join(MARKETS)}")


class _Stop(Exception):
    """Ends one window's pagination with a reason (not retryable, not fatal for the run)."""


class ConflictingCandles(ValueError):
    """A source sent two different candles for one open_time (``open_time_ms``)."""

    def __init__(self, message: str, open_time_ms: int) -> None:
        super().__init__(message)
        self.open_time_ms = open_time_ms


class RestKlinesClient:
    """One ccxt exchange per market, created on first use. Not thread-safe (ccxt sync exchanges aren't)."""

    def __init__(self, settings: RestSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self._exchanges: dict[str, Any] = {}
        self._symbols: dict[Instrument, str] = {}
        self._calls = 0  # HTTP requests attempted (each retry counts)
        self._retries = 0
        self.stats: dict[str, int] = defaultdict(int)

    # ------------------------------------------------------------------ exchanges

    def exchange_id(self, market: str) -> str:
        return self.settings.exchanges.get(market) or DEFAULT_EXCHANGES[market]

    def uses_raw_klines(self, market: str) -> bool:
        """True when rows come with all 12 Binance fields (raw endpoint), False for fetch_ohlcv."""
        return self.settings.kline_api == "auto" and isinstance(self.exchange(market), ccxt.binance)

    def exchange(self, market: str) -> Any:
        if market not in self._exchanges:
            self._exchanges[market] = self._build_exchange(market)
        return self._exchanges[market]

    def describe(self, market: str) -> str:
        """Exchange id and base URL, credentials redacted: it goes into metadata, logs and lineage columns."""
        base = self.settings.base_urls.get(market)
        return f"{self.exchange_id(market)}" + (f" via {redact_url(base)}" if base else "")

    def _build_exchange(self, market: str) -> Any:
        exchange_id = self.exchange_id(market)
        cls = getattr(ccxt, exchange_id, None)
        if not (isinstance(cls, type) and issubclass(cls, ccxt.Exchange)):
            raise RestAccessError(
                f"unknown ccxt exchange id {exchange_id!r} for market {market!r} "
                f"(LAKEHOUSE_REST_EXCHANGE_{market.upper()}); use one of ccxt.exchanges, e.g. "
                f"{DEFAULT_EXCHANGES[market]!r}"
            )
        session = DeadlineSession(
            connect_timeout=self.settings.connect_timeout_seconds,
            read_timeout=self.settings.timeout_seconds,
            deadline_seconds=self.settings.deadline_seconds,
        )
        session.trust_env = bool(getattr(cls, "requests_trust_env", False))  # what ccxt's own session would do
        config: dict[str, Any] = {
            "enableRateLimit": True,
            "timeout": int(self.settings.timeout_seconds * 1000),
            "session": session,
        }
        if self.settings.rate_limit_ms is not None:
            config["rateLimit"] = self.settings.rate_limit_ms
        exchange = _with_status_recording(cls)(config)
        base = self.settings.base_urls.get(market)
        if base:
            exchange.urls["api"] = rebase_urls(exchange.urls["api"], base)
        if isinstance(exchange, ccxt.binance):
            # Only load this market type if markets are ever needed (fetch_ohlcv), not spot+linear+inverse.
            exchange.options["fetchMarkets"] = {"types": [{"spot": "spot", "um": "linear", "cm": "inverse"}[market]]}
        return exchange

    # ------------------------------------------------------------------ fetching

    def fetch(self, instrument: Instrument, interval: str, start: datetime, end: datetime) -> FetchOutcome:
        """Every closed candle the exchange has with open_time in ``[start, end)``, as silver rows."""
        step_ms = interval_to_timedelta(interval) // timedelta(milliseconds=1)
        start_ms, end_ms = _ms(start), _ms(end)
        raw = self.uses_raw_klines(instrument.market)
        rows: list[list[Any]] = []  # every in-window copy received, repeats included: judged below
        seen: set[int] = set()
        calls_before, retries_before = self._calls, self._retries
        since = start_ms
        error: str | None = None
        try:
            while since < end_ms:
                page = self._page(instrument, interval, since, end_ms, raw=raw)
                times = [int(r[0]) for r in page]
                fresh = [r for r, t in zip(page, times, strict=True) if since <= t < end_ms]
                repeats = [r for r, t in zip(page, times, strict=True) if t < since and t in seen]
                never_sent = [t for t in times if t < since and t not in seen]
                if never_sent or (repeats and not fresh):
                    # Binance never answers before startTime. A candle older than asked that was never
                    # sent before, or a page of nothing but repeats, means this server ignores the
                    # pagination parameters, so its pages cannot tell us which bars exist. Trust none of
                    # it. (Repeats next to new candles, an off-by-one proxy, are compared like any copy.)
                    oldest = min(times)
                    raise _Stop(
                        f"{self.describe(instrument.market)} answered a request for candles from "
                        f"{_from_ms(since):%Y-%m-%d %H:%M} with older ones ({_from_ms(oldest):%Y-%m-%d %H:%M}): "
                        "it ignores startTime/since"
                    )
                if not fresh:
                    break  # empty page: nothing more in the window
                rows += repeats + fresh
                seen.update(int(r[0]) for r in fresh)
                since = max(int(r[0]) for r in fresh) + step_ms
        except _Stop as stop:
            error = str(stop)
        requests, retries = self._calls - calls_before, self._retries - retries_before
        covered_until = end if error is None else _from_ms(since)
        rows.sort(key=lambda r: int(r[0]))  # stable: copies of a candle stay in arrival order
        try:
            frame = self._to_silver(instrument, interval, rows, raw=raw)
        except ConflictingCandles as conflict:
            # The source contradicts itself: no candle of this window is used, every hole in it is
            # reported with the reason, and a stored earlier fill of these bars is kept.
            error = _conflict_reason(self.describe(instrument.market), conflict.open_time_ms, rows, raw=raw)
            frame, covered_until = empty_klines(), start
        duplicates = len(rows) - frame.height if frame.height else 0
        self.stats["duplicates_dropped"] += duplicates
        self.stats["requests"] += requests
        self.stats["retries"] += retries
        self.stats["candles"] += frame.height
        logger.info(
            "REST %s %s %s [%s, %s): %d candle(s) in %d request(s)%s",
            self.describe(instrument.market), instrument.key, interval, start, end, frame.height, requests,
            f"; stopped: {error}" if error else "",
        )
        if duplicates:
            logger.warning(
                "REST %s %s %s [%s, %s): %d identical repeated candle(s) dropped",
                self.describe(instrument.market), instrument.key, interval, start, end, duplicates,
            )
        return FetchOutcome(frame=frame, requests=requests, retries=retries, covered_until=covered_until, error=error,
                            duplicates_dropped=duplicates)

    def _page(self, instrument: Instrument, interval: str, since: int, end_ms: int, *, raw: bool) -> list[Any]:
        limit = self.settings.page_limit
        if raw:
            method = getattr(self.exchange(instrument.market), RAW_KLINE_METHODS[instrument.market])
            params = {"symbol": instrument.symbol, "interval": interval, "startTime": since,
                      "endTime": end_ms - 1, "limit": min(limit, RAW_MAX_LIMIT[instrument.market])}
            call: Callable[[], Any] = lambda: method(params)  # noqa: E731
        else:
            exchange = self.exchange(instrument.market)
            symbol = self._unified_symbol(instrument)
            call = lambda: exchange.fetch_ohlcv(symbol, interval, since, limit)  # noqa: E731
        page = self._with_retries(instrument, call)
        if not isinstance(page, list) or not all(
            isinstance(r, list) and len(r) >= 6 and isinstance(r[0], int | str) and str(r[0]).isdigit() for r in page
        ):
            raise _Stop(f"unexpected response from {self.describe(instrument.market)}: {str(page)[:200]}")
        return page

    def _with_retries(self, instrument: Instrument, call: Callable[[], Any]) -> Any:
        exchange = self.exchange(instrument.market)
        where = f"{self.describe(instrument.market)} {instrument.key}"
        attempt = 0
        started = time.monotonic()
        while True:
            attempt += 1
            self._calls += 1
            self._retries += attempt > 1
            exchange.last_http_status = None
            try:
                return call()
            except ccxt.DDoSProtection as exc:  # 429 / 418 (and ccxt's RateLimitExceeded)
                status = exchange.last_http_status
                wait = _retry_after(exchange)
                if status == 418 and wait is not None and wait > self.settings.max_retry_wait_seconds:
                    raise RestAccessError(
                        f"{where}: HTTP 418 — this IP is banned by the exchange for {wait:.0f} s after too many "
                        f"requests (Retry-After). Wait, lower the `binance_api` pool limit, or use another "
                        f"IP/mirror (LAKEHOUSE_REST_URL). Exchange said: {_short(exc)}"
                    ) from exc
                label = f"HTTP {status}" if status else "rate limited"
                if attempt >= self.settings.max_attempts:
                    raise _Stop(f"{label} (rate limit) {attempt} times in a row; exchange said: {_short(exc)}") from exc
                self._backoff(attempt, wait, f"{where}: {label}, retrying")
            except ccxt.AuthenticationError as exc:
                raise RestAccessError(
                    f"{where}: authentication refused (HTTP {exchange.last_http_status or '401'}): public kline "
                    f"endpoints need no key, so the base URL (LAKEHOUSE_REST_URL) probably points at a proxy or "
                    f"mirror that requires credentials. Exchange said: {_short(exc)}"
                ) from exc
            except (ccxt.PermissionDenied, ccxt.AccountNotEnabled, ccxt.AccountSuspended) as exc:
                raise RestAccessError(f"{where}: access denied: {_short(exc)}") from exc
            except ccxt.BadSymbol as exc:
                raise _Stop(f"{instrument.symbol} is unknown to {self.exchange_id(instrument.market)} "
                            f"(delisted or renamed?): {_short(exc)}") from exc
            except ccxt.BadRequest as exc:  # e.g. an interval the exchange does not offer: retrying repeats it
                raise _Stop(f"{self.exchange_id(instrument.market)} rejected the request: {_short(exc)}") from exc
            except ccxt.NetworkError as exc:  # ExchangeNotAvailable, RequestTimeout, connection errors
                status = exchange.last_http_status
                if status == 451:
                    raise RestAccessError(
                        f"{where}: HTTP 451 — the exchange refuses requests from this location (geo-block). "
                        "Set LAKEHOUSE_REST_URL (or LAKEHOUSE_REST_URL_<MARKET>) to a reachable mirror; for "
                        "spot market data Binance serves https://data-api.binance.vision. "
                        f"Exchange said: {_short(exc)}"
                    ) from exc
                if status == 403:
                    raise RestAccessError(
                        f"{where}: HTTP 403 Forbidden — the exchange's firewall (WAF/CloudFront) rejects this "
                        f"client or region; retrying will not help. Exchange said: {_short(exc)}"
                    ) from exc
                if status in (404, 405, 410):
                    url = (getattr(exchange, "last_request_url", None) or "").split("?")[0]
                    raise RestAccessError(
                        f"{where}: HTTP {status} for {url or 'the klines endpoint'} — the REST base URL does not "
                        "serve this API; check LAKEHOUSE_REST_URL / LAKEHOUSE_REST_URL_<MARKET>."
                    ) from exc
                if attempt >= self.settings.max_attempts:
                    raise _Stop(
                        f"{type(exc).__name__} after {attempt} attempts in {time.monotonic() - started:.1f} s: "
                        f"{_network_detail(exc)}"
                    ) from exc
                self._backoff(attempt, _retry_after(exchange) if status else None,
                              f"{where}: {type(exc).__name__} ({_network_detail(exc)})")
            except ccxt.BaseError as exc:  # any other exchange-reported error (incl. 5xx with an error body)
                if attempt >= self.settings.max_attempts:
                    raise _Stop(f"{type(exc).__name__} after {attempt} attempts: {_short(exc)}") from exc
                self._backoff(attempt, None, f"{where}: {type(exc).__name__}")

    def _backoff(self, attempt: int, retry_after: float | None, what: str) -> None:
        wait = retry_after if retry_after is not None else self.settings.backoff_seconds * 2 ** (attempt - 1)
        wait = min(max(wait, 0.0), self.settings.max_retry_wait_seconds)
        logger.warning("%s in %.2f s (attempt %d of %d)", what, wait, attempt + 1, self.settings.max_attempts)
        self._sleep(wait)

    def _unified_symbol(self, instrument: Instrument) -> str:
        if instrument not in self._symbols:
            exchange = self.exchange(instrument.market)
            self._with_retries(instrument, exchange.load_markets)
            self._symbols[instrument] = resolve_unified_symbol(exchange.markets, instrument, self.exchange_id(instrument.market))
        return self._symbols[instrument]

    # ------------------------------------------------------------------ rows -> silver

    def _to_silver(self, instrument: Instrument, interval: str, rows: list[list[Any]], *, raw: bool) -> pl.DataFrame:
        if not rows:
            return empty_klines()
        source = self.describe(instrument.market)
        if raw:
            return binance_rows_to_silver(rows, instrument=instrument, interval=interval, source=source)
        return ohlcv_rows_to_silver(rows, instrument=instrument, interval=interval)


# ---------------------------------------------------------------------------------------------
# pure conversions


def binance_rows_to_silver(
    rows: list[list[Any]], *, instrument: Instrument, interval: str, source: str = "REST"
) -> pl.DataFrame:
    """Binance REST kline rows (the 12 archive fields) -> silver rows with ``source='rest'``.

    The rows are written as the archive's CSV text and parsed by the archive parser, one UTC day
    at a time: one mapping (incl. COIN-M contracts -> base/USD) and one float parser for both
    sources, and the parser's strictness (field count, grid, day, duplicates) applies to REST data
    too. Two different copies of one candle raise ``ConflictingCandles``.
    """
    by_day: dict[date, list[str]] = defaultdict(list)
    for row in rows:
        if len(row) != 12:
            raise ValueError(f"{source} {instrument.key} {interval}: kline row has {len(row)} fields, expected 12: {row!r}"[:400])
        by_day[_from_ms(int(row[0])).date()].append(",".join(str(v) for v in row))
    frames = []
    for day, lines in sorted(by_day.items()):
        try:
            parsed = parse_klines_csv(
                ("\n".join(lines) + "\n").encode(),
                instrument=instrument,
                interval=interval,
                day=day,
                file_name=f"{source} klines {instrument.symbol} {interval}",
            )
        except ConflictingRowsError as exc:
            raise ConflictingCandles(f"REST data rejected: {exc}", exc.open_time_ms) from exc
        except ArchiveFileError as exc:
            raise ValueError(f"REST data rejected: {exc}") from exc
        frames.append(parsed.frame)
    return pl.concat(frames, how="vertical").with_columns(source=pl.lit(SOURCE_REST)).select(list(SILVER_KLINES_SCHEMA))


def ohlcv_rows_to_silver(rows: list[list[Any]], *, instrument: Instrument, interval: str) -> pl.DataFrame:
    """ccxt OHLCV rows ``[ts, o, h, l, c, v]`` -> silver rows; the fields OHLCV lacks stay null (unknown).

    Repeated candles follow the archive's rule: identical copies are dropped, two different copies
    of one candle raise ``ConflictingCandles``.
    """
    step = interval_to_timedelta(interval)
    frame = pl.DataFrame(
        [[int(r[0]), *(None if v is None else float(v) for v in r[1:6])] for r in rows],
        schema={"t": pl.Int64(), "open": pl.Float64(), "high": pl.Float64(), "low": pl.Float64(),
                "close": pl.Float64(), "volume": pl.Float64()},
        orient="row",
    )
    if frame["t"].n_unique() != frame.height:
        frame, clash = drop_identical_duplicates(frame, "t", frame.columns)
        if clash.height:
            first = int(clash["t"][0])
            raise ConflictingCandles(
                f"REST data rejected: {instrument.key} {interval}: different candles for open_time "
                f"{_from_ms(first):%Y-%m-%d %H:%M:%S} UTC",
                first,
            )
    ts = pl.Datetime("ms", "UTC")
    return frame.select(
        market=pl.lit(instrument.market),
        symbol=pl.lit(instrument.symbol),
        interval=pl.lit(interval),
        open_time=pl.col("t").cast(ts),
        close_time=(pl.col("t") + step // timedelta(milliseconds=1) - 1).cast(ts),
        open="open", high="high", low="low", close="close", volume="volume",
        quote_volume=pl.lit(None, dtype=pl.Float64),
        trade_count=pl.lit(None, dtype=pl.Int64),
        taker_buy_volume=pl.lit(None, dtype=pl.Float64),
        taker_buy_quote_volume=pl.lit(None, dtype=pl.Float64),
        source=pl.lit(SOURCE_REST),
        contract_volume=pl.lit(None, dtype=pl.Float64),
        taker_buy_contract_volume=pl.lit(None, dtype=pl.Float64),
    ).sort("open_time")


def resolve_unified_symbol(markets: Mapping[str, Any], instrument: Instrument, exchange_id: str) -> str:
    """Our Binance-style (market, symbol) -> the exchange's unified ccxt symbol.

    Matched by exchange id first (Binance-style exchanges), else by base+quote and contract type:
    spot -> spot market, um -> linear perpetual swap, cm -> inverse perpetual swap.
    """
    def kind_ok(m: Mapping[str, Any]) -> bool:
        if instrument.market == "spot":
            return bool(m.get("spot"))
        if instrument.market == "um":
            return bool(m.get("swap") and m.get("linear"))
        return bool(m.get("swap") and m.get("inverse"))

    candidates = [m for m in markets.values() if kind_ok(m)]
    for m in candidates:
        if m.get("id") == instrument.symbol:
            return str(m["symbol"])
    wanted = instrument.symbol.split("_")[0]
    for m in candidates:
        if f"{m.get('base')}{m.get('quote')}" == wanted:
            return str(m["symbol"])
    raise RestAccessError(
        f"{exchange_id} has no {instrument.market} market matching {instrument.key}; "
        f"set LAKEHOUSE_REST_EXCHANGE_{instrument.market.upper()} to an exchange that lists it"
    )


def rebase_urls(urls: Any, base_url: str) -> Any:
    """Point every URL in ccxt's ``urls['api']`` table at ``base_url``, keeping each path.

    ``https://fapi.binance.com/fapi/v1`` with base ``http://127.0.0.1:8080`` becomes
    ``http://127.0.0.1:8080/fapi/v1``; a base with a path prefix keeps it in front.
    """
    base = base_url.rstrip("/")
    if not urlsplit(base).scheme or not urlsplit(base).netloc:
        raise ValueError(f"REST base URL must look like scheme://host[:port][/prefix], got {base_url!r}")
    if isinstance(urls, str):
        return base + urlsplit(urls).path
    if isinstance(urls, Mapping):
        return {k: rebase_urls(v, base_url) for k, v in urls.items()}
    return urls


# ---------------------------------------------------------------------------------------------
# helpers


def _with_status_recording(cls: type) -> type:
    """A subclass remembering the HTTP status and URL of the last response (ccxt keeps headers only)."""
    cached = _RECORDING.get(cls)
    if cached is None:

        def on_rest_response(self: Any, code: Any, reason: Any, url: Any, method: Any, response_headers: Any,
                             response_body: Any, request_headers: Any, request_body: Any) -> Any:
            self.last_http_status = int(code) if code is not None else None
            self.last_request_url = redact_url(url) if isinstance(url, str) else url
            return cls.on_rest_response(self, code, reason, url, method, response_headers, response_body,
                                        request_headers, request_body)

        def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
            # ccxt writes the full request URL (user-info included) into its exception messages.
            try:
                return cls.fetch(self, *args, **kwargs)
            except Exception as exc:
                raise redact_exception(exc)

        cached = type(cls.__name__, (cls,), {"on_rest_response": on_rest_response, "fetch": fetch,
                                             "last_http_status": None, "last_request_url": None})
        _RECORDING[cls] = cached
    return cached


_RECORDING: dict[type, type] = {}


def _retry_after(exchange: Any) -> float | None:
    headers = getattr(exchange, "last_response_headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _conflict_reason(source: str, open_ms: int, rows: list[list[Any]], *, raw: bool) -> str:
    """The gap reason for a window refused for conflicting copies, naming what differs."""
    names = FILE_COLUMNS if raw else ("open_time", "open", "high", "low", "close", "volume")
    copies = [r for r in rows if int(r[0]) == open_ms]

    def value(v: Any) -> Any:
        try:
            return float(v)
        except (TypeError, ValueError):
            return v

    differences = next(
        (
            diff
            for other in copies[1:]
            if (diff := [f"{n} {a} vs {b}" for n, a, b in zip(names, copies[0], other) if value(a) != value(b)])
        ),
        [],
    )
    detail = f" ({', '.join(differences)})" if differences else ""
    return (
        f"conflicting duplicate candles at {_from_ms(open_ms):%Y-%m-%d %H:%M} UTC: {source} sent "
        f"{len(copies)} copies of that candle that differ{detail}"
    )[:400]


def _short(exc: BaseException, limit: int = 300) -> str:
    """One line of an exception's message, URLs redacted (ccxt's messages carry the request URL)."""
    text = redact_text(" ".join(str(exc).split()))
    return text if len(text) <= limit else text[:limit] + "…"


def _network_detail(exc: BaseException) -> str:
    """ccxt's message names the URL; a deadline overrun (the cause) adds how long it waited."""
    cause = exc.__cause__
    return f"{_short(exc)} ({cause.reason})" if isinstance(cause, TransferDeadlineExceeded) else _short(exc)


def _ms(moment: datetime) -> int:
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)
