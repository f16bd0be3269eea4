"""``bronze/exchange_info``: each market's raw ``exchangeInfo`` answer of a UTC day, stored byte for byte, and its manifest.

Layout: the answer of ``market`` (spot, um, cm) on ``day`` is stored at
``bronze/binance/api/<market>/exchangeInfo/date=YYYY-MM-DD/exchangeInfo.json`` exactly as the exchange
sent it (``answer_key``); the manifest (:data:`MANIFEST_SCHEMA`, one row per market and day) says where
it came from, its sha256, size, ``serverTime`` and symbol count, and what the exchange answered this
time (``upstream_status``).

Why only today is fetched: an exchangeInfo answer describes the exchange at the moment it is asked.
Fetching it while materializing 2021-03-04 would file today's universe under 2021, which is exactly
the kind of look-ahead a point-in-time table must never contain. So:

* the current UTC day fetches every market and stores the answers (a later run the same day replaces
  that day's answer with the newer one: the table holds one answer per market and day);
* a past day is never fetched: its stored answers are re-read and re-listed (``past_day``), and a day
  with no stored answer for a market fails naming the day, the market and why, nothing written;
* with REST switched off (``LAKEHOUSE_REST_FILL=0``) nothing is fetched: stored answers stay listed
  (``rest_disabled``), markets without one get no row.

Never lose data: a fetch that fails (an outage, a 4xx/5xx after the client's retries, a malformed
body) on a day whose answer is already stored keeps that answer (``fetch_failed``, the reason logged
and returned). Without a stored answer the run fails and writes nothing, not even the other markets'
new answers: everything is fetched and checked first, then written. No Dagster here.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import polars as pl

from lakehouse_assets.exchange.exchange_info import ExchangeInfoError, parse_exchange_info
from lakehouse_assets.instruments import MARKETS
from lakehouse_assets.lake.store import LakeStore

if TYPE_CHECKING:  # the fetch module imports ccxt (~0.5 s): loaded only when a run fetches
    from lakehouse_assets.exchange.exchange_info_fetch import FetchedExchangeInfo

log = logging.getLogger("lakehouse.bronze")

RAW_PREFIX = "bronze/binance/api"
ANSWER_FILE = "exchangeInfo.json"
#: The manifest's ``symbol``: the lake stores one file per (market, symbol) and day, and a row here
#: stands for a whole market's answer (lower case, so it can never be a Binance symbol).
MANIFEST_SYMBOL = "exchangeInfo"

UPSTREAM_OK = "ok"
UPSTREAM_FAILED = "fetch_failed"  # the exchange gave no usable answer; the day's stored answer is kept
NOT_FETCHED_PAST = "past_day"  # a past day: never fetched, its stored answer is listed again
NOT_FETCHED_DISABLED = "rest_disabled"  # LAKEHOUSE_REST_FILL off: nothing fetched, the stored answer is listed

MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "market": pl.String(),
    "symbol": pl.String(),
    "date": pl.Date(),
    "source_url": pl.String(),
    "lake_path": pl.String(),
    "sha256": pl.String(),
    "bytes": pl.Int64(),
    "server_time": pl.Datetime("ms", "UTC"),
    "symbols": pl.Int64(),
    "fetched_at": pl.Datetime("ms", "UTC"),
    "upstream_status": pl.String(),
}


def answer_key(market: str, day: date) -> str:
    """Where the lake stores ``market``'s answer of ``day``."""
    return f"{RAW_PREFIX}/{market}/exchangeInfo/date={day.isoformat()}/{ANSWER_FILE}"


def answer_days(store: LakeStore, market: str) -> list[date]:
    """The days the lake holds an answer of ``market`` for, oldest first."""
    days = []
    for name in store.list_dirs(f"{RAW_PREFIX}/{market}/exchangeInfo"):
        if name.startswith("date=") and store.exists(answer_key(market, date.fromisoformat(name[5:]))):
            days.append(date.fromisoformat(name[5:]))
    return sorted(days)


class ExchangeInfoIngestError(RuntimeError):
    """Markets or days without any answer to record; every one named, nothing written."""

    def __init__(self, failures: Sequence[tuple[str, BaseException]]) -> None:
        self.failures = list(failures)
        super().__init__(
            f"bronze/exchange_info: {len(self.failures)} answer(s) missing, nothing written:\n"
            + "\n".join(f"- {what}: {exc}" for what, exc in self.failures)
        )


class PastDayNotStored(LookupError):
    """A past day asked for, whose answer was never stored: exchangeInfo cannot be fetched for the past."""

    transient = False  # no retry can fetch yesterday's universe


@dataclass(frozen=True)
class StoredAnswer:
    market: str
    day: date
    lake_path: str
    body: bytes
    instruments: pl.DataFrame
    server_time: datetime


def stored_answer(store: LakeStore, market: str, day: date) -> StoredAnswer | None:
    """The answer the lake holds for ``market`` and ``day``, re-read and parsed (None: none stored).

    A stored answer that no longer parses (damaged in the lake) raises ``ExchangeInfoError`` naming it.
    """
    key = answer_key(market, day)
    if not store.exists(key):
        return None
    body = store.get_bytes(key)
    instruments = parse_exchange_info(body, market=market, source=store.uri(key))
    from lakehouse_assets.exchange.exchange_info_fetch import server_time_of

    return StoredAnswer(market, day, key, body, instruments, server_time_of(body, instruments))


@dataclass
class IngestResult:
    """The manifest rows, the parsed answers they list (for reports), and what went wrong but was survivable."""

    manifest: pl.DataFrame
    answers: dict[tuple[str, date], pl.DataFrame] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def ingest_exchange_info(
    store: LakeStore,
    markets: Iterable[str],
    days: Sequence[date],
    *,
    today: date,
    fetch: Callable[[str], FetchedExchangeInfo] | None,
    previous: pl.DataFrame | None = None,
) -> IngestResult:
    """Fetch (today) or re-list (past days) each market's answer; write today's new answers; return the manifest.

    ``fetch(market)`` is ``exchange_info_fetch.fetch_exchange_info`` bound to a client (None: REST is
    off). ``previous`` is the manifest the lake already holds for ``days``: a kept answer keeps the
    ``source_url`` and ``fetched_at`` of the run that fetched it.
    """
    from lakehouse_assets.exchange.exchange_info_fetch import ExchangeInfoFetchError

    markets = [m for m in MARKETS if m in set(markets)]
    future = [d for d in days if d > today]
    if future:
        raise ValueError(f"bronze/exchange_info: {future[0]} is after today ({today}, UTC); nothing to fetch")
    earlier = _previous_rows(previous)
    failures: list[tuple[str, BaseException]] = []
    rows: list[dict[str, object]] = []
    result = IngestResult(manifest=pl.DataFrame(schema=MANIFEST_SCHEMA))
    to_write: list[tuple[str, bytes]] = []

    def listed(answer: StoredAnswer, status: str) -> None:
        before = earlier.get((answer.market, answer.day), {})
        rows.append(_row(answer.market, answer.day, before.get("source_url"), answer.lake_path, answer.body,
                         answer.server_time, answer.instruments.height, before.get("fetched_at"), status))
        result.answers[(answer.market, answer.day)] = answer.instruments

    for day in sorted(days):
        for market in markets:
            where = f"{market} {day}"
            try:
                held = stored_answer(store, market, day)
            except ExchangeInfoError as exc:  # damaged in the lake: useless as a fallback
                if day < today:
                    failures.append((where, exc))
                    continue
                result.problems.append(f"{where}: the stored answer is damaged ({exc}); fetching it again")
                held = None
            if day < today:
                if held is None:
                    failures.append((where, PastDayNotStored(
                        f"no answer stored for this past day, and none can be fetched now: exchangeInfo describes "
                        f"the exchange at the moment it is asked, so today's answer ({today}) filed under {day} "
                        f"would be look-ahead. Only the current UTC day's partition fetches; materialize that one"
                    )))  # fmt: skip
                else:
                    listed(held, NOT_FETCHED_PAST)
                continue
            if fetch is None:
                if held is None:
                    result.problems.append(f"{where}: not fetched (REST switched off, LAKEHOUSE_REST_FILL=0), none stored")
                else:
                    listed(held, NOT_FETCHED_DISABLED)
                continue
            try:
                got = fetch(market)
            except ExchangeInfoFetchError as exc:
                if held is None:
                    failures.append((where, exc))
                    continue
                log.warning("%s: %s; keeping the answer stored for %s", where, exc, day)
                result.problems.append(f"{where}: {exc}; kept the answer stored earlier that day")
                listed(held, UPSTREAM_FAILED)
                continue
            key = answer_key(market, day)
            if held is None or held.body != got.body:
                to_write.append((key, got.body))
            rows.append(_row(market, day, got.url, key, got.body, got.server_time, got.symbols, got.fetched_at,
                             UPSTREAM_OK))
            result.answers[(market, day)] = got.instruments
            stale = got.fetched_at - got.server_time
            if abs(stale.total_seconds()) > 86_400:
                result.problems.append(
                    f"{where}: the answer's serverTime is {got.server_time:%Y-%m-%d %H:%M:%S} UTC, "
                    f"{abs(stale.days)} day(s) from when it was fetched: the URL serves an old answer (a mirror or a stand-in?)"
                )
    if failures:
        raise ExchangeInfoIngestError(failures)
    for key, body in to_write:  # only once every market has an answer to record
        store.put_bytes(key, body)
    result.manifest = pl.DataFrame(rows, schema=MANIFEST_SCHEMA) if rows else pl.DataFrame(schema=MANIFEST_SCHEMA)
    return result


def _row(market: str, day: date, url: object, key: str, body: bytes, server_time: datetime, symbols: int,
         fetched_at: object, status: str) -> dict[str, object]:  # fmt: skip
    return {
        "market": market, "symbol": MANIFEST_SYMBOL, "date": day, "source_url": url, "lake_path": key,
        "sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body), "server_time": server_time,
        "symbols": symbols, "fetched_at": fetched_at, "upstream_status": status,
    }  # fmt: skip


def _previous_rows(previous: pl.DataFrame | None) -> Mapping[tuple[str, date], dict[str, object]]:
    if previous is None or previous.is_empty() or not {"market", "date"} <= set(previous.columns):
        return {}
    return {(row["market"], row["date"]): row for row in previous.iter_rows(named=True)}


def utc_today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(UTC).date()


__all__ = [
    "ANSWER_FILE", "MANIFEST_SCHEMA", "MANIFEST_SYMBOL", "NOT_FETCHED_DISABLED", "NOT_FETCHED_PAST", "RAW_PREFIX",
    "UPSTREAM_FAILED", "UPSTREAM_OK", "ExchangeInfoIngestError", "IngestResult",
    "PastDayNotStored", "StoredAnswer", "answer_days", "answer_key", "ingest_exchange_info", "stored_answer",
    "utc_today",
]
