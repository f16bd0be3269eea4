"""Parse a Binance ``exchangeInfo`` answer into one typed row per symbol.

This is the pure first step of ``silver/instruments`` (issue #11): the bronze asset stores the raw
answers of spot ``/api/v3/exchangeInfo``, USD-M ``/fapi/v1/exchangeInfo`` and COIN-M
``/dapi/v1/exchangeInfo`` byte for byte, and this function turns one of them into a table that the
slowly changing instruments table can be built from. No I/O and no Dagster here, so the same code
can be tested on real saved answers.

Choices, and why:

* **Strict, loud failures.** A malformed answer (not JSON, no ``symbols`` list, a symbol without a
  required key, a duplicate symbol, an unknown ``contractType``) raises :class:`ExchangeInfoError`
  naming the source and the symbol/field. A half-parsed universe would silently drop or mis-size
  instruments downstream, which is worse than a failed run.
* **Prices and sizes are float64, parsed from Binance's decimal strings** (``"0.01000000"``) via
  :class:`decimal.Decimal`, so a malformed number is rejected instead of guessed and the float is the
  nearest double to the exact decimal. A ``0`` tick/step means "filter disabled" in Binance's
  documentation and becomes null, never a zero that would divide or round everything to nothing.
* **Dates are UTC datetimes, never raw ints.** ``onboardDate``/``deliveryDate`` are ms since epoch;
  Binance writes ``4133404800000`` (2100-12-25) as "no delivery" for perpetuals (131 of the 133
  symbols of the real 2021 USD-M answer), which becomes null, as does an absent field (spot).
* **contract_size** is COIN-M's ``contractSize`` (USD face value of one contract). Spot and USD-M
  answers carry no such field (USD-M quantities are already in the base asset), so it is null there
  rather than an invented 1.0 that could be mistaken for a Binance fact.
* **contract_type** keeps Binance's own string (``PERPETUAL``, ``CURRENT_QUARTER``, ...); ``kind``
  normalises it to ``spot`` | ``perpetual`` | ``delivery``. Binance sends ``contractType == ""`` for
  some paused futures (BTCSTUSDT, PENDING_TRADING, in the 2021 USD-M answer): both columns are null
  there, because the answer does not say which kind it is.
* **status** is ``status`` in spot and USD-M answers but ``contractStatus`` in COIN-M answers
  (Binance's /dapi/v1/exchangeInfo documentation); both land in one ``status`` column.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import polars as pl

from lakehouse_assets.instruments import MARKETS

#: Binance's "never" delivery date (2100-12-25 00:00 UTC), used for perpetual contracts.
NEVER_MS = 4133404800000

#: Binance contract types that deliver on a date (optionally in their " DELIVERING" phase).
_DELIVERY_TYPES = frozenset({"CURRENT_MONTH", "NEXT_MONTH", "CURRENT_QUARTER", "NEXT_QUARTER"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTC_MS = pl.Datetime("ms", "UTC")

SCHEMA: dict[str, pl.DataType] = {
    "market": pl.String(),
    "symbol": pl.String(),
    "base": pl.String(),
    "quote": pl.String(),
    "status": pl.String(),
    "contract_type": pl.String(),
    "kind": pl.String(),
    "contract_size": pl.Float64(),
    "tick_size": pl.Float64(),
    "lot_size": pl.Float64(),
    "onboard_date": _UTC_MS,
    "delivery_date": _UTC_MS,
    "server_time": _UTC_MS,
    "source": pl.String(),
}


class ExchangeInfoError(ValueError):
    """An ``exchangeInfo`` answer that cannot be trusted to describe the instrument universe."""


def _ms_to_utc(ms: int) -> datetime:
    # timedelta keeps integer-ms exactness; datetime.fromtimestamp goes through a float.
    return _EPOCH + timedelta(milliseconds=ms)


def _require(sym: dict[str, Any], field: str, kind: type | tuple[type, ...], where: str) -> Any:
    if field not in sym:
        raise ExchangeInfoError(f"{where} lacks required field {field!r}")
    value = sym[field]
    # bool is an int subclass; a true/false in a ms or size field is never a Binance value.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ExchangeInfoError(f"{where} field {field!r} has unexpected value {value!r}")
    return value


def _decimal(text: Any, where: str, field: str) -> float | None:
    """Binance decimal string -> float64 (null for a disabled ``0`` filter)."""
    try:
        if not isinstance(text, str):
            raise InvalidOperation
        value = Decimal(text)
    except InvalidOperation:
        raise ExchangeInfoError(f"{where} field {field!r} is not a decimal string: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ExchangeInfoError(f"{where} field {field!r} is not a non-negative number: {text!r}")
    return None if value == 0 else float(value)


def _filter_value(sym: dict[str, Any], filter_type: str, key: str, where: str) -> float | None:
    filters = _require(sym, "filters", list, where)
    found = [f for f in filters if isinstance(f, dict) and f.get("filterType") == filter_type]
    field = f"{filter_type}.{key}"
    if len(found) != 1 or key not in found[0]:
        raise ExchangeInfoError(f"{where} lacks required field {field!r}")
    return _decimal(found[0][key], where, field)


def _date(sym: dict[str, Any], field: str, where: str) -> datetime | None:
    if field not in sym:
        return None
    ms = _require(sym, field, int, where)
    return None if ms == NEVER_MS else _ms_to_utc(ms)


def _kind(contract_type: str | None, where: str) -> str | None:
    if contract_type is None:
        return "spot"
    if contract_type == "":
        return None
    if contract_type in ("PERPETUAL", "PERPETUAL DELIVERING"):
        return "perpetual"
    if contract_type.removesuffix(" DELIVERING") in _DELIVERY_TYPES:
        return "delivery"
    raise ExchangeInfoError(f"{where} has unknown contractType {contract_type!r}")


def parse_exchange_info(raw: bytes, *, market: str, source: str) -> pl.DataFrame:
    """One row per symbol of a raw ``exchangeInfo`` answer, typed as :data:`SCHEMA`.

    ``market`` is ``spot`` | ``um`` | ``cm`` (the answer itself does not reliably say which API it
    came from); ``source`` names the answer (bronze path or URL) and is both stored in each row and
    quoted in every error, so a bad answer can be found again.
    """
    if market not in MARKETS:
        raise ExchangeInfoError(f"{source}: unknown market {market!r}; expected one of {', '.join(MARKETS)}")
    try:
        answer = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExchangeInfoError(f"{source}: exchangeInfo answer is not valid JSON ({exc})") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("symbols"), list):
        raise ExchangeInfoError(f"{source}: exchangeInfo answer has no 'symbols' list")
    server_ms = answer.get("serverTime")
    if isinstance(server_ms, bool) or not isinstance(server_ms, int):
        raise ExchangeInfoError(f"{source}: exchangeInfo answer has no integer 'serverTime'")
    server_time = _ms_to_utc(server_ms)
    futures = market != "spot"
    # COIN-M names the field contractStatus (/dapi docs); spot and USD-M call it status.
    status_field = "contractStatus" if market == "cm" else "status"

    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, sym in enumerate(answer["symbols"]):
        if not isinstance(sym, dict):
            raise ExchangeInfoError(f"{source}: symbols[{i}] is not an object")
        symbol = _require(sym, "symbol", str, f"{source}: symbols[{i}]")
        where = f"{source}: symbol {symbol!r}"
        if symbol in seen:
            raise ExchangeInfoError(f"{where} appears more than once")
        seen.add(symbol)
        contract_type: str | None = _require(sym, "contractType", str, where) if futures else None
        if futures:
            _require(sym, "onboardDate", int, where)
        rows.append(
            {
                "market": market,
                "symbol": symbol,
                "base": _require(sym, "baseAsset", str, where),
                "quote": _require(sym, "quoteAsset", str, where),
                "status": _require(sym, status_field, str, where),
                "contract_type": contract_type or None,
                "kind": _kind(contract_type, where),
                "contract_size": (
                    float(_require(sym, "contractSize", (int, float), where)) if market == "cm" else None
                ),
                "tick_size": _filter_value(sym, "PRICE_FILTER", "tickSize", where),
                "lot_size": _filter_value(sym, "LOT_SIZE", "stepSize", where),
                "onboard_date": _date(sym, "onboardDate", where),
                "delivery_date": _date(sym, "deliveryDate", where),
                "server_time": server_time,
                "source": source,
            }
        )
    return pl.DataFrame(rows, schema=SCHEMA) if rows else pl.DataFrame(schema=SCHEMA)
