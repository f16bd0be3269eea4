"""One market's raw ``exchangeInfo`` answer, fetched through ccxt, kept as the bytes the exchange sent.

Why ccxt's implicit endpoints (``publicGetExchangeInfo`` spot, ``fapiPublicGetExchangeInfo`` USD-M,
``dapiPublicGetExchangeInfo`` COIN-M) and not ``load_markets``: bronze stores what Binance said, not
ccxt's reading of it, and the implicit methods still go through the REST client's machinery
(``ExchangeClient.call``: the base-URL overrides LAKEHOUSE_REST_URL*, ccxt's rate limiter and
request weights, retries on 429/418/5xx/timeouts, per-request deadlines, redaction).

The bytes: ccxt (4.5) reads every answer with ``response.encoding = 'utf-8'`` and keeps the decoded
text as ``exchange.last_http_response`` (``enableLastHttpResponse``, on by default). For a UTF-8 body
re-encoding that text gives back the exact bytes sent; a body that is not UTF-8 was decoded with
replacement characters and can no longer be stored byte for byte, so it is refused like any other
malformed answer. Binance's answers are ASCII.

A body is accepted only if ``exchange_info.parse_exchange_info`` reads it (JSON, a ``symbols`` list,
every symbol well formed): a malformed answer (an HTML error page served with 200, a truncated body)
is asked for once more, then refused with ``ExchangeInfoFetchError`` naming the redacted URL, so the
caller can keep what it stored before and write nothing new. No Dagster here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import ccxt
import polars as pl

from lakehouse_assets.exchange.client import ExchangeClient, FetchStopped, RestAccessError, logger
from lakehouse_assets.exchange.exchange_info import ExchangeInfoError, parse_exchange_info
from lakehouse_assets.instruments import MARKETS, Instrument
from lakehouse_assets.redact import redact_url

#: ccxt implicit method and the key of its base URL in ``exchange.urls['api']``, per market.
EXCHANGE_INFO_ENDPOINTS: dict[str, tuple[str, str]] = {
    "spot": ("publicGetExchangeInfo", "public"),  # GET /api/v3/exchangeInfo   (weight 20 on Binance)
    "um": ("fapiPublicGetExchangeInfo", "fapiPublic"),  # GET /fapi/v1/exchangeInfo
    "cm": ("dapiPublicGetExchangeInfo", "dapiPublic"),  # GET /dapi/v1/exchangeInfo
}
#: How often a malformed body is asked for: once more, as the archive client does for a non-zip body.
MALFORMED_ATTEMPTS = 2
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ExchangeInfoFetchError(RuntimeError):
    """No usable answer from ``url``: ``transient`` says whether a later attempt may get one,
    ``malformed`` that the exchange answered but with a body that is not an exchangeInfo answer."""

    def __init__(self, message: str, *, market: str, url: str, transient: bool, malformed: bool = False) -> None:
        super().__init__(message)
        self.market = market
        self.url = url
        self.transient = transient
        self.malformed = malformed

    def __reduce__(self) -> tuple[Any, ...]:  # survives the multiprocess executor's pickling
        return (_restore, (str(self), self.market, self.url, self.transient, self.malformed))


def _restore(message: str, market: str, url: str, transient: bool, malformed: bool) -> ExchangeInfoFetchError:
    return ExchangeInfoFetchError(message, market=market, url=url, transient=transient, malformed=malformed)


@dataclass(frozen=True)
class FetchedExchangeInfo:
    """A verified answer: its bytes, where they came from (redacted), and what they say."""

    market: str
    url: str
    body: bytes
    instruments: pl.DataFrame  # parse_exchange_info(body): one row per symbol
    server_time: datetime
    fetched_at: datetime

    @property
    def symbols(self) -> int:
        return self.instruments.height


def exchange_info_url(client: ExchangeClient, market: str) -> str:
    """The (redacted) URL ``fetch_exchange_info`` asks, after the base-URL overrides."""
    exchange = client.exchange(market)
    return redact_url(f"{exchange.urls['api'][EXCHANGE_INFO_ENDPOINTS[market][1]]}/exchangeInfo")


def fetch_exchange_info(
    client: ExchangeClient, market: str, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> FetchedExchangeInfo:
    """``market``'s exchangeInfo answer as sent, parsed; ``ExchangeInfoFetchError`` when there is none to trust."""
    if market not in MARKETS:
        raise ValueError(f"unknown market {market!r}; expected one of {', '.join(MARKETS)}")
    method_name, _ = EXCHANGE_INFO_ENDPOINTS[market]
    try:
        exchange = client.exchange(market)
    except RestAccessError as exc:  # an unknown ccxt id: configuration
        raise ExchangeInfoFetchError(str(exc), market=market, url="", transient=False) from exc
    method = getattr(exchange, method_name, None)
    if not isinstance(exchange, ccxt.binance) or method is None:
        raise ExchangeInfoFetchError(
            f"{client.describe(market)} has no Binance exchangeInfo endpoint ({method_name}): bronze/exchange_info "
            f"needs a Binance-family ccxt exchange for {market} (LAKEHOUSE_REST_EXCHANGE_{market.upper()}, "
            f"e.g. {('binance', 'binanceusdm', 'binancecoinm')[list(MARKETS).index(market)]!r})",
            market=market, url="", transient=False,
        )  # fmt: skip
    url = exchange_info_url(client, market)
    for attempt in range(1, MALFORMED_ATTEMPTS + 1):
        exchange.last_http_response = None
        try:
            client.call(Instrument(market, "exchangeInfo"), method)
        except RestAccessError as exc:
            raise ExchangeInfoFetchError(f"{url}: {exc}", market=market, url=url, transient=False) from exc
        except FetchStopped as exc:
            raise ExchangeInfoFetchError(f"{url}: {exc}", market=market, url=url, transient=exc.transient) from exc
        text = exchange.last_http_response
        try:
            body, instruments, server_time = _verified(text, market, url)
        except ExchangeInfoError as exc:
            if attempt < MALFORMED_ATTEMPTS:
                logger.warning("%s: %s; asking once more", url, exc)
                continue
            raise ExchangeInfoFetchError(
                f"{exc} (after {attempt} attempts; nothing stored)", market=market, url=url, transient=False,
                malformed=True,
            ) from exc
        return FetchedExchangeInfo(market, url, body, instruments, server_time, now())
    raise AssertionError("unreachable")  # pragma: no cover


def _verified(text: Any, market: str, url: str) -> tuple[bytes, pl.DataFrame, datetime]:
    if not isinstance(text, str):
        raise ExchangeInfoError(f"{url}: no answer body was recorded")
    if "\ufffd" in text:
        raise ExchangeInfoError(f"{url}: exchangeInfo answer is not valid UTF-8, so it cannot be stored byte for byte")
    body = text.encode("utf-8")
    instruments = parse_exchange_info(body, market=market, source=url)
    return body, instruments, server_time_of(body, instruments)


def server_time_of(body: bytes, instruments: pl.DataFrame | None = None) -> datetime:
    """An answer's ``serverTime`` as a UTC datetime (the parsed rows carry it; an answer without symbols does not)."""
    if instruments is not None and instruments.height:
        return instruments["server_time"][0]
    return _EPOCH + timedelta(milliseconds=int(json.loads(body)["serverTime"]))
