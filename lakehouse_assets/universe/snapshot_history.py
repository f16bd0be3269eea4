"""What successive ``exchangeInfo`` answers said about each instrument, folded into runs of identical attributes.

``silver/instruments`` is a slowly changing table: a new row starts when Binance changes what it says
about an instrument (status, tick or lot size, contract size, ...). Hundreds of daily answers of
thousands of symbols each mostly repeat themselves, so they are folded as they are read (oldest first)
into one row per *run*: an instrument's attributes, unchanged, from the first to the last answer that
said so (``seen_from`` .. ``seen_to``, the UTC days of Binance's ``serverTime``). Memory stays at one row
per change, not one per answer.

* A symbol missing from an answer ends its run; when it comes back, a new run starts (even with the
  same attributes), so "absent in between" is never mistaken for "present throughout".
* Several answers on one UTC day: the later one wins that day (a row of the table spans whole days).
* ``current`` marks the runs present in the newest answer of their market: the instruments
  ``exchangeInfo`` still lists. ``newest`` gives, per market, the day of that answer.

Pure module: parsed answers in (``exchange/exchange_info.py``), a frame out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import polars as pl

from lakehouse_assets.exchange.exchange_info import SCHEMA as PARSED_SCHEMA
from lakehouse_assets.exchange.exchange_info import parse_exchange_info

__all__ = [
    "ATTRIBUTES",
    "HISTORY_SCHEMA",
    "MANIFEST_COLUMNS",
    "AnswerError",
    "AnswersRead",
    "SnapshotHistory",
    "fold_answers",
]

#: The columns of bronze/exchange_info this module reads (one row per market and stored answer).
MANIFEST_COLUMNS: Final = ("market", "lake_path", "sha256")
#: The answer's top-level ``"serverTime":<ms>`` (the one field that changes on every call).
_SERVER_TIME: Final = re.compile(rb'"serverTime"\s*:\s*(\d+)')
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

#: What a row of silver/instruments says about an instrument; a change in any of them starts a new row.
ATTRIBUTES: Final = (
    "base", "quote", "kind", "contract_type", "contract_size", "tick_size", "lot_size", "status",
    "onboard_date", "delivery_date",
)  # fmt: skip

HISTORY_SCHEMA: Final[dict[str, pl.DataType]] = {
    "market": pl.String(),
    "symbol": pl.String(),
    **{name: PARSED_SCHEMA[name] for name in ATTRIBUTES},
    "seen_from": pl.Date(),
    "seen_to": pl.Date(),
    "current": pl.Boolean(),
}


@dataclass
class _Run:
    attributes: tuple[Any, ...]
    seen_from: date
    seen_to: date


class SnapshotHistory:
    """Feed parsed answers with :meth:`add`, oldest first per market; read :meth:`frame`."""

    def __init__(self) -> None:
        self._open: dict[str, dict[str, _Run]] = {}
        self._closed: list[tuple[str, str, _Run]] = []
        self.newest: dict[str, date] = {}
        self.answers: dict[str, int] = {}

    def add(self, parsed: pl.DataFrame, *, market: str, day: date) -> None:
        """One answer of ``market`` taken on ``day`` (UTC), as ``parse_exchange_info`` returns it."""
        last = self.newest.get(market)
        if last is not None and day < last:
            raise ValueError(f"exchangeInfo answers of {market} must be added oldest first: {day} after {last}")
        self.newest[market] = day
        self.answers[market] = self.answers.get(market, 0) + 1
        runs = self._open.setdefault(market, {})
        present: set[str] = set()
        for symbol, *attributes in parsed.select("symbol", *ATTRIBUTES).iter_rows():
            present.add(symbol)
            values = tuple(attributes)
            run = runs.get(symbol)
            if run is not None and run.attributes == values:
                run.seen_to = day
            elif run is not None and run.seen_from == day:
                run.attributes = values  # a later answer of the same day: it wins the day
                run.seen_to = day
            else:
                if run is not None:
                    self._closed.append((market, symbol, run))
                runs[symbol] = _Run(values, day, day)
        for symbol in [s for s in runs if s not in present]:
            self._closed.append((market, symbol, runs.pop(symbol)))

    def repeat(self, *, market: str, day: date) -> None:
        """An answer of ``market`` on ``day`` that says exactly what the previous one said: every run goes on."""
        last = self.newest.get(market)
        if last is None:
            raise ValueError(f"no earlier exchangeInfo answer of {market} to repeat")
        if day < last:
            raise ValueError(f"exchangeInfo answers of {market} must be added oldest first: {day} after {last}")
        self.newest[market] = day
        self.answers[market] += 1
        for run in self._open.get(market, {}).values():
            run.seen_to = day

    def frame(self) -> pl.DataFrame:
        """One row per run (:data:`HISTORY_SCHEMA`), by market, symbol and ``seen_from``."""
        rows = [(m, s, *r.attributes, r.seen_from, r.seen_to, False) for m, s, r in self._closed]
        rows += [
            (m, s, *r.attributes, r.seen_from, r.seen_to, True)
            for m, runs in self._open.items()
            for s, r in runs.items()
        ]
        frame = pl.DataFrame(rows, schema=HISTORY_SCHEMA, orient="row")
        return frame.sort("market", "symbol", "seen_from")


@dataclass
class AnswersRead:
    """The folded history, and what reading the stored answers took."""

    history: SnapshotHistory
    rows: int  # manifest rows of the wanted markets with a stored answer
    parsed: int  # answers parsed
    unchanged: int = 0  # answers equal to the previous one of their market but for serverTime: not parsed again


class AnswerError(ValueError):
    """A stored exchangeInfo answer that cannot be used; names its lake path."""


def fold_answers(
    manifest: pl.DataFrame | None, read: Callable[[str], bytes], *, markets: Collection[str]
) -> AnswersRead:
    """Every stored answer of ``markets`` in ``manifest`` (bronze/exchange_info), oldest first, folded.

    ``read(lake_path)`` returns the stored bytes. An answer stored under several days (the same
    sha256) is read once; one that differs from its market's previous answer only in ``serverTime``
    (most days: listings change weekly, not daily) is not parsed again, its runs just go on. The bytes
    must match the manifest's sha256, else :class:`AnswerError` names the path (a damaged lake file
    must not become the universe).
    """
    history = SnapshotHistory()
    if manifest is None or manifest.is_empty():
        return AnswersRead(history, 0, 0)
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise AnswerError(f"bronze/exchange_info lacks column(s) {missing}; has {manifest.columns}")
    order = [c for c in ("server_time", "date", "fetched_at") if c in manifest.columns]
    rows = manifest.filter(pl.col("market").is_in(list(markets)) & pl.col("lake_path").is_not_null())
    rows = rows.sort([*order, "market", "lake_path"], nulls_last=True)
    parsed = unchanged = 0
    seen: set[str] = set()
    previous: dict[str, bytes] = {}  # per market: the digest of its last answer without serverTime
    for row in rows.select(*MANIFEST_COLUMNS).iter_rows(named=True):
        digest, market, path = row["sha256"], row["market"], row["lake_path"]
        if digest in seen:
            continue
        seen.add(digest)
        raw = read(path)
        if digest is not None and hashlib.sha256(raw).hexdigest() != digest:
            raise AnswerError(f"{path}: stored bytes do not match the manifest's sha256 {digest}")
        server = _SERVER_TIME.search(raw)
        content = hashlib.sha256(_SERVER_TIME.sub(b"", raw, count=1)).digest()
        try:
            if server is not None and previous.get(market) == content:
                history.repeat(market=market, day=(_EPOCH + timedelta(milliseconds=int(server.group(1)))).date())
                unchanged += 1
                continue
            frame = parse_exchange_info(raw, market=market, source=path)
            parsed += 1
            if frame.is_empty():
                continue  # an answer listing no symbol says nothing about any instrument
            history.add(frame, market=market, day=frame["server_time"][0].date())
        except ValueError as exc:
            raise AnswerError(f"{path}: {exc}") from None
        previous[market] = content
    return AnswersRead(history, rows.height, parsed, unchanged)
