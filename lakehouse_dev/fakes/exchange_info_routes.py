"""``exchangeInfo`` for the local Binance REST stand-in (``rest_server.BinanceRestServer``): real answers, swappable.

    spot  /api/v3/exchangeInfo    the REAL spot answer of 2023-08-13 (2,276 symbols, 883 in BREAK)
    um    /fapi/v1/exchangeInfo   the REAL USD-M answer of 2021-09-06 (133 symbols)
    cm    /dapi/v1/exchangeInfo   a SYNTHETIC COIN-M answer built from the real 2020 one
                                  (``lakehouse_dev/fixtures/synthetic_coinm_exchange_info.py``)

Every answer is served byte for byte as bundled (see ``data/binance/PROVENANCE.md``), so a test can
compare what the lake stored with the file's sha256. The real answers' ``serverTime`` is their own
(2021, 2023): the stand-in does not pretend they are fresh.

A test swaps an answer with ``set_answer`` (bytes as is, or a dict serialised compactly), e.g. a
malformed body or an answer in which a symbol disappeared (``without_symbols``); ``reset`` restores
the bundled ones. The server serves ``answer(market)`` through its route table, so its faults
(``fail``, ``trickle``) and request log apply here too.
"""

from __future__ import annotations

import functools
import gzip
import json
import threading
from pathlib import Path
from typing import Any

from lakehouse_dev import SAMPLE_DATA

EXCHANGE_INFO_PATHS = {"spot": "/api/v3/exchangeInfo", "um": "/fapi/v1/exchangeInfo", "cm": "/dapi/v1/exchangeInfo"}

API = SAMPLE_DATA / "api"
#: The bundled answer each market serves by default (``.gz``: stored compressed, served decompressed).
DEFAULT_ANSWERS: dict[str, Path] = {
    "spot": API / "SwapLandExchange+Statics" / "exchangeInfo.json.gz",
    "um": API / "izzortsi+rezbot" / "exchangeInfo.json",
    "cm": API / "SYNTHETIC" / "dapi-v1-exchangeInfo.SYNTHETIC.json",
}


@functools.cache
def bundled_answer(path: Path) -> bytes:
    """The bytes of a bundled answer as Binance sent them (a ``.gz`` file decompressed), read once per process."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


class ExchangeInfoRoutes:
    """The answer each market's exchangeInfo route of one stand-in (``server``) currently serves."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self._lock = threading.Lock()
        self._answers: dict[str, bytes] = {}  # market -> swapped answer; absent: the bundled default

    def answer(self, market: str) -> bytes:
        """What ``market``'s exchangeInfo serves now."""
        with self._lock:
            swapped = self._answers.get(market)
        return swapped if swapped is not None else bundled_answer(DEFAULT_ANSWERS[market])

    def set_answer(self, market: str, body: bytes | dict[str, Any]) -> bytes:
        """Serve ``body`` (bytes as is; a dict as compact JSON) for ``market`` until ``reset``; returns the bytes."""
        if market not in EXCHANGE_INFO_PATHS:
            raise ValueError(f"unknown market {market!r}; expected one of {', '.join(EXCHANGE_INFO_PATHS)}")
        data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        with self._lock:
            self._answers[market] = data
        return data

    def without_symbols(self, market: str, *symbols: str) -> bytes:
        """Serve the current answer minus ``symbols`` (as if Binance had delisted them); returns the new bytes."""
        answer = json.loads(self.answer(market))
        unknown = set(symbols) - {s["symbol"] for s in answer["symbols"]}
        if unknown:
            raise ValueError(f"{market} exchangeInfo has no symbol(s) {sorted(unknown)}")
        answer["symbols"] = [s for s in answer["symbols"] if s["symbol"] not in symbols]
        return self.set_answer(market, answer)

    def reset(self, market: str | None = None) -> None:
        with self._lock:
            if market is None:
                self._answers.clear()
            else:
                self._answers.pop(market, None)

    def requests(self, market: str | None = None) -> list[Any]:
        """Logged exchangeInfo requests (all markets, or one), in arrival order."""
        paths = set(EXCHANGE_INFO_PATHS.values()) if market is None else {EXCHANGE_INFO_PATHS[market]}
        return [r for r in list(self.server.requests) if r.path in paths]
