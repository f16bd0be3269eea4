"""Every ``LAKEHOUSE_*`` setting in one place: name, default, parser, one-line doc.

Why one module: a setting read in five places with five ``int(os.environ.get(...) or 3)`` idioms
fails five different ways (a 334-line traceback naming no variable, a silent fallback to the
default universe, a backfill splitter that never terminates with 0 days per run). Here each value
is parsed once, by one rule, and every problem is reported as ``NAME='value': expected ...`` (the
value redacted when it may carry credentials). All problems are collected, so one edit fixes them.

Who reads it: the Dagster code location at load time (a code location that fails to load shows the
message in the UI, and every run worker and step process loads the same code, so a bad setting stops
a run before its first step instead of being retried), the resources (``resources.py``), module-level
constants (partitions, schedules, sensors), the lake's ``lake.sql.store_from_env`` and ``lakehouse config``.

Sources: the process environment, and a ``.env`` file in the working directory. ``dagster dev`` /
``dagster`` CLI commands load ``./.env`` into the environment themselves (its values win over the
shell's); ``lakehouse`` does the same (``dotenv_overrides=True``). A value equal to the ``.env`` one is
reported as coming from ``.env``.

Set-but-empty: an unset compose or Helm variable arrives as ``""``. For most settings that means the
default, as before. For the ones where a default would silently do damage (the universe: a re-run
would replace every day with the default instruments; the lake root: data would land on the
container's own disk) an empty value is an error.

Adding a setting is one ``declare(...)`` call. Pure module: no Dagster import.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from lakehouse_assets.instruments import DEFAULT_SYMBOLS, MARKETS, parse_instrument
from lakehouse_assets.klines.memory import (
    DEFAULT_RUN_MEMORY_MIB,
    MIN_RUN_MEMORY_MIB,
    max_days_for_budget,
    min_budget_for_run,
)
from lakehouse_assets.lake.store import DEFAULT_STORAGE
from lakehouse_assets.redact import MASK, redact_url, url_host
from lakehouse_assets.universe.selection import parse_spec

__all__ = [
    "ConfigError",
    "Invalid",
    "SETTINGS",
    "Setting",
    "Settings",
    "Value",
    "check",
    "current",
    "declare",
    "get",
    "load",
    "read_dotenv",
]

SOURCE_ENV: Final = "env"
SOURCE_DOTENV: Final = ".env"
SOURCE_DEFAULT: Final = "default"


class ConfigError(ValueError):
    """One or more settings are invalid; ``problems`` holds one ``NAME='value': expected ...`` line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} configuration errors:\n" + "\n".join(f"- {p}" for p in self.problems)
        super().__init__(message)


class Invalid(ValueError):
    """Raised by a parser: the text after ``NAME='value': `` (what is wrong / what is expected)."""


# --------------------------------------------------------------------------- parsers
# Each factory returns ``parse(text) -> value``; text arrives stripped and non-empty.

Parser = Callable[[str], Any]


def _bounds(kind: str, low: float | None, high: float | None, *, low_open: bool = False, unit: str = "") -> str:
    suffix = f" {unit}" if unit else ""
    if low is not None and high is not None:
        if low_open:
            return f"expected {kind} > {low:g} and <= {high:g}{suffix}"
        return f"expected {kind} between {low:g} and {high:g}{suffix}"
    if low is not None:
        return f"expected {kind} {'>' if low_open else '>='} {low:g}{suffix}"
    if high is not None:
        return f"expected {kind} <= {high:g}{suffix}"
    return f"expected {kind}{suffix}"


_INT_RE = re.compile(r"[+-]?[0-9]+")


def integer(low: int | None = None, high: int | None = None, *, unit: str = "") -> Parser:
    expected = _bounds("an integer", low, high, unit=unit)

    def parse(text: str) -> int:
        if not _INT_RE.fullmatch(text):  # int() would also take '1_000' and full-width digits
            raise Invalid(expected)
        value = int(text)
        if (low is not None and value < low) or (high is not None and value > high):
            raise Invalid(expected)
        return value

    return parse


_NUMBER_RE = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False, unit: str = "") -> Parser:
    expected = _bounds("a number", low, high, low_open=low_open, unit=unit)

    def parse(text: str) -> float:
        if not _NUMBER_RE.fullmatch(text):  # float() would also take 'nan', 'inf', '1_0'
            raise Invalid(expected)
        value = float(text)
        too_low = low is not None and (value <= low if low_open else value < low)
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            raise Invalid(expected)
        return value

    return parse


_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off")


def flag() -> Parser:
    def parse(text: str) -> bool:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise Invalid("expected one of 1/0, true/false, yes/no, on/off")

    return parse


def choice(*options: str) -> Parser:
    def parse(text: str) -> str:
        if text not in options:
            raise Invalid(f"expected one of {', '.join(repr(o) for o in options)}")
        return text

    return parse


def url(*schemes: str) -> Parser:
    """A URL with one of ``schemes`` and a host (``file://`` needs a path instead)."""
    listed = "URL starting with " + " or ".join(f"{s}://" for s in schemes)

    def parse(text: str) -> str:
        try:
            parts = urlsplit(text)
            host = parts.hostname
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError as exc:
            raise Invalid(f"not a valid URL ({exc}); expected a {listed}") from None
        if parts.scheme.lower() not in schemes:
            shown = f"scheme {parts.scheme!r} is not supported" if parts.scheme else "no scheme"
            raise Invalid(f"{shown}; expected a {listed}")
        if parts.scheme.lower() == "file":
            if not parts.path:
                raise Invalid("a file:// URL needs a path, e.g. file:///srv/binance-mirror")
        elif not host:
            raise Invalid(f"no host; expected a {listed}, e.g. {schemes[0]}://host[:port]")
        return text

    return parse


_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


def storage() -> Parser:
    expected = "expected a local path, file:///path or s3://bucket/prefix"

    def parse(text: str) -> str:
        if text.startswith("s3://"):
            bucket = urlsplit(text).netloc
            if not bucket:
                raise Invalid(f"no bucket; {expected}")
            if not _BUCKET_RE.fullmatch(bucket):
                raise Invalid(f"{bucket!r} is not a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-'); {expected}")
            return text
        if "://" in text and not text.startswith("file://"):
            raise Invalid(f"scheme {text.split('://', 1)[0]!r} is not supported; {expected}")
        if text.startswith("file://") and not text.removeprefix("file://"):
            raise Invalid(f"a file:// URL needs a path; {expected}")
        return text

    return parse


_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def past_day() -> Parser:
    """``YYYY-MM-DD`` (strictly: date.fromisoformat also takes '20200101' and '2020-W01-1'), not in the future."""

    def parse(text: str) -> str:
        try:
            if not _DAY_RE.fullmatch(text):
                raise ValueError
            day = date.fromisoformat(text)
        except ValueError:
            raise Invalid("expected a date YYYY-MM-DD, e.g. 2020-01-01") from None
        today = datetime.now(UTC).date()
        if day > today:
            raise Invalid(f"lies in the future (today is {today.isoformat()} UTC); expected a past date YYYY-MM-DD")
        return text

    return parse


_CRON_FIELDS: Final = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_ALIASES: Final = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
_CRON_ITEM_RE = re.compile(r"(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?")


def _cron_values(item: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    def one(token: str) -> int:
        if token in names:
            return names.index(token) + (1 if low == 1 else 0)
        if not token.isdigit() or not low <= int(token) <= high:
            raise ValueError
        return int(token)

    match = _CRON_ITEM_RE.fullmatch(item)
    if not match:
        raise ValueError
    span, step = match.group(1), int(match.group(2) or 1)
    if step < 1:
        raise ValueError
    if span == "*":
        start, end = low, high
    elif "-" in span:
        start, end = (one(t) for t in span.split("-"))
        if start > end:
            raise ValueError
    else:
        start = one(span)
        end = high if match.group(2) else start
    return set(range(start, end + 1, step))


def cron() -> Parser:
    """A standard 5-field cron string (minute hour day month weekday) or an @alias, checked field by field.

    Stricter than Dagster's croniter (no L/W/#/H extensions) so that what passes here always passes there.
    """
    expected = "expected a 5-field cron string 'minute hour day-of-month month day-of-week', e.g. '15 0 * * *'"

    def parse(text: str) -> str:
        lowered = text.lower()
        if lowered in _CRON_ALIASES:
            return text
        fields = lowered.split()
        if len(fields) != 5:
            raise Invalid(f"has {len(fields)} field(s); {expected}")
        expanded = []
        for part, (label, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
            try:
                expanded.append(set().union(*(_cron_values(item, low, high, names) for item in part.split(","))))
            except ValueError:
                raise Invalid(f"{label} field {part!r} is invalid (allowed {low}-{high}); {expected}") from None
        if expanded[3] == {2} and expanded[2] <= {30, 31}:
            raise Invalid("never fires (February has no day 30 or 31)")
        return text

    return parse


def intervals(*, allow_source: bool) -> Parser:
    """The rules of ``resample.parse_intervals`` (intervals that tile a UTC day)."""

    def parse(text: str) -> list[str]:
        from lakehouse_assets.klines.resample import parse_intervals

        try:
            return parse_intervals(text, allow_source=allow_source)
        except ValueError as exc:
            raise Invalid(str(exc)) from None

    return parse


def universe() -> Parser:
    """The grammar of ``universe/selection.py``: exact entries, market:PATTERN globs, !exclusions, !leveraged."""

    def parse(text: str) -> Any:
        try:
            return parse_spec(text)
        except ValueError as exc:
            raise Invalid(
                f"{exc}; a universe is comma-separated market:SYMBOL entries (market {', '.join(MARKETS)}), "
                "market:PATTERN globs (* and ?) and !exclusions, e.g. 'um:BTCUSDT,spot:*USDT,!leveraged'"
            ) from None

    return parse


def weight_limits() -> Parser:
    """``spot=6000,um=2400,cm=2400``: the rules of ``exchange.weight_budget.parse_weight_limits``."""

    def parse(text: str) -> dict[str, int]:
        from lakehouse_assets.exchange.weight_budget import parse_weight_limits

        try:
            return parse_weight_limits(text)
        except ValueError as exc:
            raise Invalid(str(exc)) from None

    return parse


def local_dir() -> Parser:
    """A local directory path (file locks need a local filesystem, or NFS with working locks)."""

    def parse(text: str) -> str:
        if "://" in text:
            raise Invalid("expected a local directory path, e.g. /var/lib/lakehouse/state (not a URL)")
        return text

    return parse


_EXCHANGE_RE = re.compile(r"[a-z][a-z0-9_]*")


def exchange_id() -> Parser:
    def parse(text: str) -> str:
        if not _EXCHANGE_RE.fullmatch(text):
            raise Invalid("expected a ccxt exchange id (lower-case ASCII letters, digits, '_'), e.g. 'binance'")
        return text

    return parse


def rate_caps() -> Parser:
    """``0.03,um:BTCUSDT=0.003``: the rules of ``funding_quality.parse_rate_caps``, every part checked."""
    expected = "expected comma-separated caps: a bare number (the default) and/or market:SYMBOL=number, each > 0"

    def parse(text: str) -> str:
        problems = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, sep, value = part.rpartition("=")
            if not _NUMBER_RE.fullmatch(value.strip()) or not (0 < float(value) < math.inf):
                problems.append(f"{part!r}: {value.strip()!r} is not a number > 0" if sep else f"{part!r} is not a number > 0")
                continue
            if sep and key.strip().lower() != "default":
                try:
                    parse_instrument(key)
                except ValueError as exc:
                    problems.append(f"{part!r}: {exc}")
        if problems:
            raise Invalid("; ".join(problems) + f"; {expected}, e.g. '0.03,um:BTCUSDT=0.003'")
        return text

    return parse


# --------------------------------------------------------------------------- declarations


def _show_url(text: str) -> str:
    return redact_url(text)


def _show_webhook(text: str) -> str:
    """A webhook URL's path is its secret: only scheme://host is ever shown."""
    host = url_host(text)
    return MASK if host.startswith("<") else f"{host}/{MASK}"


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None  # the default as text (what the docs show); None = unset
    parse: Parser
    doc: str
    empty_is_error: bool = False  # set-but-empty is a mistake here, not "use the default"
    show: Callable[[str], str] = field(default=lambda text: text)  # how a value may be printed

    def parse_default(self) -> Any:
        return None if self.default is None else self.parse(self.default)

    def problem(self, raw: str, detail: str) -> str:
        return f"{self.name}={self.show(raw)!r}: {detail}"


SETTINGS: dict[str, Setting] = {}


def declare(
    name: str,
    default: str | None,
    parse: Parser,
    doc: str,
    *,
    empty_is_error: bool = False,
    show: Callable[[str], str] | None = None,
) -> Setting:
    """Register one setting; its default must parse (checked here, so a bad default fails at import)."""
    if not name.startswith("LAKEHOUSE_") or name in SETTINGS:
        raise ValueError(f"setting {name!r}: names start with LAKEHOUSE_ and are declared once")
    setting = Setting(name, default, parse, doc, empty_is_error, show or (lambda text: text))
    setting.parse_default()
    SETTINGS[name] = setting
    return setting


# Where the lake and its inputs are.
declare("LAKEHOUSE_STORAGE", DEFAULT_STORAGE, storage(),
        "lake root: a local path or s3://bucket/prefix; the default 'lakehouse_data' is in the project root "
        "(whatever the working directory), another relative path is relative to the working directory",
        empty_is_error=True, show=_show_url)
declare("LAKEHOUSE_S3_ENDPOINT_URL", None, url("http", "https"),
        "endpoint of an S3-compatible store (MinIO, Ceph, R2...); unset = AWS", show=_show_url)
declare("LAKEHOUSE_S3_MAX_ATTEMPTS", "8", integer(1, 20), "attempts per S3 request (5xx, throttling, resets, timeouts)")
declare("LAKEHOUSE_S3_TIMEOUT_SECONDS", "60", integer(1, 3600, unit="seconds"), "S3 connect/read timeout")
declare("LAKEHOUSE_ARCHIVE_URL", "https://data.binance.vision", url("https", "http", "file"),
        "base of the Binance archive or a mirror with its layout (https://, http:// or file:///path)", show=_show_url)
declare("LAKEHOUSE_ARCHIVE_LISTING_URL", "https://s3-ap-northeast-1.amazonaws.com/data.binance.vision",
        url("https", "http", "file"), "S3 list API of the archive's bucket (ListBucketResult XML), or file:///path of a "
        "mirror whose directory tree is listed; left at this default while LAKEHOUSE_ARCHIVE_URL is a mirror, the "
        "mirror itself is listed", show=_show_url)
declare("LAKEHOUSE_SYMBOLS", DEFAULT_SYMBOLS, universe(),
        "the universe, comma-separated: market:SYMBOL (market spot, um or cm; a bare SYMBOL means spot), "
        "market:PATTERN (glob * ?, e.g. um:*USDT), !exclusions (!spot:*DOWNUSDT, !leveraged); patterns and "
        "listing days come from silver/instruments",
        empty_is_error=True)
declare("LAKEHOUSE_RELIST_GAP_DAYS", "14", integer(1, 366, unit="days"),
        "silver/instruments: a run of at least this many days without an archive file ends a trading period "
        "(a relisting starts a new one); shorter holes are files Binance missed")
declare("LAKEHOUSE_START_DATE", "2020-01-01", past_day(), "first daily partition (UTC), YYYY-MM-DD, not in the future")
declare("LAKEHOUSE_DAYS_PER_RUN", "366", integer(1), "days one backfill run processes")
declare("LAKEHOUSE_RUN_MEMORY_MIB", str(DEFAULT_RUN_MEMORY_MIB), integer(MIN_RUN_MEMORY_MIB, unit="MiB"),
        "peak memory of one run: steps process and write their instrument-days in chunks that fit (README, "
        "Bounded memory); the minimum is the process plus one instrument-day")
declare("LAKEHOUSE_STATE_DIR", None, local_dir(),
        "directory of state shared by every process of the machine (the REST weight budget); unset = "
        "$DAGSTER_HOME/lakehouse_state, else a per-user directory in the system temp dir")
declare("LAKEHOUSE_ARCHIVE_CONCURRENCY", "8", integer(1, 64),
        "parallel archive downloads per run, and keep-alive connections per archive host")

# HTTP deadlines (http_transfer.py): every transfer has a connect and a read timeout and a total deadline.
declare("LAKEHOUSE_HTTP_CONNECT_TIMEOUT_SECONDS", "10", number(0, 3600, low_open=True, unit="seconds"),
        "TCP/TLS connect timeout of every HTTP request (archive, REST, webhook)")
declare("LAKEHOUSE_ARCHIVE_READ_TIMEOUT_SECONDS", "30", number(0, 3600, low_open=True, unit="seconds"),
        "longest silence within one archive answer")
declare("LAKEHOUSE_ARCHIVE_DEADLINE_SECONDS", "180", number(0, 3600, low_open=True, unit="seconds"),
        "total time of one archive transfer (zip, CHECKSUM, HEAD); an overrun is retried like a timeout")
declare("LAKEHOUSE_REST_READ_TIMEOUT_SECONDS", "10", number(0, 3600, low_open=True, unit="seconds"),
        "longest silence within one REST answer")
declare("LAKEHOUSE_REST_DEADLINE_SECONDS", "60", number(0, 3600, low_open=True, unit="seconds"),
        "total time of one REST page; an overrun is retried like a timeout")
declare("LAKEHOUSE_ALERT_DEADLINE_SECONDS", "15", number(0, 3600, low_open=True, unit="seconds"),
        "total time of one failure-webhook delivery attempt (3 attempts)")

# Zip limits (zip_limits.py): a zip bomb is refused before it is inflated.
declare("LAKEHOUSE_ZIP_MAX_MEMBER_MIB", "256", integer(1, 65536, unit="MiB"),
        "largest uncompressed size of one archive zip member (a daily 1m CSV is ~0.25 MiB, a monthly one ~10 MiB)")
declare("LAKEHOUSE_ZIP_MAX_ENTRIES", "4", integer(1, 1000), "most entries an archive zip may list (Binance's hold one CSV)")

# Step retries (retries.py).
declare("LAKEHOUSE_RETRY_MAX", "3", integer(0, 10), "step retries after a transient failure (network, S3, 5xx)")
declare("LAKEHOUSE_RETRY_DELAY_SECONDS", "30", number(0, 3600, unit="seconds"),
        "base delay d of the step retries: waits d, 3d, 7d (each +/- d of jitter)")

# Gold.
declare("LAKEHOUSE_RESAMPLE_INTERVALS", "5m,15m,1h,4h,1d", intervals(allow_source=False),
        "intervals of gold/klines_resampled (must tile a UTC day)")
declare("LAKEHOUSE_FEATURE_INTERVALS", "1m,1h,1d", intervals(allow_source=True),
        "intervals of gold/features: 1m and/or intervals of LAKEHOUSE_RESAMPLE_INTERVALS")
declare("LAKEHOUSE_CHART_MAX_SYMBOLS", "12", integer(0, 200), "charts attached per gold/features materialization")

# Funding.
declare("LAKEHOUSE_FUNDING_RATE_CAPS", None, rate_caps(),
        "|funding rate| bound of the WARN cap check: a bare number (default 0.03) and/or market:SYMBOL=cap")
declare("LAKEHOUSE_FUNDING_SENSOR_DAYS", "62", integer(1, 3660), "days funding_archive_sensor watches")
declare("LAKEHOUSE_FUNDING_DAILY_CRON", "20 0 * * *", cron(), "schedule of funding_daily (UTC)")

# REST gap-fill.
declare("LAKEHOUSE_REST_FILL", "1", flag(), "0/false/no/off = never call REST (gaps are still found and reported)")
declare("LAKEHOUSE_REST_URL", None, url("http", "https"),
        "replaces scheme://host of every REST endpoint (a mirror, a local stand-in)", show=_show_url)
declare("LAKEHOUSE_REST_URL_SPOT", None, url("http", "https"), "like LAKEHOUSE_REST_URL, spot only", show=_show_url)
declare("LAKEHOUSE_REST_URL_UM", None, url("http", "https"), "like LAKEHOUSE_REST_URL, USD-M only", show=_show_url)
declare("LAKEHOUSE_REST_URL_CM", None, url("http", "https"), "like LAKEHOUSE_REST_URL, COIN-M only", show=_show_url)
declare("LAKEHOUSE_REST_EXCHANGE_SPOT", "binance", exchange_id(), "ccxt exchange id for spot")
declare("LAKEHOUSE_REST_EXCHANGE_UM", "binanceusdm", exchange_id(), "ccxt exchange id for USD-M futures")
declare("LAKEHOUSE_REST_EXCHANGE_CM", "binancecoinm", exchange_id(), "ccxt exchange id for COIN-M futures")
declare("LAKEHOUSE_REST_KLINE_API", "auto", choice("auto", "ohlcv"),
        "auto (raw kline endpoints on Binance-family exchanges) or ohlcv (always fetch_ohlcv)")
declare("LAKEHOUSE_REST_PAGE_LIMIT", "1000", integer(1, 1500),
        "candles per REST request (Binance max: spot 1000, futures 1500)")
declare("LAKEHOUSE_REST_WEIGHT_LIMITS", "spot=6000,um=2400,cm=2400", weight_limits(),
        "request-weight limit per minute and IP of each market's REST host (exchangeInfo rateLimits REQUEST_WEIGHT)")
declare("LAKEHOUSE_REST_WEIGHT_BUDGET", "0.8", number(0, 1, low_open=True),
        "share of each limit that all runs of this machine together may use; past it every process waits "
        "for the next minute")

# Sensors, schedules, automation, alerts.
declare("LAKEHOUSE_ARCHIVE_SENSOR_DAYS", "3", integer(1, 366), "days klines_archive_sensor watches")
declare("LAKEHOUSE_ARCHIVE_SENSOR_INTERVAL_SECONDS", "600", integer(30, 86400, unit="seconds"),
        "minimum interval between archive sensor ticks")
declare("LAKEHOUSE_AUTOMATION_LOOKBACK_DAYS", "62", integer(1, 3660),
        "days within which lakehouse_automation re-materializes partitions whose inputs changed")
declare("LAKEHOUSE_DAILY_CRON", "15 0 * * *", cron(), "schedule of lakehouse_daily (UTC)")
declare("LAKEHOUSE_TODAY_CRON", "5 * * * *", cron(), "schedule of lakehouse_today (UTC)")
declare("LAKEHOUSE_EXCHANGE_INFO_CRON", "10 0 * * *", cron(),
        "schedule of exchange_info_daily (UTC): today's bronze/exchange_info, the exchange's instrument lists")
declare("LAKEHOUSE_FRESHNESS_MAX_AGE_HOURS", "36", number(0, 8760, low_open=True, unit="hours"),
        "freshness check: WARN when an instrument's newest candle is older")
declare("LAKEHOUSE_ALERT_WEBHOOK_URL", None, url("https", "http"),
        "run-failure alerts are POSTed here (Slack/Mattermost/Teams); unset = logged only", show=_show_webhook)
declare("LAKEHOUSE_UI_URL", None, url("http", "https"), "base URL of the Dagster UI, for links in alerts", show=_show_url)


def _check_feature_intervals(values: Mapping[str, Value]) -> list[str]:
    features, resampled = values["LAKEHOUSE_FEATURE_INTERVALS"], values["LAKEHOUSE_RESAMPLE_INTERVALS"]
    not_built = [i for i in features.value if i != "1m" and i not in resampled.value]
    if not not_built:
        return []
    return [
        features.setting.problem(
            features.raw or "",
            f"{', '.join(not_built)} not built by gold/klines_resampled; expected 1m or intervals listed in "
            f"LAKEHOUSE_RESAMPLE_INTERVALS ({','.join(resampled.value)})",
        )
    ]


def _check_run_memory(values: Mapping[str, Value]) -> list[str]:
    """The gap-fill and gold hold one instrument over the whole run at once: the budget must allow that."""
    budget, days = values["LAKEHOUSE_RUN_MEMORY_MIB"], values["LAKEHOUSE_DAYS_PER_RUN"]
    needed = min_budget_for_run(days.value)
    if budget.value >= needed:
        return []
    return [
        budget.setting.problem(
            budget.raw or str(budget.value),
            f"below the {needed} MiB that one instrument over LAKEHOUSE_DAYS_PER_RUN={days.value} days needs in "
            f"the gap-fill and gold (they never cut an instrument's days); raise it, or set "
            f"LAKEHOUSE_DAYS_PER_RUN to {max_days_for_budget(budget.value)} or fewer",
        )
    ]


#: Rules across settings: run only when each setting involved is valid on its own.
CROSS_CHECKS: list[tuple[tuple[str, ...], Callable[[Mapping[str, Value]], list[str]]]] = [
    (("LAKEHOUSE_FEATURE_INTERVALS", "LAKEHOUSE_RESAMPLE_INTERVALS"), _check_feature_intervals),
    (("LAKEHOUSE_RUN_MEMORY_MIB", "LAKEHOUSE_DAYS_PER_RUN"), _check_run_memory),
]


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Value:
    setting: Setting
    raw: str | None  # the text as set (None: unset); "" when set but empty
    value: Any  # parsed; None when invalid
    source: str  # env | .env | default
    error: str | None = None

    @property
    def shown(self) -> str:
        """The effective value as it may be printed (credentials redacted); '<unset>' for no value."""
        if self.error:  # what was set, not the default it does not fall back to
            text = (self.raw or "").strip()
            return self.setting.show(text) if text else "''"
        text = self.raw if self.raw is not None and self.raw.strip() else self.setting.default
        return "<unset>" if text is None else self.setting.show(text.strip())


class Settings:
    """One consistent reading of every setting: value, source and problem of each."""

    def __init__(self, values: dict[str, Value], errors: list[str]) -> None:
        self.values = values
        self.errors = errors

    def __getitem__(self, name: str) -> Any:
        entry = self.values[name]
        if entry.error:
            raise ConfigError([entry.error])
        return entry.value

    def source(self, name: str) -> str:
        return self.values[name].source

    def is_set(self, name: str) -> bool:
        """True when the value comes from the environment or .env (not the default)."""
        return self.values[name].source != SOURCE_DEFAULT

    def raise_if_invalid(self) -> Settings:
        if self.errors:
            raise ConfigError(self.errors)
        return self


_DOTENV_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*")


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=value`` lines the way python-dotenv reads them for plain files (comments, quotes, ``export``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _DOTENV_LINE.fullmatch(line)
        if not match:
            continue
        key, value = match.groups()
        if value[:1] in ("'", '"') and value.find(value[0], 1) > 0:
            quote = value[0]
            value = value[1 : value.index(quote, 1)]
            if quote == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
        values[key] = value
    return values


def _resolve(setting: Setting, raw: str | None, source: str) -> Value:
    text = None if raw is None else raw.strip()
    if not text:
        if raw is not None and setting.empty_is_error:
            detail = (
                "is set but empty; expected a value (unset the variable to use the default"
                + (f" {setting.default!r})" if setting.default else ")")
            )
            if setting.name == "LAKEHOUSE_SYMBOLS":
                detail = (
                    "is set but empty; expected at least one market:SYMBOL, e.g. 'spot:BTCUSDT' (an empty universe "
                    "is not the default universe: unset the variable to use the default)"
                )
            return Value(setting, raw, None, source, setting.problem(raw, detail))
        return Value(setting, raw, setting.parse_default(), SOURCE_DEFAULT)
    try:
        return Value(setting, raw, setting.parse(text), source)
    except Invalid as exc:
        return Value(setting, raw, None, source, setting.problem(text, str(exc)))


def load(
    environ: Mapping[str, str] | None = None,
    *,
    dotenv_file: Path | None = None,
    dotenv_overrides: bool = False,
) -> Settings:
    """Read every setting from ``environ`` (default: ``os.environ``) and ``.env`` (default: ``./.env``).

    ``dotenv_overrides``: the ``.env`` values win, as when ``dagster dev`` loads the file (for the
    ``lakehouse`` command, which must see what the code location sees).
    """
    env = os.environ if environ is None else environ
    dotenv = read_dotenv(dotenv_file if dotenv_file is not None else Path.cwd() / ".env")
    values: dict[str, Value] = {}
    for name, setting in SETTINGS.items():
        if dotenv_overrides and name in dotenv:
            raw, source = dotenv[name], SOURCE_DOTENV
        elif name in env:
            raw = env[name]
            source = SOURCE_DOTENV if dotenv.get(name) == raw else SOURCE_ENV
        else:
            raw, source = None, SOURCE_DEFAULT
        values[name] = _resolve(setting, raw, source)
    errors = [v.error for v in values.values() if v.error]
    for names, check in CROSS_CHECKS:
        if all(not values[n].error for n in names):
            errors.extend(check(values))
    return Settings(values, errors)


def check(name: str, raw: str | None) -> Any:
    """Parse one value by the rule of setting ``name`` (e.g. a resource field), with the same message.

    Resources may be built in code (tests, notebooks) or resolved from ``EnvVar`` at run time, so
    they re-check their fields with this before use; ``raw=""`` counts as set-but-empty.
    """
    entry = _resolve(SETTINGS[name], raw, SOURCE_ENV)
    if entry.error:
        raise ConfigError([entry.error])
    return entry.value


def current() -> Settings:
    """The settings of this process, all valid, or ConfigError listing every problem."""
    return load().raise_if_invalid()


def get(name: str) -> Any:
    """One setting's parsed value; raises ConfigError if any setting is invalid (config is checked as a whole)."""
    return current()[name]
