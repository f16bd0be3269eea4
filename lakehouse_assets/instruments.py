"""The symbol universe and where each instrument lives in Binance's archive.

Binance spreads markets over three URL prefixes and the same ticker (BTCUSDT) exists in
several of them, so an instrument is always the pair (market, symbol), never a bare symbol.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

MARKETS: dict[str, str] = {
    "spot": "data/spot",
    "um": "data/futures/um",
    "cm": "data/futures/cm",
}

DEFAULT_SYMBOLS = "spot:BTCUSDT,spot:ETHUSDT,um:BTCUSDT,cm:BTCUSD_PERP"


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
        if not self.symbol or not self.symbol.replace("_", "").isalnum():
            raise ValueError(f"invalid symbol {self.symbol!r} (market {self.market})")

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
    return Instrument(market.strip().lower(), symbol.strip().upper())


def parse_universe(text: str) -> list[Instrument]:
    """Parse a comma-separated universe, keeping order and dropping repeats."""
    seen: dict[Instrument, None] = {}
    for part in text.split(","):
        if part.strip():
            seen.setdefault(parse_instrument(part), None)
    if not seen:
        raise ValueError("the symbol universe is empty; set LAKEHOUSE_SYMBOLS to e.g. 'spot:BTCUSDT'")
    return list(seen)


def coinm_contract_size_usd(symbol: str) -> float:
    """Face value in USD of one COIN-M (inverse) futures contract.

    COIN-M kline files count volume in contracts, not coins, so turning them into a USD
    notional needs the contract size. Per Binance's COIN-M contract specifications, BTC
    contracts (``BTCUSD_PERP``, ``BTCUSD_<YYMMDD>``) are 100 USD each and every other COIN-M
    contract (ETHUSD_PERP, ADAUSD_PERP, ...) is 10 USD. Non-COIN-M symbols are rejected rather
    than guessed, because a wrong size silently mis-scales every volume.
    """
    if "USD_" not in symbol:
        raise ValueError(
            f"{symbol!r} is not a COIN-M symbol (expected <BASE>USD_PERP or <BASE>USD_<YYMMDD>)"
        )
    return 100.0 if symbol.startswith("BTCUSD_") else 10.0
