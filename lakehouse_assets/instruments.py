"""The symbol universe and where each instrument lives in Binance's archive.

Binance spreads markets over three URL prefixes and the same ticker (BTCUSDT) exists in
several of them, so an instrument is always the pair (market, symbol), never a bare symbol.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import polars as pl

MARKETS: dict[str, str] = {
    "spot": "data/spot",
    "um": "data/futures/um",
    "cm": "data/futures/cm",
}
#: The futures markets (USD-M, COIN-M): the ones with funding rates and contract volumes.
FUTURES_MARKETS: tuple[str, ...] = ("um", "cm")

DEFAULT_SYMBOLS = "spot:BTCUSDT,spot:ETHUSDT,um:BTCUSDT,cm:BTCUSD_PERP"

# ASCII only: str.isalnum() also accepts full-width letters (ＢＴＣＵＳＤＴ), which name no Binance file
# and would turn into a URL, a lake path and a Parquet file name.
_SYMBOL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")


@dataclass(frozen=True, order=True)
class Instrument:
    market: str
    symbol: str

    def __post_init__(self) -> None:
        if self.market not in MARKETS:
            raise ValueError(
                f"unknown market {self.market!r} for symbol {self.symbol!r}; "
                f"expected one of {', '.join(MARKETS)}"
            )
        if not _SYMBOL_RE.fullmatch(self.symbol):
            raise ValueError(
                f"invalid symbol {self.symbol!r} (market {self.market}): only ASCII letters, digits and '_' are allowed"
            )

    @property
    def key(self) -> str:
        return f"{self.market}:{self.symbol}"

    def daily_klines_path(self, interval: str, day: date) -> str:
        """Archive-relative path of a daily kline zip, exactly as data.binance.vision lays it out."""
        name = f"{self.symbol}-{interval}-{day.isoformat()}.zip"
        return f"{MARKETS[self.market]}/daily/klines/{self.symbol}/{interval}/{name}"

    def __str__(self) -> str:
        return self.key


def parse_instrument(text: str) -> Instrument:
    """Parse ``market:SYMBOL``; a bare ``SYMBOL`` means spot, the market most users start with."""
    text = text.strip()
    if ":" in text:
        market, symbol = text.split(":", 1)
    else:
        market, symbol = "spot", text
    symbol = symbol.strip()
    if not symbol:
        raise ValueError(f"{text!r} has no symbol")
    # Upper-case ASCII only: 'ß'.upper() is 'SS', which would turn a typo into a valid-looking symbol.
    return Instrument(market.strip().lower(), symbol.upper() if symbol.isascii() else symbol)


def parse_universe(text: str) -> list[Instrument]:
    """Parse a comma-separated universe, keeping order and dropping repeats.

    Every entry must be valid, and an empty list is an error rather than "no instruments": a run over
    an empty (or partly dropped) universe would replace each day with fewer instruments than it has.
    All bad entries are reported together, so one edit fixes them.
    """
    if not any(part.strip() for part in text.split(",")):
        raise ValueError("the symbol universe is empty; set LAKEHOUSE_SYMBOLS to e.g. 'spot:BTCUSDT'")
    seen: dict[Instrument, None] = {}
    problems: list[str] = []
    for number, part in enumerate(text.split(","), start=1):
        if not part.strip():
            problems.append(f"entry {number} is empty")
            continue
        try:
            seen.setdefault(parse_instrument(part), None)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))
    return list(seen)


def futures_only(instruments: Iterable[Instrument]) -> list[Instrument]:
    """The USD-M and COIN-M instruments, in order: spot has no funding."""
    return [i for i in instruments if i.market in FUTURES_MARKETS]


def instrument_frame(instruments: Iterable[Instrument]) -> pl.DataFrame:
    """One row per instrument, ``market`` and ``symbol`` as strings (typed even when empty): the frame
    to semi-join a table on to keep only these instruments."""
    pairs = [(i.market, i.symbol) for i in instruments]
    return pl.DataFrame(pairs, schema={"market": pl.String(), "symbol": pl.String()}, orient="row")
