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
unit normalisation included (its contract sizes come from ``contract_size``, a lookup the caller
hands in: exchangeInfo through the lake, ``universe/contract_sizes.py``). No market list is needed
for that path, so nothing but kline requests is sent.

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

Errors and transport are the generic ccxt client's (``exchange/client.py``): rate limits, retries,
deadlines, redaction, and ``RestAccessError`` for what no retry fixes. A symbol the exchange does
not know, or retries running out (``FetchStopped``), ends that window with ``FetchOutcome.error``
(the rows fetched so far are kept and the gap reason says "fetch failed: ...").
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import ccxt
import polars as pl

from lakehouse_assets.exchange.client import (
    ExchangeClient,
    ExchangeSettings,
    FetchStopped,
    logger,
)
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.klines.gapfill import SOURCE_REST, FetchOutcome
from lakehouse_assets.klines.parse import (
    FILE_COLUMNS,
    ArchiveFileError,
    ConflictingRowsError,
    drop_identical_duplicates,
    parse_klines_csv,
)
from lakehouse_assets.klines.schema import SILVER_KLINES_SCHEMA, empty_klines, interval_to_timedelta

#: The USD size of a COIN-M contract (``universe.contract_sizes.LakeContractSizes`` in the assets).
ContractSizeLookup = Callable[[Instrument], float]

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


@dataclass(frozen=True)
class RestSettings(ExchangeSettings):
    """Everything the klines client needs; built by ``BinanceRestResource`` (``defs/resources.py``) from env vars."""

    page_limit: int = DEFAULT_PAGE_LIMIT
    kline_api: str = "auto"  # "auto" (raw endpoints on Binance-family exchanges) or "ohlcv" (always fetch_ohlcv)

    def __post_init__(self) -> None:
        if self.page_limit < 1:
            raise ValueError(f"page_limit must be >= 1, got {self.page_limit}")
        super().__post_init__()
        if self.kline_api not in ("auto", "ohlcv"):
            raise ValueError(f"kline_api must be 'auto' or 'ohlcv', got {self.kline_api!r}")


class ConflictingCandles(ValueError):
    """A source sent two different candles for one open_time (``open_time_ms``)."""

    def __init__(self, message: str, open_time_ms: int) -> None:
        super().__init__(message)
        self.open_time_ms = open_time_ms


class RestKlinesClient(ExchangeClient):
    """Klines from one ccxt exchange per market (``ExchangeClient``), paged into silver rows. Not thread-safe."""

    settings: RestSettings

    def __init__(
        self,
        settings: RestSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        contract_size: ContractSizeLookup | None = None,
    ) -> None:
        super().__init__(settings, sleep=sleep)
        self.stats: dict[str, int] = defaultdict(int)
        #: USD size of a COIN-M contract (raw cm rows need it); None: COIN-M raw rows cannot be converted.
        self.contract_size = contract_size

    def uses_raw_klines(self, market: str) -> bool:
        """True when rows come with all 12 Binance fields (raw endpoint), False for fetch_ohlcv."""
        return self.settings.kline_api == "auto" and isinstance(self.exchange(market), ccxt.binance)

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
                    raise FetchStopped(
                        f"{self.describe(instrument.market)} answered a request for candles from "
                        f"{_from_ms(since):%Y-%m-%d %H:%M} with older ones ({_from_ms(oldest):%Y-%m-%d %H:%M}): "
                        "it ignores startTime/since"
                    )
                if not fresh:
                    break  # empty page: nothing more in the window
                rows += repeats + fresh
                seen.update(int(r[0]) for r in fresh)
                since = max(int(r[0]) for r in fresh) + step_ms
        except FetchStopped as stop:
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
            symbol = self.unified_symbol(instrument)
            call = lambda: exchange.fetch_ohlcv(symbol, interval, since, limit)  # noqa: E731
        page = self.call(instrument, call)
        if not isinstance(page, list) or not all(
            isinstance(r, list) and len(r) >= 6 and isinstance(r[0], int | str) and str(r[0]).isdigit() for r in page
        ):
            raise FetchStopped(f"unexpected response from {self.describe(instrument.market)}: {str(page)[:200]}")
        return page

    # ------------------------------------------------------------------ rows -> silver

    def _to_silver(self, instrument: Instrument, interval: str, rows: list[list[Any]], *, raw: bool) -> pl.DataFrame:
        if not rows:
            return empty_klines()
        source = self.describe(instrument.market)
        if raw:
            size = None
            if instrument.market == "cm":
                if self.contract_size is None:
                    raise ValueError(f"REST {instrument.key}: COIN-M rows need contract sizes; none were given to the client")
                size = self.contract_size(instrument)
            return binance_rows_to_silver(rows, instrument=instrument, interval=interval, source=source,
                                          contract_size=size)  # fmt: skip
        return ohlcv_rows_to_silver(rows, instrument=instrument, interval=interval)


# ---------------------------------------------------------------------------------------------
# pure conversions


def binance_rows_to_silver(
    rows: list[list[Any]],
    *,
    instrument: Instrument,
    interval: str,
    source: str = "REST",
    contract_size: float | None = None,
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
                contract_size=contract_size,
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


# ---------------------------------------------------------------------------------------------
# helpers


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


def _ms(moment: datetime) -> int:
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)
