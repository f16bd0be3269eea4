"""The code location's resources: their classes, and ``default_resources`` building them from settings.

Every setting comes from an environment variable (see README, Configuration). The variables, their
defaults and their rules live in ``settings.py``. ``default_resources`` checks all of them before
building anything, so a bad value stops the code location from loading with a message naming the
variable. Fields are passed as ``EnvVar`` when the variable is set (the UI then shows where a value
came from); resources built in code (tests, notebooks) are re-checked by the same rules where their
values are used, and a bad value fails the step at once, never retried.

The lake's own resources (``LakeResource`` with its dagster-aws ``LakeS3Resource``, and the IO
manager) live in ``lake/io_manager.py``, the storage layer's Dagster adapter; the SQL layer over the
lake is ``LakeDuckDBResource``, a dagster-duckdb ``DuckDBResource``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from lakehouse_assets import settings
from lakehouse_assets.archive.client import ArchiveClient
from lakehouse_assets.archive.listing import DEFAULT_LISTING_URL, ArchiveListing
from lakehouse_assets.archive.zip_limits import MIB, ZipLimits
from lakehouse_assets.defs.common.retries import checked
from lakehouse_assets.exchange.weight_budget import BudgetConfig, default_state_dir
from lakehouse_assets.instruments import DEFAULT_SYMBOLS, Instrument
from lakehouse_assets.klines.memory import DEFAULT_RUN_MEMORY_MIB
from lakehouse_assets.lake import sql
from lakehouse_assets.lake.chunks import MemoryModel
from lakehouse_assets.lake.io_manager import HiveParquetIOManager, LakeResource, LakeS3Resource
from lakehouse_assets.lake.store import DEFAULT_STORAGE
from lakehouse_assets.universe.instruments_table import DEFAULT_RELIST_GAP_DAYS
from lakehouse_assets.universe.lifecycle import (
    INSTRUMENTS_TABLE,
    DailyUniverse,
    UniverseError,
    resolve_days,
    resolve_instruments,
)
from lakehouse_assets.universe.selection import UniverseSpec

__all__ = [
    "AlertWebhookResource", "BinanceArchiveResource", "BinanceRestResource", "FundingResource", "GoldResource",
    "HiveParquetIOManager", "LakeDuckDBResource", "LakeResource", "LakeS3Resource", "RunMemoryResource",
    "UniverseResource",
    "checked", "default_resources", "env_flag", "env_or", "lake_resource_from_env", "rest_resource_from_env",
]

DEFAULT_ARCHIVE_URL = "https://data.binance.vision"


def env_or(name: str, default: Any) -> Any:
    """``EnvVar(name)`` when the variable is set (the UI then shows where the value came from), else the default.

    Dagster's EnvVar refuses to resolve an unset variable, but every setting here has a sane default.
    A setting declared in settings.py is checked by its rule first; EnvVar carries only text and
    integers, so a number or yes/no setting is passed as its parsed value, and so is a value with
    surrounding blanks (which the rule strips but EnvVar would not).
    """
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    if name not in settings.SETTINGS:
        return dg.EnvVar(name)
    value = settings.check(name, raw)
    if isinstance(value, bool) or isinstance(value, float):
        return value
    if raw != raw.strip():
        return value if isinstance(value, int) else raw.strip()
    return dg.EnvVar.int(name) if isinstance(value, int) else dg.EnvVar(name)


class AlertWebhookResource(dg.ConfigurableResource):
    """Where run-failure alerts go: a webhook URL (Slack/Mattermost/Teams-style JSON POST); unset = log only."""

    url: str | None = Field(default=None, description="LAKEHOUSE_ALERT_WEBHOOK_URL")
    ui_url: str | None = Field(
        default=None, description="LAKEHOUSE_UI_URL: base URL of the Dagster UI, for links to the failed run"
    )
    connect_timeout_seconds: float = Field(
        default=10.0, description="LAKEHOUSE_HTTP_CONNECT_TIMEOUT_SECONDS: TCP/TLS connect timeout per attempt"
    )
    timeout_seconds: float = Field(default=10.0, description="read timeout: longest silence within an answer")
    deadline_seconds: float = Field(
        default=15.0, description="LAKEHOUSE_ALERT_DEADLINE_SECONDS: total time per delivery attempt (3 attempts)"
    )


class BinanceArchiveResource(dg.ConfigurableResource):
    """The Binance public-data archive, or a mirror with the same layout (http(s):// or file://)."""

    base_url: str = Field(default=DEFAULT_ARCHIVE_URL, description="LAKEHOUSE_ARCHIVE_URL")
    timeout_seconds: float = Field(
        default=30.0, description="LAKEHOUSE_ARCHIVE_READ_TIMEOUT_SECONDS: longest silence within one download"
    )
    connect_timeout_seconds: float = Field(
        default=10.0, description="LAKEHOUSE_HTTP_CONNECT_TIMEOUT_SECONDS: TCP/TLS connect timeout"
    )
    deadline_seconds: float = Field(
        default=180.0,
        description="LAKEHOUSE_ARCHIVE_DEADLINE_SECONDS: total time for one transfer (zip, CHECKSUM or HEAD); "
        "an overrun is retried like a timeout",
    )
    max_attempts: int = 5
    backoff_seconds: float = 0.5
    max_workers: int = Field(
        default=8,
        description="LAKEHOUSE_ARCHIVE_CONCURRENCY: parallel downloads within one run, and the client's keep-alive "
        "connections per archive host (a hard cap: a download beyond it waits for a free connection)",
    )
    zip_max_member_mib: int = Field(
        default=256, description="LAKEHOUSE_ZIP_MAX_MEMBER_MIB: largest uncompressed size of one zip member"
    )
    zip_max_entries: int = Field(default=4, description="LAKEHOUSE_ZIP_MAX_ENTRIES: most entries a zip may list")
    listing_url: str = Field(
        default=DEFAULT_LISTING_URL,
        description="LAKEHOUSE_ARCHIVE_LISTING_URL: the bucket's S3 list API, or file:///path of a mirror (its tree)",
    )

    def resolved_listing_url(self) -> str:
        """``listing_url``; left at its default while ``base_url`` is a mirror, the mirror itself (a file://
        tree, or a stand-in answering the list API): downloads are never planned from another source's listing."""
        if self.listing_url == DEFAULT_LISTING_URL and self.base_url.rstrip("/") != DEFAULT_ARCHIVE_URL:
            return self.base_url
        return self.listing_url

    def listing(self) -> ArchiveListing:
        """The archive's bucket listing (same timeouts, deadline and attempts as the downloads)."""
        url = self.resolved_listing_url()
        checked("LAKEHOUSE_ARCHIVE_LISTING_URL", url)
        return ArchiveListing(
            url,
            timeout=self.timeout_seconds,
            connect_timeout=self.connect_timeout_seconds,
            deadline_seconds=self.deadline_seconds,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
        )

    def zip_limits(self) -> ZipLimits:
        """How far a stored archive zip may inflate when silver reads it (a bomb is refused, not inflated)."""
        return ZipLimits(max_member_bytes=self.zip_max_member_mib * MIB, max_entries=self.zip_max_entries)

    def client(self) -> ArchiveClient:
        checked("LAKEHOUSE_ARCHIVE_URL", self.base_url)
        checked("LAKEHOUSE_ARCHIVE_CONCURRENCY", str(self.max_workers))
        return ArchiveClient(
            self.base_url,
            timeout=self.timeout_seconds,
            connect_timeout=self.connect_timeout_seconds,
            deadline_seconds=self.deadline_seconds,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
            concurrency=self.max_workers,
        )


class UniverseResource(dg.ConfigurableResource):
    """The configured universe (``LAKEHOUSE_SYMBOLS``: exact ``market:SYMBOL`` entries, patterns such as
    ``um:*USDT``, exclusions such as ``!leveraged``; README "Choosing the universe"), point in time.

    Patterns, and the listing/delisting days of every instrument, come from ``silver/instruments`` in
    ``lake``; without that table (or without ``lake``) exact entries are expected every day, as before.
    """

    symbols: str = Field(default=DEFAULT_SYMBOLS, description="LAKEHOUSE_SYMBOLS")
    relist_gap_days: int = Field(
        default=DEFAULT_RELIST_GAP_DAYS,
        description="LAKEHOUSE_RELIST_GAP_DAYS: silver/instruments ends a trading period at a run of at least this "
        "many days without an archive file (shorter holes are missed files, not delistings)",
    )
    lake: LakeResource | None = Field(
        default=None,
        description="the lake holding silver/instruments (patterns, listing and delisting days); unset = no "
        "instruments table: exact entries only, each expected every day",
    )

    def spec(self) -> UniverseSpec:
        return checked("LAKEHOUSE_SYMBOLS", self.symbols)

    def table(self) -> pl.DataFrame | None:
        """silver/instruments as stored in the lake, None when absent (never materialized, or no lake)."""
        return None if self.lake is None else self.lake.read_table(INSTRUMENTS_TABLE)

    def _failure(self, exc: UniverseError) -> dg.Failure:
        return dg.Failure(description=f"LAKEHOUSE_SYMBOLS={self.symbols.strip()!r}: {exc}", allow_retries=False)

    def instruments(self) -> list[Instrument]:
        """Every instrument of the universe, whatever the day (exact entries need no table)."""
        spec = self.spec()
        try:
            return resolve_instruments(spec, None if spec.is_exact else self.table())
        except UniverseError as exc:
            raise self._failure(exc) from exc

    def daily(self, days: Sequence[date]) -> DailyUniverse:
        """Which instruments are expected on each of ``days``, and why the others are not (one table read)."""
        spec = self.spec()
        try:
            return resolve_days(spec, self.table(), days)
        except UniverseError as exc:
            raise self._failure(exc) from exc


def env_flag(name: str, default: bool) -> bool:
    """A yes/no environment variable: 1/0, true/false, yes/no, on/off (any case); anything else is an error."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    return bool(settings.check(name, value))


class BinanceRestResource(dg.ConfigurableResource):
    """Exchange REST APIs, through ccxt, that fill the archive's gaps (silver/klines_filled).

    Binance spot / USD-M / COIN-M by default; each market's ccxt exchange id and base URL can be
    replaced (a mirror, a local stand-in, another ccxt exchange). See README, "Gap-fill".
    """

    enabled: bool = Field(
        default=True, description="LAKEHOUSE_REST_FILL: 0/false/off = never call REST (gaps are still found and reported)"
    )
    base_url: str | None = Field(
        default=None,
        description="LAKEHOUSE_REST_URL: replaces scheme://host of every REST endpoint (paths kept), e.g. a mirror "
        "or a local stand-in; unset = the exchange's own hosts",
    )
    base_url_spot: str | None = Field(default=None, description="LAKEHOUSE_REST_URL_SPOT: like LAKEHOUSE_REST_URL, spot only")
    base_url_um: str | None = Field(default=None, description="LAKEHOUSE_REST_URL_UM: like LAKEHOUSE_REST_URL, USD-M only")
    base_url_cm: str | None = Field(default=None, description="LAKEHOUSE_REST_URL_CM: like LAKEHOUSE_REST_URL, COIN-M only")
    exchange_spot: str = Field(default="binance", description="LAKEHOUSE_REST_EXCHANGE_SPOT: ccxt exchange id for spot")
    exchange_um: str = Field(default="binanceusdm", description="LAKEHOUSE_REST_EXCHANGE_UM: ccxt exchange id for USD-M")
    exchange_cm: str = Field(default="binancecoinm", description="LAKEHOUSE_REST_EXCHANGE_CM: ccxt exchange id for COIN-M")
    kline_api: str = Field(
        default="auto",
        description="LAKEHOUSE_REST_KLINE_API: 'auto' (Binance-family exchanges: raw kline endpoints with all 12 "
        "fields; others: fetch_ohlcv) or 'ohlcv' (always fetch_ohlcv; volume-detail columns stay null)",
    )
    page_limit: int = Field(default=1000, description="LAKEHOUSE_REST_PAGE_LIMIT: candles per request (Binance max: spot 1000, futures 1500)")
    timeout_seconds: float = Field(
        default=10.0, description="LAKEHOUSE_REST_READ_TIMEOUT_SECONDS: longest silence within one answer"
    )
    connect_timeout_seconds: float = Field(
        default=10.0, description="LAKEHOUSE_HTTP_CONNECT_TIMEOUT_SECONDS: TCP/TLS connect timeout"
    )
    deadline_seconds: float = Field(
        default=60.0,
        description="LAKEHOUSE_REST_DEADLINE_SECONDS: total time for one request (one page); an overrun is "
        "retried like a timeout",
    )
    max_attempts: int = Field(default=5, description="attempts per request on 429/418/5xx/network errors")
    backoff_seconds: float = Field(default=1.0, description="first retry delay when the server sends no Retry-After (doubles)")
    max_retry_wait_seconds: float = Field(
        default=120.0, description="longest single wait; a 418 ban longer than this fails at once"
    )
    rate_limit_ms: int | None = Field(
        default=None, description="ccxt rateLimit (ms between request-weight units); unset = ccxt's value for the exchange"
    )
    weight_limits: str = Field(
        default="spot=6000,um=2400,cm=2400",
        description="LAKEHOUSE_REST_WEIGHT_LIMITS: request-weight limit per minute and IP of each market's REST host",
    )
    weight_budget: float = Field(
        default=0.8,
        description="LAKEHOUSE_REST_WEIGHT_BUDGET: share of each limit all runs of this machine together may use "
        "(one budget per REST host, shared through file-locked state); past it every process waits for the next minute",
    )
    state_dir: str | None = Field(
        default=None,
        description="LAKEHOUSE_STATE_DIR: where the shared weight budget lives; unset = $DAGSTER_HOME/lakehouse_state "
        "(else a per-user temp directory)",
    )

    def settings(self) -> Any:
        from lakehouse_assets.klines.rest import RestSettings

        for name, value in (
            ("LAKEHOUSE_REST_URL", self.base_url),
            ("LAKEHOUSE_REST_URL_SPOT", self.base_url_spot),
            ("LAKEHOUSE_REST_URL_UM", self.base_url_um),
            ("LAKEHOUSE_REST_URL_CM", self.base_url_cm),
            ("LAKEHOUSE_REST_EXCHANGE_SPOT", self.exchange_spot),
            ("LAKEHOUSE_REST_EXCHANGE_UM", self.exchange_um),
            ("LAKEHOUSE_REST_EXCHANGE_CM", self.exchange_cm),
            ("LAKEHOUSE_REST_KLINE_API", self.kline_api),
            ("LAKEHOUSE_REST_PAGE_LIMIT", str(self.page_limit)),
            ("LAKEHOUSE_REST_WEIGHT_BUDGET", str(self.weight_budget)),
            ("LAKEHOUSE_STATE_DIR", self.state_dir),
        ):
            if value is not None:
                checked(name, value)
        per_market = {"spot": self.base_url_spot, "um": self.base_url_um, "cm": self.base_url_cm}
        budget = BudgetConfig(
            state_dir=Path(self.state_dir) if self.state_dir else default_state_dir(),
            limits=checked("LAKEHOUSE_REST_WEIGHT_LIMITS", self.weight_limits),
            fraction=self.weight_budget,
            max_block_seconds=self.max_retry_wait_seconds,
        )
        return RestSettings(
            exchanges={"spot": self.exchange_spot, "um": self.exchange_um, "cm": self.exchange_cm},
            base_urls={market: url or self.base_url or None for market, url in per_market.items()},
            page_limit=self.page_limit,
            timeout_seconds=self.timeout_seconds,
            connect_timeout_seconds=self.connect_timeout_seconds,
            deadline_seconds=self.deadline_seconds,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
            max_retry_wait_seconds=self.max_retry_wait_seconds,
            rate_limit_ms=self.rate_limit_ms,
            kline_api=self.kline_api,
            weight_budget=budget,
        )

    def client(self) -> Any:
        """A fresh ``klines.rest.RestKlinesClient`` (ccxt imported only when REST is actually used)."""
        from lakehouse_assets.klines.rest import RestKlinesClient

        return RestKlinesClient(self.settings())


class FundingResource(dg.ConfigurableResource):
    """Settings of the funding tables (see README, "Futures and funding")."""

    rate_caps: str = Field(
        default="",
        description="LAKEHOUSE_FUNDING_RATE_CAPS: |rate| bound per settlement for the WARN cap check; a bare number "
        "is the default (unset: 0.03), 'market:SYMBOL=cap' overrides, e.g. '0.03,um:BTCUSDT=0.003'",
    )

    chart_max_symbols: int = Field(default=12, description="funding charts attached per silver/funding_rates materialization")

    def caps(self) -> Any:
        from lakehouse_assets.funding.quality import parse_rate_caps

        checked("LAKEHOUSE_FUNDING_RATE_CAPS", self.rate_caps)
        return parse_rate_caps(self.rate_caps)


def rest_resource_from_env() -> BinanceRestResource:
    return BinanceRestResource(
        enabled=env_flag("LAKEHOUSE_REST_FILL", True),
        base_url=env_or("LAKEHOUSE_REST_URL", None),
        base_url_spot=env_or("LAKEHOUSE_REST_URL_SPOT", None),
        base_url_um=env_or("LAKEHOUSE_REST_URL_UM", None),
        base_url_cm=env_or("LAKEHOUSE_REST_URL_CM", None),
        exchange_spot=env_or("LAKEHOUSE_REST_EXCHANGE_SPOT", "binance"),
        exchange_um=env_or("LAKEHOUSE_REST_EXCHANGE_UM", "binanceusdm"),
        exchange_cm=env_or("LAKEHOUSE_REST_EXCHANGE_CM", "binancecoinm"),
        kline_api=env_or("LAKEHOUSE_REST_KLINE_API", "auto"),
        page_limit=env_or("LAKEHOUSE_REST_PAGE_LIMIT", 1000),
        timeout_seconds=env_or("LAKEHOUSE_REST_READ_TIMEOUT_SECONDS", 10.0),
        connect_timeout_seconds=env_or("LAKEHOUSE_HTTP_CONNECT_TIMEOUT_SECONDS", 10.0),
        deadline_seconds=env_or("LAKEHOUSE_REST_DEADLINE_SECONDS", 60.0),
        weight_limits=env_or("LAKEHOUSE_REST_WEIGHT_LIMITS", "spot=6000,um=2400,cm=2400"),
        weight_budget=env_or("LAKEHOUSE_REST_WEIGHT_BUDGET", 0.8),
        state_dir=env_or("LAKEHOUSE_STATE_DIR", None),
    )


class RunMemoryResource(dg.ConfigurableResource):
    """How much memory one run may use: steps cut their instrument-days into chunks that fit (README, Bounded memory)."""

    budget_mib: int = Field(
        default=DEFAULT_RUN_MEMORY_MIB,
        description="LAKEHOUSE_RUN_MEMORY_MIB: peak memory of one run; the chunk size of each step follows from it",
    )

    def capacity(self, model: MemoryModel) -> int:
        """Instrument-days per chunk for a step with this memory model (``klines/memory.py``)."""
        return model.capacity(checked("LAKEHOUSE_RUN_MEMORY_MIB", str(self.budget_mib)))


class GoldResource(dg.ConfigurableResource):
    """Which intervals the gold tables hold (see README, Gold tables)."""

    resample_intervals: str = Field(
        default="5m,15m,1h,4h,1d", description="LAKEHOUSE_RESAMPLE_INTERVALS: intervals of gold/klines_resampled"
    )
    feature_intervals: str = Field(
        default="1m,1h,1d", description="LAKEHOUSE_FEATURE_INTERVALS: intervals of gold/features (1m or resampled ones)"
    )
    chart_max_symbols: int = Field(
        default=12, description="LAKEHOUSE_CHART_MAX_SYMBOLS: charts attached per gold/features materialization"
    )

    def resample_list(self) -> list[str]:
        return checked("LAKEHOUSE_RESAMPLE_INTERVALS", self.resample_intervals)

    def feature_list(self) -> list[str]:
        return checked("LAKEHOUSE_FEATURE_INTERVALS", self.feature_intervals)


class LakeDuckDBResource(DuckDBResource):
    """DuckDB over the lake: every connection has one view per lake table (``silver.klines``, ...), in UTC.

    dagster-duckdb's ``DuckDBResource`` opens the connection (``database``: in memory by default, so
    no file lock can ever block a run or a notebook); ``lake.sql.attach_lake`` then creates the views,
    the same code ``lakehouse_assets.query()`` and ``lakehouse query`` run.
    """

    database: str = Field(
        default=":memory:",
        description="DuckDB database; ':memory:' (default) keeps no file, so readers never lock out a run",
    )
    lake: LakeResource

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with super().get_connection() as con:
            sql.attach_lake(con, self.lake.store())
            yield con

    def query(self, statement: str) -> pl.DataFrame:
        """Run SQL over the lake and return a Polars frame."""
        with self.get_connection() as con:
            return sql.run(con, statement, self.lake.store())

    def tables(self) -> list[str]:
        return sql.tables(self.lake.store())


def lake_resource_from_env() -> LakeResource:
    """The lake (and its S3 client) from LAKEHOUSE_STORAGE / LAKEHOUSE_S3_* / AWS_REGION / AWS_PROFILE."""
    return LakeResource(
        storage=env_or("LAKEHOUSE_STORAGE", DEFAULT_STORAGE),
        s3=LakeS3Resource(
            endpoint_url=env_or("LAKEHOUSE_S3_ENDPOINT_URL", None),
            max_attempts=env_or("LAKEHOUSE_S3_MAX_ATTEMPTS", 8),
            timeout_seconds=env_or("LAKEHOUSE_S3_TIMEOUT_SECONDS", 60),
            region_name=env_or("AWS_REGION", None),
            profile_name=env_or("AWS_PROFILE", None),
        ),
    )


def default_resources() -> dict[str, Any]:
    """The resources of the code location, from the environment; ConfigError lists every bad setting."""
    settings.current()  # all settings valid, or the code location does not load (the message names each one)
    lake = lake_resource_from_env()
    return {
        "lake": lake,
        "s3": lake.s3,  # the same object: the UI lists it, and shows the lake (and so every asset) using it
        "io_manager": HiveParquetIOManager(lake=lake),
        "duckdb": LakeDuckDBResource(lake=lake),
        "archive": BinanceArchiveResource(
            base_url=env_or("LAKEHOUSE_ARCHIVE_URL", DEFAULT_ARCHIVE_URL),
            timeout_seconds=env_or("LAKEHOUSE_ARCHIVE_READ_TIMEOUT_SECONDS", 30.0),
            connect_timeout_seconds=env_or("LAKEHOUSE_HTTP_CONNECT_TIMEOUT_SECONDS", 10.0),
            deadline_seconds=env_or("LAKEHOUSE_ARCHIVE_DEADLINE_SECONDS", 180.0),
            zip_max_member_mib=env_or("LAKEHOUSE_ZIP_MAX_MEMBER_MIB", 256),
            zip_max_entries=env_or("LAKEHOUSE_ZIP_MAX_ENTRIES", 4),
            max_workers=env_or("LAKEHOUSE_ARCHIVE_CONCURRENCY", 8),
            listing_url=env_or("LAKEHOUSE_ARCHIVE_LISTING_URL", DEFAULT_LISTING_URL),
        ),
        "universe": UniverseResource(
            symbols=env_or("LAKEHOUSE_SYMBOLS", DEFAULT_SYMBOLS),
            relist_gap_days=env_or("LAKEHOUSE_RELIST_GAP_DAYS", DEFAULT_RELIST_GAP_DAYS),
            lake=lake,
        ),
        "run_memory": RunMemoryResource(budget_mib=env_or("LAKEHOUSE_RUN_MEMORY_MIB", DEFAULT_RUN_MEMORY_MIB)),
        "gold": GoldResource(
            resample_intervals=env_or("LAKEHOUSE_RESAMPLE_INTERVALS", "5m,15m,1h,4h,1d"),
            feature_intervals=env_or("LAKEHOUSE_FEATURE_INTERVALS", "1m,1h,1d"),
            chart_max_symbols=env_or("LAKEHOUSE_CHART_MAX_SYMBOLS", 12),
        ),
        "funding": FundingResource(rate_caps=env_or("LAKEHOUSE_FUNDING_RATE_CAPS", "")),
        "alerts": AlertWebhookResource(
            url=env_or("LAKEHOUSE_ALERT_WEBHOOK_URL", None),
            ui_url=env_or("LAKEHOUSE_UI_URL", None),
            connect_timeout_seconds=env_or("LAKEHOUSE_HTTP_CONNECT_TIMEOUT_SECONDS", 10.0),
            deadline_seconds=env_or("LAKEHOUSE_ALERT_DEADLINE_SECONDS", 15.0),
        ),
        "binance_rest": rest_resource_from_env(),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=default_resources())
