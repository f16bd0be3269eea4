"""settings.py: every LAKEHOUSE_* variable has one declaration, one rule and one message format.

Each bad value must be reported as ``NAME='value': what is wrong / what is expected``, all problems
of a configuration at once, secrets redacted, and the defaults must stay exactly what they were.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lakehouse_assets import settings
from lakehouse_assets.instruments import Instrument, parse_universe
from lakehouse_assets.settings import ConfigError
from lakehouse_assets.universe.selection import parse_spec
from lakehouse_assets_tests.samples import REPO

PACKAGE = REPO / "lakehouse_assets"
NO_DOTENV = Path("/nonexistent/.env")

UNIVERSE_HINT = (
    "; a universe is comma-separated market:SYMBOL entries (market spot, um, cm), market:PATTERN globs (* and ?) "
    "and !exclusions, e.g. 'um:BTCUSDT,spot:*USDT,!leveraged'"
)
CAPS_HINT = (
    "; expected comma-separated caps: a bare number (the default) and/or market:SYMBOL=number, each > 0, "
    "e.g. '0.03,um:BTCUSDT=0.003'"
)
CRON_HINT = "expected a 5-field cron string 'minute hour day-of-month month day-of-week', e.g. '15 0 * * *'"


def load(**env: str) -> settings.Settings:
    return settings.load(env, dotenv_file=NO_DOTENV)


def test_defaults_are_the_documented_ones_and_come_from_default() -> None:
    current = load()
    assert current.errors == []
    assert {name: v.source for name, v in current.values.items()} == {name: "default" for name in settings.SETTINGS}
    effective = {name: v.value for name, v in current.values.items()}
    assert effective == {
        "LAKEHOUSE_STORAGE": "lakehouse_data",
        "LAKEHOUSE_S3_ENDPOINT_URL": None,
        "LAKEHOUSE_S3_MAX_ATTEMPTS": 8,
        "LAKEHOUSE_S3_TIMEOUT_SECONDS": 60,
        "LAKEHOUSE_ARCHIVE_URL": "https://data.binance.vision",
        "LAKEHOUSE_SYMBOLS": parse_spec("spot:BTCUSDT,spot:ETHUSDT,um:BTCUSDT,cm:BTCUSD_PERP"),
        "LAKEHOUSE_START_DATE": "2020-01-01",
        "LAKEHOUSE_DAYS_PER_RUN": 366,
        "LAKEHOUSE_RETRY_MAX": 3,
        "LAKEHOUSE_RETRY_DELAY_SECONDS": 30.0,
        "LAKEHOUSE_RESAMPLE_INTERVALS": ["5m", "15m", "1h", "4h", "1d"],
        "LAKEHOUSE_FEATURE_INTERVALS": ["1m", "1h", "1d"],
        "LAKEHOUSE_CHART_MAX_SYMBOLS": 12,
        "LAKEHOUSE_FUNDING_RATE_CAPS": None,
        "LAKEHOUSE_FUNDING_SENSOR_DAYS": 62,
        "LAKEHOUSE_FUNDING_DAILY_CRON": "20 0 * * *",
        "LAKEHOUSE_REST_FILL": True,
        "LAKEHOUSE_REST_URL": None,
        "LAKEHOUSE_REST_URL_SPOT": None,
        "LAKEHOUSE_REST_URL_UM": None,
        "LAKEHOUSE_REST_URL_CM": None,
        "LAKEHOUSE_REST_EXCHANGE_SPOT": "binance",
        "LAKEHOUSE_REST_EXCHANGE_UM": "binanceusdm",
        "LAKEHOUSE_REST_EXCHANGE_CM": "binancecoinm",
        "LAKEHOUSE_REST_KLINE_API": "auto",
        "LAKEHOUSE_REST_PAGE_LIMIT": 1000,
        "LAKEHOUSE_ARCHIVE_SENSOR_DAYS": 3,
        "LAKEHOUSE_ARCHIVE_SENSOR_INTERVAL_SECONDS": 600,
        "LAKEHOUSE_AUTOMATION_LOOKBACK_DAYS": 62,
        "LAKEHOUSE_DAILY_CRON": "15 0 * * *",
        "LAKEHOUSE_TODAY_CRON": "5 * * * *",
        "LAKEHOUSE_FRESHNESS_MAX_AGE_HOURS": 36.0,
        "LAKEHOUSE_ALERT_WEBHOOK_URL": None,
        "LAKEHOUSE_UI_URL": None,
    } | {  # settings other modules declared on top of these keep their own defaults
        name: v.value for name, v in current.values.items() if name not in BASE_SETTINGS
    }


BASE_SETTINGS = {
    "LAKEHOUSE_STORAGE", "LAKEHOUSE_S3_ENDPOINT_URL", "LAKEHOUSE_S3_MAX_ATTEMPTS", "LAKEHOUSE_S3_TIMEOUT_SECONDS",
    "LAKEHOUSE_ARCHIVE_URL", "LAKEHOUSE_SYMBOLS", "LAKEHOUSE_START_DATE", "LAKEHOUSE_DAYS_PER_RUN",
    "LAKEHOUSE_RETRY_MAX", "LAKEHOUSE_RETRY_DELAY_SECONDS", "LAKEHOUSE_RESAMPLE_INTERVALS",
    "LAKEHOUSE_FEATURE_INTERVALS", "LAKEHOUSE_CHART_MAX_SYMBOLS", "LAKEHOUSE_FUNDING_RATE_CAPS",
    "LAKEHOUSE_FUNDING_SENSOR_DAYS", "LAKEHOUSE_FUNDING_DAILY_CRON", "LAKEHOUSE_REST_FILL", "LAKEHOUSE_REST_URL",
    "LAKEHOUSE_REST_URL_SPOT", "LAKEHOUSE_REST_URL_UM", "LAKEHOUSE_REST_URL_CM", "LAKEHOUSE_REST_EXCHANGE_SPOT",
    "LAKEHOUSE_REST_EXCHANGE_UM", "LAKEHOUSE_REST_EXCHANGE_CM", "LAKEHOUSE_REST_KLINE_API", "LAKEHOUSE_REST_PAGE_LIMIT",
    "LAKEHOUSE_ARCHIVE_SENSOR_DAYS", "LAKEHOUSE_ARCHIVE_SENSOR_INTERVAL_SECONDS", "LAKEHOUSE_AUTOMATION_LOOKBACK_DAYS",
    "LAKEHOUSE_DAILY_CRON", "LAKEHOUSE_TODAY_CRON", "LAKEHOUSE_FRESHNESS_MAX_AGE_HOURS", "LAKEHOUSE_ALERT_WEBHOOK_URL",
    "LAKEHOUSE_UI_URL",
}


def test_every_variable_the_product_reads_is_declared_and_read_only_through_settings() -> None:
    """One place: grep the package for LAKEHOUSE_* names and for direct environment reads of them."""
    named: set[str] = set()
    direct_reads: list[str] = []
    scripts_that_set_env_for_their_runs = {"demo.py", "bench.py", "gold_bench.py"}
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        named |= set(re.findall(r"\bLAKEHOUSE_[A-Z0-9_]*[A-Z0-9]\b", text))
        if path.name not in scripts_that_set_env_for_their_runs and path.name != "settings.py":
            direct_reads += [
                f"{path.name}: {m}" for m in re.findall(r"(?:environ\.get|getenv|environ\[)\(?\"(LAKEHOUSE_\w+)", text)
            ]
    named -= {"LAKEHOUSE_REST_URL_", "LAKEHOUSE_REST_EXCHANGE_"}  # prose: LAKEHOUSE_REST_URL_<MARKET>
    named = {n for n in named if not n.endswith("_") and "_TEST_" not in n}
    assert BASE_SETTINGS <= set(settings.SETTINGS)
    assert sorted(named - set(settings.SETTINGS)) == []
    assert direct_reads == []
    for setting in settings.SETTINGS.values():
        assert setting.doc and setting.parse_default() == load().values[setting.name].value


def _tomorrow() -> str:
    return (datetime.now(UTC).date() + timedelta(days=1)).isoformat()


BAD_VALUES = [
    # the universe: set-but-empty is an error (not the default universe), every bad entry named
    ("LAKEHOUSE_SYMBOLS", "",
     "LAKEHOUSE_SYMBOLS='': is set but empty; expected at least one market:SYMBOL, e.g. 'spot:BTCUSDT' (an empty "
     "universe is not the default universe: unset the variable to use the default)"),
    ("LAKEHOUSE_SYMBOLS", "  \t ",
     "LAKEHOUSE_SYMBOLS='  \\t ': is set but empty; expected at least one market:SYMBOL, e.g. 'spot:BTCUSDT' (an "
     "empty universe is not the default universe: unset the variable to use the default)"),
    ("LAKEHOUSE_SYMBOLS", "spot:", "LAKEHOUSE_SYMBOLS='spot:': 'spot:' has no symbol" + UNIVERSE_HINT),
    ("LAKEHOUSE_SYMBOLS", "xx:BTC",
     "LAKEHOUSE_SYMBOLS='xx:BTC': unknown market 'xx' for symbol 'BTC'; expected one of spot, um, cm" + UNIVERSE_HINT),
    ("LAKEHOUSE_SYMBOLS", "ＢＴＣＵＳＤＴ",
     "LAKEHOUSE_SYMBOLS='ＢＴＣＵＳＤＴ': invalid symbol 'ＢＴＣＵＳＤＴ' (market spot): only ASCII letters, digits and "
     "'_' are allowed" + UNIVERSE_HINT),
    ("LAKEHOUSE_SYMBOLS", "spot:BTCUSDT,,um:BTCUSDT", "LAKEHOUSE_SYMBOLS='spot:BTCUSDT,,um:BTCUSDT': entry 2 is empty" + UNIVERSE_HINT),
    ("LAKEHOUSE_SYMBOLS", "spot:../../etc",
     "LAKEHOUSE_SYMBOLS='spot:../../etc': invalid symbol '../../ETC' (market spot): only ASCII letters, digits and "
     "'_' are allowed" + UNIVERSE_HINT),
    # the first partition
    ("LAKEHOUSE_START_DATE", "2020/01/01", "LAKEHOUSE_START_DATE='2020/01/01': expected a date YYYY-MM-DD, e.g. 2020-01-01"),
    ("LAKEHOUSE_START_DATE", "20200101", "LAKEHOUSE_START_DATE='20200101': expected a date YYYY-MM-DD, e.g. 2020-01-01"),
    ("LAKEHOUSE_START_DATE", "2020-02-30", "LAKEHOUSE_START_DATE='2020-02-30': expected a date YYYY-MM-DD, e.g. 2020-01-01"),
    # backfill run size: 0 would make Dagster's range splitter loop forever
    ("LAKEHOUSE_DAYS_PER_RUN", "0", "LAKEHOUSE_DAYS_PER_RUN='0': expected an integer >= 1"),
    ("LAKEHOUSE_DAYS_PER_RUN", "-3", "LAKEHOUSE_DAYS_PER_RUN='-3': expected an integer >= 1"),
    ("LAKEHOUSE_DAYS_PER_RUN", "7.5", "LAKEHOUSE_DAYS_PER_RUN='7.5': expected an integer >= 1"),
    ("LAKEHOUSE_DAYS_PER_RUN", "thirty", "LAKEHOUSE_DAYS_PER_RUN='thirty': expected an integer >= 1"),
    # numbers out of range or not numbers
    ("LAKEHOUSE_S3_TIMEOUT_SECONDS", "0", "LAKEHOUSE_S3_TIMEOUT_SECONDS='0': expected an integer between 1 and 3600 seconds"),
    ("LAKEHOUSE_S3_MAX_ATTEMPTS", "many", "LAKEHOUSE_S3_MAX_ATTEMPTS='many': expected an integer between 1 and 20"),
    ("LAKEHOUSE_RETRY_MAX", "11", "LAKEHOUSE_RETRY_MAX='11': expected an integer between 0 and 10"),
    ("LAKEHOUSE_RETRY_DELAY_SECONDS", "nan", "LAKEHOUSE_RETRY_DELAY_SECONDS='nan': expected a number between 0 and 3600 seconds"),
    ("LAKEHOUSE_RETRY_DELAY_SECONDS", "-1", "LAKEHOUSE_RETRY_DELAY_SECONDS='-1': expected a number between 0 and 3600 seconds"),
    ("LAKEHOUSE_REST_PAGE_LIMIT", "1501", "LAKEHOUSE_REST_PAGE_LIMIT='1501': expected an integer between 1 and 1500"),
    ("LAKEHOUSE_REST_PAGE_LIMIT", "0", "LAKEHOUSE_REST_PAGE_LIMIT='0': expected an integer between 1 and 1500"),
    ("LAKEHOUSE_CHART_MAX_SYMBOLS", "-1", "LAKEHOUSE_CHART_MAX_SYMBOLS='-1': expected an integer between 0 and 200"),
    ("LAKEHOUSE_FRESHNESS_MAX_AGE_HOURS", "0", "LAKEHOUSE_FRESHNESS_MAX_AGE_HOURS='0': expected a number > 0 and <= 8760 hours"),
    ("LAKEHOUSE_ARCHIVE_SENSOR_DAYS", "0", "LAKEHOUSE_ARCHIVE_SENSOR_DAYS='0': expected an integer between 1 and 366"),
    ("LAKEHOUSE_ARCHIVE_SENSOR_INTERVAL_SECONDS", "5",
     "LAKEHOUSE_ARCHIVE_SENSOR_INTERVAL_SECONDS='5': expected an integer between 30 and 86400 seconds"),
    ("LAKEHOUSE_AUTOMATION_LOOKBACK_DAYS", "1e3", "LAKEHOUSE_AUTOMATION_LOOKBACK_DAYS='1e3': expected an integer between 1 and 3660"),
    ("LAKEHOUSE_FUNDING_SENSOR_DAYS", "٣", "LAKEHOUSE_FUNDING_SENSOR_DAYS='٣': expected an integer between 1 and 3660"),
    # interval names: resample.parse_intervals' rules
    ("LAKEHOUSE_RESAMPLE_INTERVALS", "5m,7m",
     "LAKEHOUSE_RESAMPLE_INTERVALS='5m,7m': unsupported interval(s) ['7m']; allowed: 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, "
     "8h, 12h, 1d"),
    ("LAKEHOUSE_FEATURE_INTERVALS", "1m,1w",
     "LAKEHOUSE_FEATURE_INTERVALS='1m,1w': unsupported interval(s) ['1w']; allowed: 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, "
     "6h, 8h, 12h, 1d"),
    # cron strings
    ("LAKEHOUSE_DAILY_CRON", "61 0 * * *", f"LAKEHOUSE_DAILY_CRON='61 0 * * *': minute field '61' is invalid (allowed 0-59); {CRON_HINT}"),
    ("LAKEHOUSE_TODAY_CRON", "hourly", f"LAKEHOUSE_TODAY_CRON='hourly': has 1 field(s); {CRON_HINT}"),
    ("LAKEHOUSE_FUNDING_DAILY_CRON", "0 0 30 2 *", "LAKEHOUSE_FUNDING_DAILY_CRON='0 0 30 2 *': never fires (February has no day 30 or 31)"),
    # choices, flags, ids
    ("LAKEHOUSE_REST_KLINE_API", "raw", "LAKEHOUSE_REST_KLINE_API='raw': expected one of 'auto', 'ohlcv'"),
    ("LAKEHOUSE_REST_FILL", "flase", "LAKEHOUSE_REST_FILL='flase': expected one of 1/0, true/false, yes/no, on/off"),
    ("LAKEHOUSE_REST_EXCHANGE_UM", "Binance US",
     "LAKEHOUSE_REST_EXCHANGE_UM='Binance US': expected a ccxt exchange id (lower-case ASCII letters, digits, '_'), "
     "e.g. 'binance'"),
    # funding caps
    ("LAKEHOUSE_FUNDING_RATE_CAPS", "0.03,xx:BTC=0.1,um:BTCUSDT=abc",
     "LAKEHOUSE_FUNDING_RATE_CAPS='0.03,xx:BTC=0.1,um:BTCUSDT=abc': 'xx:BTC=0.1': unknown market 'xx' for symbol "
     "'BTC'; expected one of spot, um, cm; 'um:BTCUSDT=abc': 'abc' is not a number > 0" + CAPS_HINT),
    ("LAKEHOUSE_FUNDING_RATE_CAPS", "0", "LAKEHOUSE_FUNDING_RATE_CAPS='0': '0' is not a number > 0" + CAPS_HINT),
    # URLs and the lake root
    ("LAKEHOUSE_ARCHIVE_URL", "ftp://mirror.example.com/binance",
     "LAKEHOUSE_ARCHIVE_URL='ftp://mirror.example.com/binance': scheme 'ftp' is not supported; expected a URL "
     "starting with https:// or http:// or file://"),
    ("LAKEHOUSE_ARCHIVE_URL", "data.binance.vision",
     "LAKEHOUSE_ARCHIVE_URL='data.binance.vision': no scheme; expected a URL starting with https:// or http:// or file://"),
    ("LAKEHOUSE_S3_ENDPOINT_URL", "minio:9000",
     "LAKEHOUSE_S3_ENDPOINT_URL='minio:9000': scheme 'minio' is not supported; expected a URL starting with http:// "
     "or https://"),
    ("LAKEHOUSE_REST_URL", "ws://127.0.0.1:8080",
     "LAKEHOUSE_REST_URL='ws://127.0.0.1:8080': scheme 'ws' is not supported; expected a URL starting with http:// or "
     "https://"),
    ("LAKEHOUSE_UI_URL", "http://dagster:port",
     "LAKEHOUSE_UI_URL='http://dagster:port': not a valid URL (Port could not be cast to integer value as 'port'); "
     "expected a URL starting with http:// or https://"),
    ("LAKEHOUSE_STORAGE", "gs://bucket/lake",
     "LAKEHOUSE_STORAGE='gs://bucket/lake': scheme 'gs' is not supported; expected a local path, file:///path or "
     "s3://bucket/prefix"),
    ("LAKEHOUSE_STORAGE", "s3:///lake",
     "LAKEHOUSE_STORAGE='s3:///lake': no bucket; expected a local path, file:///path or s3://bucket/prefix"),
    ("LAKEHOUSE_STORAGE", " ",
     "LAKEHOUSE_STORAGE=' ': is set but empty; expected a value (unset the variable to use the default 'lakehouse_data')"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD_VALUES, ids=[f"{n}={v!r}" for n, v, _ in BAD_VALUES])
def test_a_bad_value_names_the_variable_its_value_and_what_is_expected(name: str, value: str, message: str) -> None:
    current = load(**{name: value})
    assert current.errors == [message]
    assert current.values[name].error == message
    with pytest.raises(ConfigError) as raised:
        current.raise_if_invalid()
    assert str(raised.value) == message
    with pytest.raises(ConfigError) as one:  # a resource field is checked by the same rule, same words
        settings.check(name, value)
    assert str(one.value) == message


def test_a_start_date_in_the_future_is_refused() -> None:
    tomorrow = _tomorrow()
    today = datetime.now(UTC).date().isoformat()
    assert load(LAKEHOUSE_START_DATE=tomorrow).errors == [
        f"LAKEHOUSE_START_DATE='{tomorrow}': lies in the future (today is {today} UTC); expected a past date YYYY-MM-DD"
    ]
    assert load(LAKEHOUSE_START_DATE=today).errors == []


def test_every_problem_is_reported_at_once_in_declaration_order() -> None:
    current = load(LAKEHOUSE_DAYS_PER_RUN="0", LAKEHOUSE_SYMBOLS="", LAKEHOUSE_REST_PAGE_LIMIT="2000")
    with pytest.raises(ConfigError) as raised:
        current.raise_if_invalid()
    assert raised.value.problems == [
        "LAKEHOUSE_SYMBOLS='': is set but empty; expected at least one market:SYMBOL, e.g. 'spot:BTCUSDT' (an empty "
        "universe is not the default universe: unset the variable to use the default)",
        "LAKEHOUSE_DAYS_PER_RUN='0': expected an integer >= 1",
        "LAKEHOUSE_REST_PAGE_LIMIT='2000': expected an integer between 1 and 1500",
    ]
    assert str(raised.value) == "3 configuration errors:\n" + "\n".join(f"- {p}" for p in raised.value.problems)
    assert isinstance(raised.value, ValueError)


def test_feature_intervals_must_be_built_by_the_resampled_table() -> None:
    assert load(LAKEHOUSE_FEATURE_INTERVALS="1m,4h", LAKEHOUSE_RESAMPLE_INTERVALS="5m,1h").errors == [
        "LAKEHOUSE_FEATURE_INTERVALS='1m,4h': 4h not built by gold/klines_resampled; expected 1m or intervals listed "
        "in LAKEHOUSE_RESAMPLE_INTERVALS (5m,1h)"
    ]
    assert load(LAKEHOUSE_FEATURE_INTERVALS="1m,1h", LAKEHOUSE_RESAMPLE_INTERVALS="5m,1h").errors == []


def test_credentials_never_appear_in_a_message() -> None:
    current = load(
        LAKEHOUSE_ARCHIVE_URL="ftp://mirror-user:s3cr3t-pw@mirror.example.com/binance",
        LAKEHOUSE_ALERT_WEBHOOK_URL="ftp://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX",
    )
    assert current.errors == [
        "LAKEHOUSE_ARCHIVE_URL='ftp://***@mirror.example.com/binance': scheme 'ftp' is not supported; expected a URL "
        "starting with https:// or http:// or file://",
        "LAKEHOUSE_ALERT_WEBHOOK_URL='ftp://hooks.slack.com/***': scheme 'ftp' is not supported; expected a URL "
        "starting with https:// or http://",
    ]
    ok = load(LAKEHOUSE_ALERT_WEBHOOK_URL="https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX")
    assert ok.values["LAKEHOUSE_ALERT_WEBHOOK_URL"].shown == "https://hooks.slack.com/***"


def test_set_but_empty_means_default_where_a_default_is_harmless() -> None:
    """An unset compose variable arrives as ''; for these the default is what the operator meant."""
    current = load(LAKEHOUSE_START_DATE="", LAKEHOUSE_ALERT_WEBHOOK_URL="", LAKEHOUSE_DAYS_PER_RUN=" ")
    assert current.errors == []
    assert current["LAKEHOUSE_START_DATE"] == "2020-01-01"
    assert current["LAKEHOUSE_ALERT_WEBHOOK_URL"] is None
    assert current["LAKEHOUSE_DAYS_PER_RUN"] == 366
    assert current.source("LAKEHOUSE_DAYS_PER_RUN") == "default"


def test_values_are_parsed_and_blanks_stripped() -> None:
    current = load(
        LAKEHOUSE_SYMBOLS=" btcusdt , um:ethusdt,cm:BTCUSD_PERP ",
        LAKEHOUSE_DAYS_PER_RUN=" 7 ",
        LAKEHOUSE_REST_FILL="OFF",
        LAKEHOUSE_RETRY_DELAY_SECONDS="0.5",
        LAKEHOUSE_DAILY_CRON="0 9-17/2 * * mon-fri",
        LAKEHOUSE_STORAGE="s3://my-lake/prefix",
        LAKEHOUSE_ARCHIVE_URL="file:///srv/mirror",
    )
    assert current.errors == []
    assert current["LAKEHOUSE_SYMBOLS"].exact == [
        Instrument("spot", "BTCUSDT"), Instrument("um", "ETHUSDT"), Instrument("cm", "BTCUSD_PERP")
    ]
    assert (current["LAKEHOUSE_DAYS_PER_RUN"], current["LAKEHOUSE_REST_FILL"]) == (7, False)
    assert current["LAKEHOUSE_RETRY_DELAY_SECONDS"] == 0.5
    assert current.source("LAKEHOUSE_SYMBOLS") == "env"


def test_sources_env_dotenv_and_default(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# deployment settings\n"
        "LAKEHOUSE_DAYS_PER_RUN=7\n"
        "export LAKEHOUSE_SYMBOLS='spot:BTCUSDT'  \n"
        'LAKEHOUSE_UI_URL="http://ui.example:3000" # link target\n'
        "LAKEHOUSE_TODAY_CRON=0 * * * * # hourly\n"
    )
    assert settings.read_dotenv(dotenv) == {
        "LAKEHOUSE_DAYS_PER_RUN": "7",
        "LAKEHOUSE_SYMBOLS": "spot:BTCUSDT",
        "LAKEHOUSE_UI_URL": "http://ui.example:3000",
        "LAKEHOUSE_TODAY_CRON": "0 * * * *",
    }
    # Inside Dagster the .env values are already in the environment: equal values are labelled .env.
    env = {"LAKEHOUSE_DAYS_PER_RUN": "7", "LAKEHOUSE_SYMBOLS": "um:BTCUSDT", "LAKEHOUSE_RETRY_MAX": "1"}
    current = settings.load(env, dotenv_file=dotenv)
    assert {n: current.source(n) for n in ("LAKEHOUSE_DAYS_PER_RUN", "LAKEHOUSE_SYMBOLS", "LAKEHOUSE_RETRY_MAX",
                                           "LAKEHOUSE_UI_URL", "LAKEHOUSE_START_DATE")} == {
        "LAKEHOUSE_DAYS_PER_RUN": ".env", "LAKEHOUSE_SYMBOLS": "env", "LAKEHOUSE_RETRY_MAX": "env",
        "LAKEHOUSE_UI_URL": "default", "LAKEHOUSE_START_DATE": "default",
    }
    # The lakehouse command applies .env over the environment, as `dagster dev` does.
    applied = settings.load(env, dotenv_file=dotenv, dotenv_overrides=True)
    assert applied["LAKEHOUSE_SYMBOLS"].exact == [Instrument("spot", "BTCUSDT")]
    assert applied.source("LAKEHOUSE_SYMBOLS") == ".env"
    assert applied["LAKEHOUSE_UI_URL"] == "http://ui.example:3000"


def test_adding_a_setting_is_one_declaration() -> None:
    name = "LAKEHOUSE_EXAMPLE_DEADLINE_SECONDS"
    try:
        settings.declare(name, "180", settings.number(1, 3600, unit="seconds"), "total time for one transfer")
        assert load()[name] == 180.0
        assert load(**{name: "0"}).errors == [f"{name}='0': expected a number between 1 and 3600 seconds"]
        with pytest.raises(ValueError, match="declared once"):
            settings.declare(name, "1", settings.integer(1), "twice")
    finally:
        settings.SETTINGS.pop(name, None)
    with pytest.raises(ValueError, match="expected an integer >= 1"):  # a bad default fails at import, not at run
        settings.declare("LAKEHOUSE_EXAMPLE_BAD_DEFAULT", "0", settings.integer(1), "bad default")
    assert "LAKEHOUSE_EXAMPLE_BAD_DEFAULT" not in settings.SETTINGS


def test_cron_rule_never_accepts_what_dagster_rejects() -> None:
    from dagster._utils.schedules import is_valid_cron_string

    parse = settings.cron()
    accepted = ["15 0 * * *", "5 * * * *", "*/15 * * * *", "0 0 1 jan *", "0 9-17/2 * * mon-fri", "0 0 * * 7",
                "0 0 * * 0,6", "5/10 * * * *", "@daily", "@hourly", "@weekly", "@monthly"]
    rejected = ["61 0 * * *", "0 24 * * *", "0 0 0 * *", "0 0 32 * *", "0 0 * 13 *", "0 0 * * 8", "* * * *",
                "* * * * * *", "0 0 30 2 *", "0 0 31 feb *", "*/0 * * * *", "daily", "abc * * * *"]
    for text in accepted:
        assert parse(text) == text and is_valid_cron_string(text), text
    for text in rejected:
        with pytest.raises(settings.Invalid):
            parse(text)
        assert not is_valid_cron_string(text), text


def test_instruments_accept_ascii_symbols_only() -> None:
    with pytest.raises(ValueError, match=r"invalid symbol 'ＢＴＣＵＳＤＴ' \(market spot\): only ASCII"):
        Instrument("spot", "ＢＴＣＵＳＤＴ")
    with pytest.raises(ValueError, match=r"invalid symbol 'ßtc'"):  # 'ß'.upper() == 'SS' must not sneak through
        parse_universe("spot:ßtc")
    with pytest.raises(ValueError, match="the symbol universe is empty"):
        parse_universe(" , ")
    assert parse_universe("um:1000shibusdt,cm:BTCUSD_240628") == [
        Instrument("um", "1000SHIBUSDT"), Instrument("cm", "BTCUSD_240628")
    ]


def test_settings_module_does_not_import_dagster() -> None:
    import subprocess
    import sys

    code = "import sys, lakehouse_assets.settings; print('dagster' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
