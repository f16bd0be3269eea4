"""The grammar of ``LAKEHOUSE_SYMBOLS``: exact instruments, symbol patterns per market, and exclusions.

Why a grammar and not a list: "every USD-M perpetual quoted in USDT, without the leveraged tokens" is
hundreds of symbols that change every month; typing them is how universes go stale. The exact form of
before (``spot:BTCUSDT,um:BTCUSDT``, a bare ``BTCUSDT`` meaning spot) parses to the same instruments.

Entries, comma-separated:

* ``market:SYMBOL`` (or bare ``SYMBOL`` = spot): one instrument, exactly as before.
* ``market:PATTERN``: every symbol of that market matching a glob (``*`` any run of characters, ``?``
  one character), e.g. ``um:*USDT``, ``cm:*_PERP``, ``spot:*BTC``. A pattern needs its market: the
  same ticker names different contracts on spot, USD-M and COIN-M.
* ``!market:SYMBOL`` / ``!market:PATTERN`` / ``!SYMBOL`` / ``!PATTERN``: an exclusion. Without a market
  it excludes in every market (an exclusion only ever removes, so the broad reading is the safe one).
* ``!leveraged``: the named exclusion of leveraged tokens (rule in :func:`leveraged_bases`).

How they combine (order does not matter): the universe is every exact entry, plus every instrument a
pattern matches and no exclusion matches. Exclusions filter pattern matches only, so an exact entry is
always in: ``spot:*USDT,!leveraged,spot:BTCUPUSDT`` keeps BTCUPUSDT on purpose. An exclusion that names
an exact entry exactly is a contradiction, and an exclusion in a universe without patterns has nothing
to filter: both are errors rather than silently ignored. Patterns are resolved against the
``silver/instruments`` table (``universe/lifecycle.py``); this module only parses and matches.

Pure module: no Dagster, no I/O. Every problem of a text is reported at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import polars as pl

from lakehouse_assets.instruments import MARKETS, Instrument, parse_instrument

__all__ = [
    "LEVERAGED",
    "LEVERAGED_SUFFIXES",
    "STEMLESS_LEVERAGED",
    "Entry",
    "UniverseSpec",
    "leveraged_bases",
    "leveraged_instruments",
    "parse_spec",
]

#: The named exclusion of leveraged tokens (``!leveraged``).
LEVERAGED = "leveraged"
NAMED_SETS = (LEVERAGED,)
#: What a leveraged token's base asset ends with: Binance's UP/DOWN tokens and FTX's BULL/BEAR ones.
LEVERAGED_SUFFIXES = ("UP", "DOWN", "BULL", "BEAR")
#: FTX's 3x Bitcoin tokens were listed on Binance spot as the bare bases BULL and BEAR (no stem).
STEMLESS_LEVERAGED = frozenset({"BULL", "BEAR"})

_PATTERN_RE = re.compile(r"[A-Za-z0-9_*?]+")
_WILDCARDS = ("*", "?")


def _glob_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


@dataclass(frozen=True)
class Entry:
    """One parsed entry. ``market`` None: every market (exclusions only); ``named``: a named set."""

    text: str
    market: str | None
    symbol: str  # upper-case symbol or glob; "" for a named set
    exclude: bool = False
    named: str | None = None

    @property
    def is_pattern(self) -> bool:
        return self.named is None and any(c in self.symbol for c in _WILDCARDS)

    @property
    def is_exact(self) -> bool:
        return self.named is None and not self.is_pattern

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return _glob_regex(self.symbol)

    def matches(self, market: str, symbol: str) -> bool:
        """Whether this (non-named) entry covers ``market:symbol``."""
        if self.market is not None and self.market != market:
            return False
        return self._regex.fullmatch(symbol) is not None

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class UniverseSpec:
    """A parsed ``LAKEHOUSE_SYMBOLS``: its text and entries, in the order written."""

    text: str
    entries: tuple[Entry, ...]

    @property
    def exact(self) -> list[Instrument]:
        """The exact inclusions, in order, without repeats."""
        found = (Instrument(e.market or "spot", e.symbol) for e in self.entries if not e.exclude and e.is_exact)
        return list(dict.fromkeys(found))

    @property
    def patterns(self) -> list[Entry]:
        return [e for e in self.entries if not e.exclude and e.is_pattern]

    @property
    def exclusions(self) -> list[Entry]:
        return [e for e in self.entries if e.exclude]

    @property
    def is_exact(self) -> bool:
        """Only exact entries (the form of before): the universe is known without the instruments table."""
        return not self.patterns

    def excluded(self, candidates: pl.DataFrame) -> set[Instrument]:
        """The instruments of ``candidates`` (market, symbol, base, quote) some exclusion matches."""
        pairs = _pairs(candidates)
        out: set[Instrument] = set()
        for exclusion in self.exclusions:
            if exclusion.named == LEVERAGED:
                out |= leveraged_instruments(candidates)
            else:
                out |= {Instrument(m, s) for m, s in pairs if exclusion.matches(m, s)}
        return out

    def select(self, candidates: pl.DataFrame) -> list[Instrument]:
        """The universe among ``candidates`` (one row per instrument or period: market, symbol, base, quote).

        Exact entries are always in, wherever they are listed; each pattern adds its matches (sorted)
        that no exclusion removes. Raises ValueError naming every pattern that matches no candidate at
        all (a typo, or a market the table does not cover), and an empty result.
        """
        pairs = _pairs(candidates)
        excluded = self.excluded(candidates) if self.patterns else set()
        chosen: dict[Instrument, None] = {}
        problems: list[str] = []
        for entry in self.entries:
            if entry.exclude:
                continue
            if entry.is_exact:
                chosen.setdefault(Instrument(entry.market or "spot", entry.symbol), None)
                continue
            matched = [Instrument(m, s) for m, s in pairs if entry.matches(m, s)]
            if not matched:
                problems.append(f"{entry.text!r} matches no instrument of silver/instruments")
            for inst in matched:
                if inst not in excluded:
                    chosen.setdefault(inst, None)
        if not problems and not chosen:
            problems.append(
                f"the exclusions ({', '.join(e.text for e in self.exclusions)}) remove every instrument the patterns "
                "match: the universe is empty"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return list(chosen)


def _pairs(candidates: pl.DataFrame) -> list[tuple[str, str]]:
    if candidates.is_empty():
        return []
    unique = candidates.select("market", "symbol").unique().sort("market", "symbol")
    return [(str(m), str(s)) for m, s in unique.iter_rows()]


# --------------------------------------------------------------------------- parsing


def _parse_entry(text: str) -> Entry:
    """One non-empty entry; ValueError with the reason (exact entries keep the messages of before)."""
    exclude = text.startswith("!")
    body = text[1:].strip() if exclude else text
    if not body:
        raise ValueError(f"{text!r} excludes nothing; write e.g. '!spot:*DOWNUSDT' or '!leveraged'")
    if body.lower() in NAMED_SETS:
        if not exclude:
            raise ValueError(f"{body!r} names a set of instruments that can only be excluded; write '!{body.lower()}'")
        return Entry(text, None, "", exclude=True, named=body.lower())
    market_text, sep, symbol = body.partition(":")
    if not sep:
        market_text, symbol = "", body
    symbol = symbol.strip()
    is_pattern = any(c in symbol for c in _WILDCARDS)
    if not is_pattern and not (exclude and not sep):
        inst = parse_instrument(body)  # the exact form, with exactly the messages of before
        return Entry(text, inst.market, inst.symbol, exclude=exclude)
    market = market_text.strip().lower() or None
    if market is not None and market not in MARKETS:
        kind = "pattern" if is_pattern else "symbol"
        raise ValueError(f"unknown market {market_text.strip()!r} for {kind} {symbol!r}; expected one of {', '.join(MARKETS)}")
    if not symbol:
        raise ValueError(f"{text!r} has no symbol")
    if not (symbol.isascii() and _PATTERN_RE.fullmatch(symbol)):
        raise ValueError(
            f"invalid pattern {symbol!r}" + (f" (market {market})" if market else "")
            + ": only ASCII letters, digits, '_' and the wildcards '*' (any characters) and '?' (one character) "
            "are allowed"
        )
    if is_pattern and market is None and not exclude:
        raise ValueError(
            f"pattern {symbol!r} has no market; write market:PATTERN, e.g. 'um:{symbol.upper()}' "
            "(the same ticker names different contracts on spot, um and cm)"
        )
    return Entry(text, market, symbol.upper(), exclude=exclude)


def parse_spec(text: str) -> UniverseSpec:
    """Parse ``LAKEHOUSE_SYMBOLS``; ValueError lists every problem at once, joined by '; '."""
    parts = text.split(",")
    if not any(part.strip() for part in parts):
        raise ValueError("the symbol universe is empty; set LAKEHOUSE_SYMBOLS to e.g. 'spot:BTCUSDT'")
    entries: list[Entry] = []
    problems: list[str] = []
    for number, part in enumerate(parts, start=1):
        if not part.strip():
            problems.append(f"entry {number} is empty")
            continue
        try:
            entries.append(_parse_entry(part.strip()))
        except ValueError as exc:
            problems.append(str(exc))
    spec = UniverseSpec(text.strip(), tuple(entries))
    problems += _combination_problems(spec, complete=not problems)
    if problems:
        raise ValueError("; ".join(problems))
    return spec


def _combination_problems(spec: UniverseSpec, *, complete: bool) -> list[str]:
    """Problems between entries; ``complete`` False: some entries did not parse (so say nothing about what is absent)."""
    problems: list[str] = []
    if not complete and not spec.exclusions:
        return problems
    if complete and not spec.exact and not spec.patterns:
        problems.append(
            "no entry includes anything: exclusions (!...) only remove what patterns match; add e.g. 'um:*USDT'"
        )
        return problems
    for exclusion in spec.exclusions:
        if exclusion.named is not None:
            continue
        clashes = [i.key for i in spec.exact if exclusion.matches(i.market, i.symbol) and exclusion.is_exact]
        if clashes:
            problems.append(f"{', '.join(clashes)} is both listed and excluded by {exclusion.text!r}")
    if complete and spec.exclusions and not spec.patterns and not problems:
        problems.append(
            f"{', '.join(repr(e.text) for e in spec.exclusions)} has nothing to filter: exclusions remove what a "
            "pattern (market:PATTERN) matches, never an exact entry, and no entry is a pattern"
        )
    return problems


# --------------------------------------------------------------------------- leveraged tokens


def leveraged_bases(bases: Iterable[str]) -> set[str]:
    """The leveraged-token base assets among ``bases`` (the base assets of ONE market).

    Rule: a base is a leveraged token when it is ``stem + UP|DOWN|BULL|BEAR`` and ``stem`` is itself a
    base asset of the same market (BTCUP, XRPBEAR, 1INCHDOWN: BTC, XRP and 1INCH trade there too), or
    when it is BULL or BEAR, FTX's 3x Bitcoin tokens that Binance spot listed without a stem.

    Why the stem test: a suffix alone also hits real coins (JUP, a Jupiter token, ends in UP; SUPER
    contains it), and the symbol alone cannot tell JUPUSDT from BTCUPUSDT. Binance's own
    ``permissions: LEVERAGED`` flag is no substitute: in the real spot answer of 2023-08 it is on
    the 40 UP/DOWN symbols but not on the 20 BULL/BEAR ones (ETHBULLUSDT, BULLUSDT...), and symbols
    only the archive knows (delisted ones) carry no flag at all. That answer has 50 leveraged bases
    (every UP/DOWN/BULL/BEAR base of it; each stem, from BTC to 1INCH, is a base there too) and 60
    leveraged symbols, 8 TRADING and 52 in BREAK.
    """
    known = set(bases)
    out = {b for b in known if b in STEMLESS_LEVERAGED}
    for base in known:
        for suffix in LEVERAGED_SUFFIXES:
            stem = base[: -len(suffix)]
            if base.endswith(suffix) and stem and stem in known:
                out.add(base)
    return out


def _with_bases(candidates: pl.DataFrame) -> pl.DataFrame:
    """(market, symbol, base) per instrument; a missing base (a symbol only the archive knows) is the
    symbol minus the longest quote asset of its market it ends with."""
    columns = candidates.columns
    frame = candidates.select(
        "market",
        "symbol",
        (pl.col("base") if "base" in columns else pl.lit(None, pl.String)).alias("base"),
        (pl.col("quote") if "quote" in columns else pl.lit(None, pl.String)).alias("quote"),
    )
    quotes: dict[str, list[str]] = {}
    for market, quote in frame.select("market", "quote").drop_nulls().unique().iter_rows():
        quotes.setdefault(market, []).append(quote)
    rows: dict[tuple[str, str], str | None] = {}
    for market, symbol, base, _ in frame.iter_rows():
        if base is None:
            ends = sorted((q for q in quotes.get(market, []) if symbol.endswith(q) and len(symbol) > len(q)), key=len)
            base = symbol[: -len(ends[-1])] if ends else None
        if rows.get((market, symbol)) is None:
            rows[(market, symbol)] = base
    return pl.DataFrame(
        [(m, s, b) for (m, s), b in rows.items()],
        schema={"market": pl.String(), "symbol": pl.String(), "base": pl.String()},
        orient="row",
    )


def leveraged_instruments(candidates: pl.DataFrame) -> set[Instrument]:
    """The instruments of ``candidates`` (market, symbol, base, quote) whose base is a leveraged token."""
    if candidates.is_empty():
        return set()
    frame = _with_bases(candidates)
    out: set[Instrument] = set()
    for (market,), part in frame.partition_by("market", as_dict=True).items():
        lev = leveraged_bases(part["base"].drop_nulls().to_list())
        out |= {Instrument(str(market), s) for s, b in part.select("symbol", "base").iter_rows() if b in lev}
    return out
