"""Funding endpoints for the local Binance REST stand-in (``rest_server.BinanceRestServer``).

Added through the server's route table, so the request loop, fault injection and request log are
the same ones the kline tests use. Every row served comes from a REAL monthly fundingRate archive
of the sample (``data/futures/<um|cm>/monthly/fundingRate/<SYMBOL>/*.zip``): ``fundingTime`` is the
archive's ``calc_time`` (with its few-ms lateness) and ``fundingRate`` its exact decimal text.
The archive has no mark price, so no ``markPrice`` is served (Binance's live API sends one;
nothing is invented here).

    um  /fapi/v1/fundingRate   /fapi/v1/fundingInfo
    cm  /dapi/v1/fundingRate   /dapi/v1/fundingInfo

Paging follows Binance's docs: ascending; with ``startTime`` the page holds the first ``limit``
rows from there (up to ``endTime``); without it, the newest ``limit`` rows up to ``endTime``;
``limit`` defaults to 100 and may not exceed 1000. ``fundingInfo`` lists only symbols with an
adjusted interval or cap, which for the sample is none, unless a test sets ``info``.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

from lakehouse_dev.fakes.rest_server import MARKET_DIRS, BinanceRestServer, Reply
from lakehouse_dev.fakes.sample_files import sample_text

FUNDING_PATHS = {"um": "/fapi/v1/fundingRate", "cm": "/dapi/v1/fundingRate"}
INFO_PATHS = {"um": "/fapi/v1/fundingInfo", "cm": "/dapi/v1/fundingInfo"}
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class FundingRoutes:
    def __init__(self, server: BinanceRestServer, root: Path | None = None) -> None:
        self.server = server
        self.root = Path(root or server.root)
        self.info: dict[str, list[dict[str, Any]]] = {"um": [], "cm": []}
        self._rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        for market in FUNDING_PATHS:
            server.add_route(FUNDING_PATHS[market], self._funding_handler(market))
            server.add_route(INFO_PATHS[market], self._info_handler(market))

    def rows(self, market: str, symbol: str) -> list[dict[str, Any]]:
        """Every settlement of the sample's monthly archives for the symbol, as Binance REST rows."""
        key = (market, symbol)
        with self._lock:
            if key not in self._rows:
                self._rows[key] = _load_rows(self.root, market, symbol)
            return self._rows[key]

    def requests(self, market: str | None = None) -> list[Any]:
        paths = set(FUNDING_PATHS.values()) if market is None else {FUNDING_PATHS[market]}
        return [r for r in self.server.requests if r.path in paths]

    def _funding_handler(self, market: str):  # noqa: ANN202 - the server's Handler signature
        def handle(server: BinanceRestServer, params: dict[str, str]) -> Reply:
            symbol = params.get("symbol", "")
            if market == "cm" and not symbol:
                return Reply(400, {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."})
            if symbol and symbol not in server.symbols(market):
                return Reply(400, {"code": -1121, "msg": "Invalid symbol."})
            try:
                limit = int(params.get("limit") or DEFAULT_LIMIT)
            except ValueError:
                return Reply(400, {"code": -1100, "msg": "Illegal characters found in parameter 'limit'."})
            if not 1 <= limit <= MAX_LIMIT:
                return Reply(400, {"code": -1130, "msg": "Invalid data sent for a parameter."})
            start = int(params["startTime"]) if params.get("startTime") else None
            end = int(params["endTime"]) if params.get("endTime") else None
            symbols = [symbol] if symbol else server.symbols(market)
            rows = sorted(
                (r for s in symbols for r in self.rows(market, s)), key=lambda r: (r["fundingTime"], r["symbol"])
            )
            if start is not None:
                rows = [r for r in rows if r["fundingTime"] >= start]
            if end is not None:
                rows = [r for r in rows if r["fundingTime"] <= end]
            page = rows[:limit] if start is not None else rows[-limit:]
            return Reply(200, page)

        return handle

    def _info_handler(self, market: str):  # noqa: ANN202
        def handle(server: BinanceRestServer, params: dict[str, str]) -> Reply:
            return Reply(200, list(self.info[market]))

        return handle


def add_funding_routes(server: BinanceRestServer, root: Path | None = None) -> FundingRoutes:
    return FundingRoutes(server, root)


def _load_rows(root: Path, market: str, symbol: str) -> list[dict[str, Any]]:
    folder = root / MARKET_DIRS[market] / "monthly" / "fundingRate" / symbol
    by_time: dict[int, dict[str, Any]] = {}
    for path in sorted(folder.glob("*")):
        text = sample_text(path)
        if text is None:
            continue
        for line in io.StringIO(text):
            fields = line.strip().split(",")
            if len(fields) != 3 or not fields[0].isdigit():
                continue  # header
            by_time[int(fields[0])] = {"symbol": symbol, "fundingTime": int(fields[0]), "fundingRate": fields[2]}
    return [by_time[k] for k in sorted(by_time)]
