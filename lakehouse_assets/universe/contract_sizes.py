"""The USD face value of each COIN-M contract, from Binance's own ``exchangeInfo`` (through the lake).

Why it matters: COIN-M kline files count volume in contracts, and ``silver/klines`` turns contracts
into USD notional (``quote_volume = contracts x contract size``). The size used to be a hard-coded
rule (100 USD for BTC contracts, 10 for the rest); it now comes from the exchange's ``contractSize``,
so a new contract with another face value is never silently mis-scaled.

Where sizes come from, most authoritative first (``known_contract_sizes``):

1. ``silver/instruments`` (``contract_size`` of the newest period of each instrument), when the lake has it;
2. the stored ``bronze/exchange_info`` COIN-M answers, newest day first, read only until every wanted
   instrument is found (a delivered or delisted contract is found in the last answer that listed it).

``contract_sizes`` is the pure lookup over such a frame: the first row of an instrument wins. The
newest size is used for every day of an instrument's history: Binance has not changed a COIN-M face
value since COIN-M opened in 2020 (the answer recorded on 2020-08-18, bundled with the tests, already
says 100 and 10). An instrument without a known size is a ``MissingContractSizeError`` naming it and
saying which asset to materialize: no retry can invent a size, and a guessed one would corrupt every
COIN-M volume. No Dagster here.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable
from typing import Any

import polars as pl

from lakehouse_assets.exchange.exchange_info import parse_exchange_info
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.lake.store import LakeStore
from lakehouse_assets.universe.exchange_info_bronze import answer_days, answer_key

#: ``silver/instruments`` in the lake (unpartitioned: every Parquet file under this prefix).
INSTRUMENTS_TABLE = "silver/instruments"
KNOWN_SCHEMA: dict[str, pl.DataType] = {"market": pl.String(), "symbol": pl.String(), "contract_size": pl.Float64()}
#: What to do about a missing size (the error message and the README say the same).
REMEDY = (
    "materialize bronze/exchange_info for the current UTC day (it fetches Binance's /dapi/v1/exchangeInfo, "
    "through LAKEHOUSE_REST_URL / LAKEHOUSE_REST_URL_CM when set), then run this again"
)

ContractSizeLookup = Callable[[Instrument], float]


class MissingContractSizeError(ValueError):
    """COIN-M instruments whose contract size no stored exchangeInfo answer (nor silver/instruments) gives."""

    def __init__(self, instruments: Iterable[Instrument], looked_in: str) -> None:
        self.instruments = sorted(set(instruments))
        self.looked_in = looked_in
        keys = ", ".join(i.key for i in self.instruments)
        super().__init__(
            f"no known contract size for COIN-M {keys} (looked in {looked_in}): COIN-M volumes are counted in "
            f"contracts, and the USD value of one contract comes from Binance's exchangeInfo; {REMEDY}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.instruments, self.looked_in))


def contract_sizes(known: pl.DataFrame, instruments: Iterable[Instrument], *, looked_in: str = "the given rows") -> dict[Instrument, float]:
    """Size of each COIN-M instrument of ``instruments`` from ``known`` rows (market, symbol, contract_size).

    The first row of an instrument with a size wins (order ``known`` most authoritative first); other
    markets are skipped (they have no contract size). A size that is not a finite positive number is
    an error naming the instrument; an instrument without any is ``MissingContractSizeError``.
    """
    wanted = list(dict.fromkeys(i for i in instruments if i.market == "cm"))
    if not wanted:
        return {}
    firsts = (
        known.select("market", "symbol", "contract_size")
        .filter(pl.col("market") == "cm", pl.col("contract_size").is_not_null())
        .unique(subset=["market", "symbol"], keep="first", maintain_order=True)
    )
    by_symbol = dict(zip(firsts["symbol"].to_list(), firsts["contract_size"].to_list(), strict=True))
    sizes: dict[Instrument, float] = {}
    missing = []
    for inst in wanted:
        size = by_symbol.get(inst.symbol)
        if size is None:
            missing.append(inst)
        elif not (math.isfinite(size) and size > 0):
            raise ValueError(f"{inst.key}: contract size {size!r} in {looked_in} is not a positive number")
        else:
            sizes[inst] = float(size)
    if missing:
        raise MissingContractSizeError(missing, looked_in)
    return sizes


def known_contract_sizes(store: LakeStore, wanted: Iterable[Instrument] | None = None) -> tuple[pl.DataFrame, str]:
    """(market, symbol, contract_size) rows the lake knows, most authoritative first, and where it looked.

    With ``wanted``, stored answers are read newest first only until each wanted COIN-M instrument has a size.
    """
    frames = [_instruments_table(store)]
    need = {i.symbol for i in wanted or () if i.market == "cm"} if wanted is not None else None
    found = set(frames[0].filter(pl.col("market") == "cm", pl.col("contract_size").is_not_null())["symbol"])
    days = answer_days(store, "cm")
    for day in reversed(days):
        if need is not None and need <= found:
            break
        key = answer_key("cm", day)
        parsed = parse_exchange_info(store.get_bytes(key), market="cm", source=store.uri(key))
        frames.append(parsed.select(list(KNOWN_SCHEMA)))
        found |= set(parsed.filter(pl.col("contract_size").is_not_null())["symbol"])
    looked_in = (
        f"{store.uri(INSTRUMENTS_TABLE)} and {len(days)} stored COIN-M exchangeInfo answer(s) under "
        f"{store.uri('bronze/binance/api/cm/exchangeInfo')}"
    )
    return pl.concat(frames, how="vertical"), looked_in


def lake_contract_sizes(store: LakeStore, instruments: Iterable[Instrument]) -> dict[Instrument, float]:
    """The contract size of every COIN-M instrument of ``instruments``, from the lake (module docstring)."""
    cm = [i for i in instruments if i.market == "cm"]
    if not cm:
        return {}
    known, looked_in = known_contract_sizes(store, cm)
    return contract_sizes(known, cm, looked_in=looked_in)


class LakeContractSizes:
    """``lake_contract_sizes`` one instrument at a time, for code that learns late which ones it needs
    (the REST gap-fill converts COIN-M rows only for instruments it actually fetched)."""

    def __init__(self, store: LakeStore) -> None:
        self._store = store
        self._sizes: dict[Instrument, float] = {}

    def __call__(self, instrument: Instrument) -> float:
        if instrument not in self._sizes:
            self._sizes.update(lake_contract_sizes(self._store, [instrument]))
        return self._sizes[instrument]


def _instruments_table(store: LakeStore) -> pl.DataFrame:
    """silver/instruments' sizes, newest period of each instrument first (empty when the lake has no table)."""
    keys = [k for k in store.list_keys(INSTRUMENTS_TABLE) if k.endswith(".parquet")]
    frames = []
    for key in keys:
        table = pl.read_parquet(io.BytesIO(store.get_bytes(key)))
        absent = [c for c in (*KNOWN_SCHEMA, "valid_from") if c not in table.columns]
        if absent:
            raise ValueError(f"{store.uri(key)} lacks column(s) {absent} of silver/instruments")
        frames.append(table.select(*KNOWN_SCHEMA, "valid_from"))
    if not frames:
        return pl.DataFrame(schema=KNOWN_SCHEMA)
    rows = pl.concat(frames, how="vertical_relaxed").sort("valid_from", descending=True, nulls_last=True)
    return rows.select(pl.col(name).cast(dtype) for name, dtype in KNOWN_SCHEMA.items())
