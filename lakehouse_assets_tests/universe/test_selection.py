"""The LAKEHOUSE_SYMBOLS grammar: exact entries as before, patterns, exclusions, !leveraged, and its errors.

Pattern selection is checked on Binance's real spot ``exchangeInfo`` of 2023-08-13 (2,276 symbols,
``data/binance/api/SwapLandExchange+Statics``, see PROVENANCE.md) parsed by the product's own parser, and
on small tables written here (labelled synthetic where they are).
"""

from __future__ import annotations

import gzip

import polars as pl
import pytest

from lakehouse_assets import settings
from lakehouse_assets.exchange.exchange_info import parse_exchange_info
from lakehouse_assets.instruments import Instrument, parse_universe
from lakehouse_assets.universe.selection import leveraged_bases, leveraged_instruments, parse_spec
from lakehouse_assets_tests.samples import SAMPLE_DATA

SPOT_2023 = SAMPLE_DATA / "api" / "SwapLandExchange+Statics" / "exchangeInfo.json.gz"


@pytest.fixture(scope="module")
def spot_2023() -> pl.DataFrame:
    return parse_exchange_info(gzip.decompress(SPOT_2023.read_bytes()), market="spot", source=SPOT_2023.name)


def keys(instruments: list[Instrument] | set[Instrument]) -> list[str]:
    return sorted(i.key for i in instruments)


# --------------------------------------------------------------------------- the exact form, unchanged


def test_the_exact_form_parses_to_the_same_instruments_as_before() -> None:
    text = " btcusdt , um:ethusdt,spot:BTCUSDT,cm:BTCUSD_PERP,um:1000shibusdt "
    spec = parse_spec(text)
    assert spec.is_exact and spec.patterns == [] and spec.exclusions == []
    assert spec.exact == parse_universe(text) == [
        Instrument("spot", "BTCUSDT"), Instrument("um", "ETHUSDT"), Instrument("cm", "BTCUSD_PERP"),
        Instrument("um", "1000SHIBUSDT"),
    ]  # fmt: skip
    # exact entries need no candidates at all: select() returns them as written
    assert spec.select(pl.DataFrame(schema={"market": pl.String, "symbol": pl.String})) == spec.exact


# --------------------------------------------------------------------------- leveraged tokens, real answer


def test_leveraged_tokens_of_the_real_2023_spot_answer(spot_2023: pl.DataFrame) -> None:
    bases = leveraged_bases(spot_2023["base"].to_list())
    assert len(bases) == 50
    stems = {b.removesuffix(s) for b in bases for s in ("UP", "DOWN", "BULL", "BEAR") if b.endswith(s) and b != s}
    assert {"BTC", "XRP", "1INCH", "ETH", "BNB", "EOS", "YFI"} <= stems
    assert stems <= set(spot_2023["base"])  # every stem trades on spot too
    assert {"BTCUP", "BTCDOWN", "XRPBULL", "XRPBEAR", "1INCHUP", "BULL", "BEAR"} <= bases

    leveraged = leveraged_instruments(spot_2023)
    assert len(leveraged) == 60
    rows = spot_2023.filter(pl.col("symbol").is_in([i.symbol for i in leveraged]))
    assert dict(rows.group_by("status").len().iter_rows()) == {"TRADING": 8, "BREAK": 52}
    assert sorted(rows.filter(pl.col("status") == "TRADING")["symbol"]) == [
        "ADADOWNUSDT", "ADAUPUSDT", "BNBDOWNUSDT", "BNBUPUSDT", "BTCDOWNUSDT", "BTCUPUSDT", "ETHDOWNUSDT", "ETHUPUSDT"
    ]  # fmt: skip
    # coins whose name merely contains the suffixes stay: SUPER (ends in ...ER, contains UP)
    assert not {i.symbol for i in leveraged} & {"SUPERUSDT", "SUPERBTC", "BTCUSDT", "XRPUSDT"}


def test_a_pattern_with_the_leveraged_exclusion_on_the_real_answer(spot_2023: pl.DataFrame) -> None:
    everything = parse_spec("spot:*USDT").select(spot_2023)
    assert len(everything) == 455
    assert everything == sorted(everything)  # a pattern's matches come sorted
    chosen = parse_spec("spot:*USDT,!leveraged").select(spot_2023)
    assert len(chosen) == 405  # 50 of the 60 leveraged symbols are quoted in USDT
    names = {i.symbol for i in chosen}
    assert {"BTCUSDT", "XRPUSDT", "1INCHUSDT", "SUPERUSDT"} <= names
    assert not names & {"BTCUPUSDT", "BTCDOWNUSDT", "XRPBEARUSDT", "BULLUSDT", "1INCHDOWNUSDT"}
    # spot:*BTC (the BTC-quoted market) with one more exclusion, written without its market
    btc = parse_spec("spot:*BTC,!ETH*,!leveraged").select(spot_2023)
    assert Instrument("spot", "ADABTC") in btc and not any(i.symbol.startswith("ETH") for i in btc)
    assert len(btc) == spot_2023.filter(
        pl.col("symbol").str.ends_with("BTC") & ~pl.col("symbol").str.starts_with("ETH")
    ).height


# --------------------------------------------------------------------------- small tables (SYNTHETIC rows)

#: SYNTHETIC: real ticker names, rows written here. JUP is a real coin ending in UP (listed 2024, so not in
#: the 2023 answer); XRPBEARUSDT has no base/quote, as for a symbol only the archive knows.
SMALL = pl.DataFrame(
    [
        ("spot", "BTCUSDT", "BTC", "USDT"), ("spot", "BTCUPUSDT", "BTCUP", "USDT"), ("spot", "JUPUSDT", "JUP", "USDT"),
        ("spot", "XRPUSDT", "XRP", "USDT"), ("spot", "XRPBEARUSDT", None, None), ("spot", "ETHBTC", "ETH", "BTC"),
        ("um", "BTCUSDT", "BTC", "USDT"), ("um", "JUPUSDT", "JUP", "USDT"), ("um", "BTCUSDT_230929", "BTC", "USDT"),
        ("cm", "BTCUSD_PERP", "BTC", "USD"), ("cm", "ETHUSD_PERP", "ETH", "USD"), ("cm", "BTCUSD_230929", "BTC", "USD"),
    ],
    schema={"market": pl.String, "symbol": pl.String, "base": pl.String, "quote": pl.String},
    orient="row",
)  # fmt: skip


def test_patterns_per_market() -> None:
    assert keys(parse_spec("cm:*_PERP").select(SMALL)) == ["cm:BTCUSD_PERP", "cm:ETHUSD_PERP"]
    assert keys(parse_spec("um:*USDT").select(SMALL)) == ["um:BTCUSDT", "um:JUPUSDT"]
    assert keys(parse_spec("um:BTCUSDT_??????").select(SMALL)) == ["um:BTCUSDT_230929"]
    assert keys(parse_spec("spot:*BTC").select(SMALL)) == ["spot:ETHBTC"]


def test_the_leveraged_rule_needs_the_stem_unlike_a_naive_suffix() -> None:
    rule = parse_spec("spot:*USDT,!leveraged").select(SMALL)
    assert keys(rule) == ["spot:BTCUSDT", "spot:JUPUSDT", "spot:XRPUSDT"]  # XRPBEAR's base inferred from its quote
    naive = parse_spec("spot:*USDT,!spot:*UPUSDT").select(SMALL)
    assert "spot:JUPUSDT" not in keys(naive)  # what !leveraged exists to avoid


def test_exclusions_filter_pattern_matches_everywhere_but_never_an_exact_entry() -> None:
    spec = parse_spec("spot:ETHBTC,um:*,spot:*USDT,!JUP*,!leveraged,spot:BTCUPUSDT")
    assert [i.key for i in spec.select(SMALL)] == [
        "spot:ETHBTC",  # exact entries and pattern matches in the order written
        "um:BTCUSDT", "um:BTCUSDT_230929",  # !JUP* has no market: it excludes in every market
        "spot:BTCUSDT", "spot:XRPUSDT",
        "spot:BTCUPUSDT",  # listed exactly: kept although !leveraged matches it
    ]  # fmt: skip


def test_resolution_problems_are_reported_together() -> None:
    with pytest.raises(ValueError) as err:
        parse_spec("um:*USDX,cm:*_PERPETUAL,spot:BTCUSDT").select(SMALL)
    assert str(err.value) == (
        "'um:*USDX' matches no instrument of silver/instruments; "
        "'cm:*_PERPETUAL' matches no instrument of silver/instruments"
    )
    with pytest.raises(ValueError, match=r"^the exclusions \(!\*USDT\) remove every instrument"):
        parse_spec("um:*USDT,!*USDT").select(SMALL)


# --------------------------------------------------------------------------- bad grammar


def test_every_grammar_problem_is_reported_at_once() -> None:
    with pytest.raises(ValueError) as err:
        parse_spec("um:*USDT,*USDT,xx:*USDT,spot:*[USDT],leveraged,!,,um:BTC-USDT")
    assert str(err.value).split("; ") == [
        "pattern '*USDT' has no market",
        "write market:PATTERN, e.g. 'um:*USDT' (the same ticker names different contracts on spot, um and cm)",
        "unknown market 'xx' for pattern '*USDT'",
        "expected one of spot, um, cm",
        "invalid pattern '*[USDT]' (market spot): only ASCII letters, digits, '_' and the wildcards '*' (any "
        "characters) and '?' (one character) are allowed",
        "'leveraged' names a set of instruments that can only be excluded",
        "write '!leveraged'",
        "'!' excludes nothing",
        "write e.g. '!spot:*DOWNUSDT' or '!leveraged'",
        "entry 7 is empty",
        "invalid symbol 'BTC-USDT' (market um): only ASCII letters, digits and '_' are allowed",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!leveraged,!um:*DOWN*",
         "no entry includes anything: exclusions (!...) only remove what patterns match; add e.g. 'um:*USDT'"),
        ("spot:BTCUSDT,um:*USDT,!spot:BTCUSDT", "spot:BTCUSDT is both listed and excluded by '!spot:BTCUSDT'"),
        ("BTCUSDT,um:*USDT,!BTCUSDT", "spot:BTCUSDT is both listed and excluded by '!BTCUSDT'"),
        ("spot:BTCUSDT,!leveraged",
         "'!leveraged' has nothing to filter: exclusions remove what a pattern (market:PATTERN) matches, never an "
         "exact entry, and no entry is a pattern"),
    ],
)
def test_contradictions_and_exclusions_with_nothing_to_filter(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_spec(text)
    assert str(err.value) == message


def test_the_setting_reports_the_grammar_in_the_reliability_format() -> None:
    current = settings.load({"LAKEHOUSE_SYMBOLS": "um:*USDT,*_PERP,!"}, dotenv_file=None)
    assert current.errors == [
        "LAKEHOUSE_SYMBOLS='um:*USDT,*_PERP,!': pattern '*_PERP' has no market; write market:PATTERN, e.g. "
        "'um:*_PERP' (the same ticker names different contracts on spot, um and cm); '!' excludes nothing; write "
        "e.g. '!spot:*DOWNUSDT' or '!leveraged'; a universe is comma-separated market:SYMBOL entries (market spot, "
        "um, cm), market:PATTERN globs (* and ?) and !exclusions, e.g. 'um:BTCUSDT,spot:*USDT,!leveraged'"
    ]
    good = settings.load({"LAKEHOUSE_SYMBOLS": "um:*USDT,cm:*_PERP,!leveraged,spot:BTCUSDT"}, dotenv_file=None)
    assert good.errors == []
    spec = good["LAKEHOUSE_SYMBOLS"]
    assert spec.exact == [Instrument("spot", "BTCUSDT")]
    assert [e.text for e in spec.patterns] == ["um:*USDT", "cm:*_PERP"]
    assert [e.text for e in spec.exclusions] == ["!leveraged"]
