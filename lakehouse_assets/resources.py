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

_stores: dict[tuple[str, str | None], LakeStore] = {}
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

    def store(self) -> LakeStore:
        # One store (and one boto3 client) per process and setting: clients are thread-safe and costly to build.
        key = (self.storage, self.s3_endpoint_url or None)
        with _stores_lock:
            if key not in _stores:
                _stores[key] = open_store(self.storage, self.s3_endpoint_url)
            return _stores[key]


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


def default_resources() -> dict[str, Any]:
    from lakehouse_assets.io_manager import HiveParquetIOManager

    lake = LakeResource(
        storage=env_or("LAKEHOUSE_STORAGE", DEFAULT_STORAGE),
        s3_endpoint_url=env_or("LAKEHOUSE_S3_ENDPOINT_URL", None),
    )
    return {
        "lake": lake,
        "io_manager": HiveParquetIOManager(lake=lake),
        "archive": BinanceArchiveResource(base_url=env_or("LAKEHOUSE_ARCHIVE_URL", DEFAULT_ARCHIVE_URL)),
        "universe": UniverseResource(symbols=env_or("LAKEHOUSE_SYMBOLS", DEFAULT_SYMBOLS)),
    }
