"""Helpers for tests that run the funding assets through Dagster on a temporary instance."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from lakehouse_assets.defs.funding.bronze import funding_archive
from lakehouse_assets.defs.funding.gold import funding_features
from lakehouse_assets.defs.funding.silver import funding_rates
from lakehouse_assets.defs.common.partitions import daily_partitions
from lakehouse_assets.defs.resources import BinanceRestResource, FundingResource
from lakehouse_assets_tests.pipeline_helpers import ASSETS, RANGE_END, RANGE_START, resources

FUNDING_DIR = "data/futures/um/monthly/fundingRate/BTCUSDT"
MONTH_ZIP = "BTCUSDT-fundingRate-2026-04.zip"
FUNDING_ASSETS = [funding_archive, funding_rates]
# gold/features as seen from the funding side: only its partitioned Parquet in the lake (the tests write
# its bar keys themselves), so these tests do not depend on how gold/features is computed.
GOLD_FEATURES_SPEC = dg.AssetSpec(["gold", "features"], partitions_def=daily_partitions, metadata={"partition_expr": "open_time"})


def funding_resources(
    storage: str, archive_url: str, symbols: str, rest_url: str | None, *, rate_caps: str = "", rest_enabled: bool = True
) -> dict[str, Any]:
    res = resources(storage, archive_url, symbols)
    res["binance_rest"] = BinanceRestResource(
        enabled=rest_enabled,
        base_url=rest_url or "http://127.0.0.1:9",  # port 9 (discard): any REST call would fail loudly
        backoff_seconds=0.01,
        max_attempts=3,
        timeout_seconds=5,
        max_retry_wait_seconds=1,
    )
    res["funding"] = FundingResource(rate_caps=rate_caps)
    return res


def run_funding(
    res: dict[str, Any],
    start: str,
    end: str,
    instance: dg.DagsterInstance,
    *,
    run_config: dict | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """bronze/funding_archive + silver/funding_rates as one range run (what funding_job does)."""
    job = dg.define_asset_job("funding_test_job", selection=dg.AssetSelection.assets(*FUNDING_ASSETS))
    defs = dg.Definitions(assets=[*ASSETS, GOLD_FEATURES_SPEC, *FUNDING_ASSETS, funding_features], jobs=[job], resources=res)
    return defs.resolve_job_def("funding_test_job").execute_in_process(
        instance=instance,
        run_config=run_config,
        tags={RANGE_START: start, RANGE_END: end},
        raise_on_error=raise_on_error,
    )


def run_gold_funding(res: dict[str, Any], start: str, end: str, instance: dg.DagsterInstance, **kw: Any) -> dg.ExecuteInProcessResult:
    """Only gold/funding_features (its inputs must already be in the lake)."""
    job = dg.define_asset_job("funding_gold_job", selection=dg.AssetSelection.assets(funding_features))
    defs = dg.Definitions(assets=[*ASSETS, GOLD_FEATURES_SPEC, *FUNDING_ASSETS, funding_features], jobs=[job], resources=res)
    return defs.resolve_job_def("funding_gold_job").execute_in_process(
        instance=instance, tags={RANGE_START: start, RANGE_END: end}, **kw
    )


def mirror_without_funding(sample_mirror: Path, target: Path) -> Path:
    """A copy of the sample mirror where the monthly funding archive is not published (yet)."""
    shutil.copytree(sample_mirror, target)
    shutil.rmtree(target / FUNDING_DIR)
    return target


def publish_month(sample_mirror: Path, mirror: Path) -> None:
    """The monthly file (and its CHECKSUM) lands in the mirror, exactly as Binance published it."""
    (mirror / FUNDING_DIR).mkdir(parents=True, exist_ok=True)
    for name in (MONTH_ZIP, MONTH_ZIP + ".CHECKSUM"):
        shutil.copy2(sample_mirror / FUNDING_DIR / name, mirror / FUNDING_DIR / name)


def read_table(lake: Path, table: str) -> pl.DataFrame:
    files = sorted((lake / table).glob("date=*/*.parquet"))
    return pl.concat([pl.read_parquet(f).with_columns(date=pl.lit(f.parent.name[5:])) for f in files], how="diagonal_relaxed")


def check_outcomes(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
