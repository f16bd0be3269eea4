"""What a ``bronze/exchange_info`` materialization shows: per market, how many symbols in which status, and which
configured instruments the exchange no longer lists. Pure frames and dicts; the Dagster layer renders them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

import polars as pl

from lakehouse_assets.instruments import Instrument


def overview(manifest: pl.DataFrame) -> pl.DataFrame:
    """One line per market and day: what the exchange answered, and the answer the lake now lists."""
    return manifest.select(
        "market", "date", "upstream_status", "symbols", "bytes", "server_time", "source_url"
    ).sort("market", "date")


def newest(answers: Mapping[tuple[str, date], pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Each market's parsed answer of the run's newest day."""
    latest: dict[str, tuple[date, pl.DataFrame]] = {}
    for (market, day), frame in answers.items():
        if market not in latest or day > latest[market][0]:
            latest[market] = (day, frame)
    return {market: frame for market, (_, frame) in sorted(latest.items())}


def status_counts(answers: Mapping[str, pl.DataFrame]) -> dict[str, dict[str, int]]:
    """Symbols per Binance status (TRADING, BREAK, ...) of each market's answer."""
    return {
        market: {str(s): int(n) for s, n in frame["status"].value_counts(sort=True).iter_rows()}
        for market, frame in answers.items()
    }


def not_listed(answers: Mapping[str, pl.DataFrame], instruments: Iterable[Instrument]) -> list[str]:
    """Configured instruments absent from their market's answer (delisted, renamed, or a typo)."""
    listed = {market: set(frame["symbol"].to_list()) for market, frame in answers.items()}
    return [i.key for i in instruments if i.market in listed and i.symbol not in listed[i.market]]
