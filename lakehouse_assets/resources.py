"""Dagster resources: every setting comes from an environment variable (see README, Configuration)."""

from __future__ import annotations

import os
import threading
from typing import Any

import dagster as dg
from pydantic import Field

from lakehouse_assets.archive_client import ArchiveClient
from lakehouse_assets.instruments import DEFAULT_SYMBOLS, Instrument, parse_universe
from lakehouse_assets.lake_store import DEFAULT_STORAGE, LakeStore, open_store

DEFAULT_ARCHIVE_URL = "https://data.binance.vision"

_stores: dict[tuple[Any, ...], LakeStore] = {}
_stores_lock = threading.Lock()


def env_or(name: str, default: Any) -> Any:
    """``EnvVar(name)`` when the variable is set (the UI then shows where the value came from), else the default.

    Dagster's EnvVar refuses to resolve an unset variable, but every setting here has a sane default.
    """
    return dg.EnvVar(name) if os.environ.get(name) else default


class LakeResource(dg.ConfigurableResource):
    """Where the lake lives: a local directory (the embedded default) or ``s3://bucket/prefix``."""

    storage: str = Field(default=DEFAULT_STORAGE, description="LAKEHOUSE_STORAGE: local path or s3://bucket/prefix")
    s3_endpoint_url: str | None = Field(
        default=None, description="LAKEHOUSE_S3_ENDPOINT_URL: S3-compatible endpoint (MinIO, ...); unset = AWS"
    )

    s3_max_attempts: int | None = Field(
        default=None, description="LAKEHOUSE_S3_MAX_ATTEMPTS: attempts per S3 request (5xx, throttling, timeouts); unset = 8"
    )
    s3_timeout_seconds: int | None = Field(
        default=None, description="LAKEHOUSE_S3_TIMEOUT_SECONDS: S3 connect/read timeout; unset = 60"
    )

    def store(self) -> LakeStore:
        # One store (and one boto3 client) per process and setting: clients are thread-safe and costly to build.
        key = (self.storage, self.s3_endpoint_url or None, self.s3_max_attempts, self.s3_timeout_seconds)
        with _stores_lock:
            if key not in _stores:
                _stores[key] = open_store(
                    self.storage,
                    self.s3_endpoint_url,
                    s3_max_attempts=self.s3_max_attempts,
                    s3_timeout_seconds=self.s3_timeout_seconds,
                )
            return _stores[key]


class AlertWebhookResource(dg.ConfigurableResource):
    """Where run-failure alerts go: a webhook URL (Slack/Mattermost/Teams-style JSON POST); unset = log only."""

    url: str | None = Field(default=None, description="LAKEHOUSE_ALERT_WEBHOOK_URL")
    ui_url: str | None = Field(
        default=None, description="LAKEHOUSE_UI_URL: base URL of the Dagster UI, for links to the failed run"
    )


class BinanceArchiveResource(dg.ConfigurableResource):
    """The Binance public-data archive, or a mirror with the same layout (http(s):// or file://)."""

    base_url: str = Field(default=DEFAULT_ARCHIVE_URL, description="LAKEHOUSE_ARCHIVE_URL")
    timeout_seconds: float = 30.0
    max_attempts: int = 5
    backoff_seconds: float = 0.5
    max_workers: int = Field(default=8, description="parallel downloads within one run")

    def client(self) -> ArchiveClient:
        return ArchiveClient(
            self.base_url,
            timeout=self.timeout_seconds,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
        )


class UniverseResource(dg.ConfigurableResource):
    """The configured symbol universe, ``market:SYMBOL`` comma-separated (market: spot, um, cm)."""

    symbols: str = Field(default=DEFAULT_SYMBOLS, description="LAKEHOUSE_SYMBOLS")

    def instruments(self) -> list[Instrument]:
        return parse_universe(self.symbols)


def env_flag(name: str, default: bool) -> bool:
    """A yes/no environment variable: 0/false/no/off (any case) mean False, anything else set means True."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


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
    timeout_seconds: float = 10.0
    max_attempts: int = Field(default=5, description="attempts per request on 429/418/5xx/network errors")
    backoff_seconds: float = Field(default=1.0, description="first retry delay when the server sends no Retry-After (doubles)")
    max_retry_wait_seconds: float = Field(
        default=120.0, description="longest single wait; a 418 ban longer than this fails at once"
    )
    rate_limit_ms: int | None = Field(
        default=None, description="ccxt rateLimit (ms between request-weight units); unset = ccxt's value for the exchange"
    )

    def settings(self) -> Any:
        from lakehouse_assets.rest_klines import RestSettings

        per_market = {"spot": self.base_url_spot, "um": self.base_url_um, "cm": self.base_url_cm}
        return RestSettings(
            exchanges={"spot": self.exchange_spot, "um": self.exchange_um, "cm": self.exchange_cm},
            base_urls={market: url or self.base_url or None for market, url in per_market.items()},
            page_limit=self.page_limit,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
            max_retry_wait_seconds=self.max_retry_wait_seconds,
            rate_limit_ms=self.rate_limit_ms,
            kline_api=self.kline_api,
        )

    def client(self) -> Any:
        """A fresh ``rest_klines.RestKlinesClient`` (ccxt imported only when REST is actually used)."""
        from lakehouse_assets.rest_klines import RestKlinesClient

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
        from lakehouse_assets.funding_quality import parse_rate_caps

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
        page_limit=dg.EnvVar.int("LAKEHOUSE_REST_PAGE_LIMIT") if os.environ.get("LAKEHOUSE_REST_PAGE_LIMIT") else 1000,
    )


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
        from lakehouse_assets.resample import parse_intervals

        return parse_intervals(self.resample_intervals)

    def feature_list(self) -> list[str]:
        from lakehouse_assets.resample import parse_intervals

        return parse_intervals(self.feature_intervals, allow_source=True)


def default_resources() -> dict[str, Any]:
    from lakehouse_assets.io_manager import HiveParquetIOManager

    lake = LakeResource(
        storage=env_or("LAKEHOUSE_STORAGE", DEFAULT_STORAGE),
        s3_endpoint_url=env_or("LAKEHOUSE_S3_ENDPOINT_URL", None),
        s3_max_attempts=dg.EnvVar.int("LAKEHOUSE_S3_MAX_ATTEMPTS") if os.environ.get("LAKEHOUSE_S3_MAX_ATTEMPTS") else None,
        s3_timeout_seconds=(
            dg.EnvVar.int("LAKEHOUSE_S3_TIMEOUT_SECONDS") if os.environ.get("LAKEHOUSE_S3_TIMEOUT_SECONDS") else None
        ),
    )
    return {
        "lake": lake,
        "io_manager": HiveParquetIOManager(lake=lake),
        "archive": BinanceArchiveResource(base_url=env_or("LAKEHOUSE_ARCHIVE_URL", DEFAULT_ARCHIVE_URL)),
        "universe": UniverseResource(symbols=env_or("LAKEHOUSE_SYMBOLS", DEFAULT_SYMBOLS)),
        "gold": GoldResource(
            resample_intervals=env_or("LAKEHOUSE_RESAMPLE_INTERVALS", "5m,15m,1h,4h,1d"),
            feature_intervals=env_or("LAKEHOUSE_FEATURE_INTERVALS", "1m,1h,1d"),
            chart_max_symbols=(
                dg.EnvVar.int("LAKEHOUSE_CHART_MAX_SYMBOLS") if os.environ.get("LAKEHOUSE_CHART_MAX_SYMBOLS") else 12
            ),
        ),
        "funding": FundingResource(rate_caps=env_or("LAKEHOUSE_FUNDING_RATE_CAPS", "")),
        "alerts": AlertWebhookResource(
            url=env_or("LAKEHOUSE_ALERT_WEBHOOK_URL", None), ui_url=env_or("LAKEHOUSE_UI_URL", None)
        ),
        "binance_rest": rest_resource_from_env(),
    }
