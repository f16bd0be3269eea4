"""Funding history over REST (ccxt ``fetch_funding_rate_history``) for days the archive lacks.

Binance publishes funding only as monthly archives, days to weeks after the month ends, so the
current month (and the start of the next) exist only behind the API. This module fetches them
through ccxt (binanceusdm for ``um``, binancecoinm for ``cm``) and returns Binance's raw rows,
which bronze stores as they came, one JSON envelope per instrument-day:

    {"exchange": "binanceusdm", "symbol": "BTCUSDT", "day": "2026-05-03",
     "window_start_ms": ..., "window_end_ms": ..., "rows": [<Binance fundingRate rows>],
     "funding_info": <the symbol's fundingInfo entry or null>, "funding_info_checked": true}

Each day's window starts 8 h before midnight so it also holds the previous settlement: REST rows
do not state their interval, and silver reads it from the spacing. ``fundingInfo`` (one call per
market per run) covers the case the spacing cannot settle: a lone settlement.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from lakehouse_assets.funding.schema import HOUR_MS
from lakehouse_assets.funding.transforms import day_start_ms
from lakehouse_assets.instruments import Instrument

if TYPE_CHECKING:  # ccxt is imported only when REST is used
    from lakehouse_assets.exchange.client import ExchangeClient

# ccxt exchange per futures market (the ids ccxt uses for Binance's USD-M and COIN-M APIs).
FUNDING_EXCHANGE_IDS: dict[str, str] = {"um": "binanceusdm", "cm": "binancecoinm"}
FUNDING_ENDPOINTS: dict[str, str] = {"um": "/fapi/v1/fundingRate", "cm": "/dapi/v1/fundingRate"}
REST_RAW_PREFIX = "bronze/rest"
# Binance's maximum page size for fundingRate (both markets).
PAGE_LIMIT = 1000
# The longest interval Binance uses: a day's payload starts this early to include the previous settlement.
CONTEXT_MS = 8 * HOUR_MS


class FundingExchange(Protocol):
    """The slice of a ccxt exchange this module uses (so tests can pass a real ccxt object or a stand-in)."""

    id: str

    def load_markets(self, reload: bool = False, params: dict = ...) -> Any: ...
    def market(self, symbol: str) -> Any: ...
    def fetch_funding_rate_history(
        self, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: dict = ...
    ) -> list[dict]: ...
    def fetch_funding_intervals(self, symbols: list[str] | None = None, params: dict = ...) -> Any: ...


class FundingRestError(RuntimeError):
    """A REST fetch that failed; the message names the instrument and the days it was for."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient

    def __reduce__(self) -> tuple[object, ...]:
        return (_restore_rest_error, (str(self), self.transient))


def _restore_rest_error(message: str, transient: bool) -> FundingRestError:
    return FundingRestError(message, transient=transient)


Call = Callable[[Callable[[], Any]], Any]


def _direct(fn: Callable[[], Any]) -> Any:
    return fn()


def fetch_funding_rows(
    exchange: FundingExchange,
    symbol: str,
    market_id: str,
    start_ms: int,
    end_ms: int,
    *,
    page_limit: int = PAGE_LIMIT,
    call: Call = _direct,
) -> list[dict[str, Any]]:
    """Binance's raw fundingRate rows with fundingTime in [start_ms, end_ms), ascending, unique.

    ``symbol`` is ccxt's unified symbol, ``market_id`` Binance's id; ``call`` wraps each request
    (the REST client's retry/backoff policy). Pages forward with ``since = last fundingTime + 1``
    (no duplicate row at page edges), stops on a short or empty page or at the window end, and
    refuses to loop on a page that does not advance.
    """
    rows: dict[int, dict[str, Any]] = {}
    since = start_ms
    while since < end_ms:
        first = since
        page = call(
            lambda: exchange.fetch_funding_rate_history(symbol, since=first, limit=page_limit, params={"until": end_ms - 1})
        )
        if not page:
            break
        newest = since - 1
        for item in page:
            info = dict(item.get("info") or {})
            if info.get("symbol") not in (None, market_id):
                raise FundingRestError(f"{exchange.id}: asked for {market_id}, got a row for {info.get('symbol')!r}")
            ms = int(info.get("fundingTime", item.get("timestamp")))
            newest = max(newest, ms)
            if start_ms <= ms < end_ms:
                rows[ms] = info
        if len(page) < page_limit or newest >= end_ms - 1:
            break
        if newest < since:
            raise FundingRestError(
                f"{exchange.id} {market_id}: fundingRate page starting {since} did not advance (newest {newest}); "
                "stopping instead of looping"
            )
        since = newest + 1
    return [rows[k] for k in sorted(rows)]


def fetch_funding_info(exchange: FundingExchange, *, call: Call = _direct) -> dict[str, dict[str, Any]]:
    """Binance's fundingInfo by symbol id: the symbols whose interval or cap was adjusted (raw entries)."""
    result = call(exchange.fetch_funding_intervals)
    items = result.values() if isinstance(result, dict) else result
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        info = item.get("info") if isinstance(item, dict) else None
        if isinstance(info, dict) and isinstance(info.get("symbol"), str):
            out[info["symbol"]] = info
    return out


@dataclass(frozen=True)
class RestAccess:
    """How bronze reaches the funding endpoints: built from the ``binance_rest`` resource's client (an
    ``exchange.client.ExchangeClient``), so URL overrides (LAKEHOUSE_REST_URL...), ccxt's rate limiter
    and the retry/backoff policy are the same for klines and funding."""

    exchange: Callable[[str], FundingExchange]  # market -> ccxt exchange
    symbol: Callable[[Instrument], str]  # instrument -> ccxt unified symbol
    call: Callable[[Instrument, Callable[[], Any]], Any]  # runs one request with retries
    describe: Callable[[str], str]  # market -> "binanceusdm via http://..." (for lineage and errors)


def rest_access_from_client(client: ExchangeClient) -> RestAccess:
    """Adapt the ``binance_rest`` resource's client: its public ``call`` (429/418 honour Retry-After,
    5xx/timeouts back off, 451/401/403/404 raise at once with an explanation) and ``unified_symbol``."""
    return RestAccess(exchange=client.exchange, symbol=client.unified_symbol, call=client.call, describe=client.describe)


def contiguous_ranges(days: Iterable[date]) -> list[tuple[date, date]]:
    """Sorted days folded into inclusive [first, last] runs, so each run is one paginated fetch."""
    ordered = sorted(set(days))
    ranges: list[tuple[date, date]] = []
    for day in ordered:
        if ranges and day == ranges[-1][1] + timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def rest_lake_path(instrument: Instrument, day: date) -> str:
    exchange_id = FUNDING_EXCHANGE_IDS[instrument.market]
    return f"{REST_RAW_PREFIX}/{exchange_id}/fundingRate/{instrument.symbol}/{instrument.symbol}-fundingRate-{day.isoformat()}.json"


def _slot_ms(ms: int) -> int:
    return (ms + HOUR_MS // 2) // HOUR_MS * HOUR_MS


def day_payloads(
    instrument: Instrument,
    days: list[date],
    fetch: Callable[[int, int], list[dict[str, Any]]],
    funding_info: dict[str, Any] | None,
    *,
    now: datetime | None = None,
) -> dict[date, bytes]:
    """Fetch the days (one call per contiguous run) and cut one JSON envelope per day.

    A day's envelope holds the rows whose slot is in [midnight - 8 h, next midnight).
    """
    exchange_id = FUNDING_EXCHANGE_IDS[instrument.market]
    fetched_at = (now or datetime.now(UTC)).isoformat()
    out: dict[date, bytes] = {}
    for first, last in contiguous_ranges(days):
        start = day_start_ms(first) - CONTEXT_MS
        end = day_start_ms(last) + 86_400_000
        # A settlement recorded a few ms early still belongs to its slot: fetch a little beyond both ends.
        rows = fetch(start - HOUR_MS // 2, end + HOUR_MS // 2)
        day = first
        while day <= last:
            lo = day_start_ms(day) - CONTEXT_MS
            hi = day_start_ms(day) + 86_400_000
            envelope = {
                "exchange": exchange_id,
                "endpoint": FUNDING_ENDPOINTS[instrument.market],
                "symbol": instrument.symbol,
                "day": day.isoformat(),
                "window_start_ms": lo,
                "window_end_ms": hi,
                "fetched_at": fetched_at,
                "rows": [r for r in rows if lo <= _slot_ms(int(r["fundingTime"])) < hi],
                "funding_info": funding_info,
                "funding_info_checked": True,
            }
            out[day] = json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()
            day += timedelta(days=1)
    return out
