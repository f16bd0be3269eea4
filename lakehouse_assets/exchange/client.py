"""ccxt, generic: one exchange per market with rate limits, deadlines, retries and error mapping. No Dagster.

What the klines gap-fill (``klines/rest.py``) and the funding REST source (``funding/rest.py``)
share: how an exchange is built, how one request is retried, what an error means.

Building (``ExchangeClient.exchange``): the ccxt class for the market's exchange id, with
``enableRateLimit`` always on (ccxt's per-exchange limiter and request weights), ccxt's ``timeout``,
and an ``http_transfer.DeadlineSession`` as its ``session``, so a request has a connect timeout, a
read timeout and a total deadline (a server trickling its answer byte by byte ends as a retried
``RequestTimeout``, reported with the URL and the time spent). A base URL replaces scheme://host of
every endpoint (``rebase_urls``; a mirror or a local stand-in). It may carry credentials: it is
used for requests only; ``describe``, every log line and every error message (ccxt's included,
scrubbed where they leave ccxt) show it redacted.

Request weight (``weight_budget``): with ``ExchangeSettings.weight_budget`` set, every HTTP request
first takes its Binance weight from a budget shared by all processes of the machine (one file-locked
state per REST host), and every answer's ``X-MBX-USED-WEIGHT-1M`` and 429/418 ``Retry-After`` feed
it, so concurrent runs slow down together before the exchange's per-IP limit instead of earning 429s.

One request (``ExchangeClient.call``): 429 and 418 are retried after ``Retry-After`` (or
exponential backoff); a 418 ban longer than ``max_retry_wait_seconds`` stops at once. Timeouts,
resets and 5xx are retried. What no retry fixes raises ``RestAccessError`` with what happened and
what to do: 451 (geo-block), 401/403 (auth or WAF), 404 (the base URL does not serve this API), an
unknown exchange id. A symbol the exchange does not know, a request it rejects, or retries running
out raise ``FetchStopped``: the caller ends that piece of work with the reason (``is_transient``
says whether a later step retry may help).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import ccxt

from lakehouse_assets.exchange.weight_budget import BudgetConfig, WeightBudget, WeightBudgetBlocked, parse_retry_after
from lakehouse_assets.http_transfer import (
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DeadlineSession,
    TransferDeadlineExceeded,
    validate_timeouts,
)
from lakehouse_assets.instruments import MARKETS, Instrument
from lakehouse_assets.redact import redact_exception, redact_text, redact_url

logger = logging.getLogger("lakehouse.rest")

DEFAULT_EXCHANGES: dict[str, str] = {"spot": "binance", "um": "binanceusdm", "cm": "binancecoinm"}


class RestAccessError(RuntimeError):
    """The REST source refuses us in a way no retry will fix (geo-block, auth, wrong URL, config)."""


class FetchStopped(Exception):
    """Ends one piece of work (a window, an instrument's days) with a reason; not fatal for the run.

    ``transient``: whether the same request may succeed later (retries ran out on 429/5xx/timeouts)
    or never will (a symbol the exchange does not know).
    """

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_stopped, (str(self), self.transient))


def _restore_stopped(message: str, transient: bool) -> FetchStopped:
    return FetchStopped(message, transient=transient)


def is_transient(exc: BaseException) -> bool | None:
    """Could a later attempt succeed? None: not an exchange error (the caller decides)."""
    if isinstance(exc, RestAccessError):  # 451, 401/403, 404, unknown exchange/market
        return False
    if isinstance(exc, FetchStopped):  # retries ran out (429/418/5xx/timeouts), unless the symbol is unknown
        return exc.transient
    if isinstance(exc, ccxt.NetworkError):
        return True
    return None


@dataclass(frozen=True)
class ExchangeSettings:
    """How to reach the exchanges: ids, base URLs, timeouts, retries, rate limit."""

    exchanges: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_EXCHANGES))
    base_urls: Mapping[str, str | None] = field(default_factory=dict)  # market -> scheme://host[/prefix]
    timeout_seconds: float = 10.0  # read timeout: longest silence between two bytes of an answer
    connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS
    deadline_seconds: float = 60.0  # total time for one request (one page of up to 1500 candles, ~250 KB)
    max_attempts: int = 5
    backoff_seconds: float = 1.0
    max_retry_wait_seconds: float = 120.0
    rate_limit_ms: int | None = None  # None: ccxt's own value for the exchange
    weight_budget: BudgetConfig | None = None  # None: no machine-wide weight budget (ccxt's limiter only)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        validate_timeouts(connect=self.connect_timeout_seconds, read=self.timeout_seconds,
                          deadline=self.deadline_seconds, what="REST settings")
        unknown = set(self.exchanges) - set(MARKETS)
        if unknown:
            raise ValueError(f"exchange ids given for unknown market(s) {sorted(unknown)}; markets: {', '.join(MARKETS)}")


class ExchangeClient:
    """One ccxt exchange per market, created on first use. Not thread-safe (ccxt sync exchanges aren't)."""

    def __init__(self, settings: ExchangeSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self._exchanges: dict[str, Any] = {}
        self._symbols: dict[Instrument, str] = {}
        self._calls = 0  # HTTP requests attempted (each retry counts)
        self._retries = 0
        #: The machine-wide request-weight budget (None when not configured); its report goes into metadata.
        self.budget = WeightBudget(settings.weight_budget) if settings.weight_budget is not None else None

    @property
    def calls(self) -> int:
        """HTTP requests attempted so far (each retry counts)."""
        return self._calls

    @property
    def retries(self) -> int:
        return self._retries

    def weight_report(self) -> dict[str, int | float]:
        """Weight used, waits and the server's highest used weight, for metadata (empty without a budget)."""
        return self.budget.report() if self.budget is not None else {}

    def exchange_id(self, market: str) -> str:
        return self.settings.exchanges.get(market) or DEFAULT_EXCHANGES[market]

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
        exchange.weight_budget, exchange.weight_market = self.budget, market
        base = self.settings.base_urls.get(market)
        if base:
            exchange.urls["api"] = rebase_urls(exchange.urls["api"], base)
        if isinstance(exchange, ccxt.binance):
            # Only load this market type if markets are ever needed (fetch_ohlcv), not spot+linear+inverse.
            exchange.options["fetchMarkets"] = {"types": [{"spot": "spot", "um": "linear", "cm": "inverse"}[market]]}
        return exchange

    def call(self, instrument: Instrument, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (one request for ``instrument``) through the retry policy and error mapping (module docstring).

        Raises ``RestAccessError`` for what no retry fixes and ``FetchStopped`` when retries run out or the
        request cannot succeed for this instrument; anything else the exchange says is retried.
        """
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
                return fn()
            except WeightBudgetBlocked as exc:  # another request of this machine was told to stop for long
                if exc.status == 418:
                    raise RestAccessError(f"{where}: {exc}") from exc
                raise FetchStopped(str(exc)) from exc
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
                    raise FetchStopped(f"{label} (rate limit) {attempt} times in a row; exchange said: {_short(exc)}") from exc
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
                raise FetchStopped(f"{instrument.symbol} is unknown to {self.exchange_id(instrument.market)} "
                                   f"(delisted or renamed?): {_short(exc)}", transient=False) from exc
            except ccxt.BadRequest as exc:  # e.g. an interval the exchange does not offer: retrying repeats it
                raise FetchStopped(f"{self.exchange_id(instrument.market)} rejected the request: {_short(exc)}") from exc
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
                    raise FetchStopped(
                        f"{type(exc).__name__} after {attempt} attempts in {time.monotonic() - started:.1f} s: "
                        f"{_network_detail(exc)}"
                    ) from exc
                self._backoff(attempt, _retry_after(exchange) if status else None,
                              f"{where}: {type(exc).__name__} ({_network_detail(exc)})")
            except ccxt.BaseError as exc:  # any other exchange-reported error (incl. 5xx with an error body)
                if attempt >= self.settings.max_attempts:
                    raise FetchStopped(f"{type(exc).__name__} after {attempt} attempts: {_short(exc)}") from exc
                self._backoff(attempt, None, f"{where}: {type(exc).__name__}")

    def _backoff(self, attempt: int, retry_after: float | None, what: str) -> None:
        wait = retry_after if retry_after is not None else self.settings.backoff_seconds * 2 ** (attempt - 1)
        wait = min(max(wait, 0.0), self.settings.max_retry_wait_seconds)
        logger.warning("%s in %.2f s (attempt %d of %d)", what, wait, attempt + 1, self.settings.max_attempts)
        self._sleep(wait)

    def unified_symbol(self, instrument: Instrument) -> str:
        """The exchange's ccxt symbol for ``instrument`` (markets loaded once, through ``call``)."""
        if instrument not in self._symbols:
            exchange = self.exchange(instrument.market)
            self.call(instrument, exchange.load_markets)
            self._symbols[instrument] = resolve_unified_symbol(exchange.markets, instrument, self.exchange_id(instrument.market))
        return self._symbols[instrument]


# ---------------------------------------------------------------------------------------------
# pure helpers


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
    """A subclass remembering the HTTP status and URL of the last response (ccxt keeps headers only),
    and taking each request's weight from the shared budget (``weight_budget``) before sending it."""
    cached = _RECORDING.get(cls)
    if cached is None:

        def on_rest_response(self: Any, code: Any, reason: Any, url: Any, method: Any, response_headers: Any,
                             response_body: Any, request_headers: Any, request_body: Any) -> Any:
            self.last_http_status = int(code) if code is not None else None
            self.last_request_url = redact_url(url) if isinstance(url, str) else url
            ticket, self.weight_ticket = self.weight_ticket, None
            if self.weight_budget is not None and ticket is not None:
                self.weight_budget.observe(ticket, self.last_http_status, response_headers)
            return cls.on_rest_response(self, code, reason, url, method, response_headers, response_body,
                                        request_headers, request_body)

        def fetch(self: Any, url: str, *args: Any, **kwargs: Any) -> Any:
            # ccxt writes the full request URL (user-info included) into its exception messages.
            try:
                if self.weight_budget is not None:
                    self.weight_ticket = self.weight_budget.acquire(url, self.weight_market)
                return cls.fetch(self, url, *args, **kwargs)
            except Exception as exc:
                # The same object, scrubbed in place with its whole cause/context chain: no new context.
                raise redact_exception(exc)  # noqa: B904

        cached = type(cls.__name__, (cls,), {"on_rest_response": on_rest_response, "fetch": fetch,
                                             "last_http_status": None, "last_request_url": None,
                                             "weight_budget": None, "weight_market": "spot", "weight_ticket": None})
        _RECORDING[cls] = cached
    return cached


_RECORDING: dict[type, type] = {}


def _retry_after(exchange: Any) -> float | None:
    return parse_retry_after(getattr(exchange, "last_response_headers", None), now=time.time())


def _short(exc: BaseException, limit: int = 300) -> str:
    """One line of an exception's message, URLs redacted (ccxt's messages carry the request URL)."""
    text = redact_text(" ".join(str(exc).split()))
    return text if len(text) <= limit else text[:limit] + "…"


def _network_detail(exc: BaseException) -> str:
    """ccxt's message names the URL; a deadline overrun (the cause) adds how long it waited."""
    cause = exc.__cause__
    return f"{_short(exc)} ({cause.reason})" if isinstance(cause, TransferDeadlineExceeded) else _short(exc)


