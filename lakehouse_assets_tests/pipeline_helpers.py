"""Shared helpers for tests that run bronze -> silver through Dagster on a temporary instance."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path
from typing import Any

import dagster as dg

from lakehouse_assets.defs.klines.bronze import klines_archive
from lakehouse_assets.defs.klines.silver import klines
from lakehouse_assets.lake.io_manager import HiveParquetIOManager, LakeResource, LakeS3Resource
from lakehouse_assets.defs.resources import BinanceArchiveResource, UniverseResource
from lakehouse_assets.defs.resources import GoldResource

ASSETS = [klines_archive, klines]
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def resources(storage: str, archive_url: str, symbols: str, s3_endpoint_url: str | None = None) -> dict[str, Any]:
    lake = LakeResource(storage=storage, s3=LakeS3Resource(endpoint_url=s3_endpoint_url))
    return {
        "lake": lake,
        "io_manager": HiveParquetIOManager(lake=lake),
        "archive": BinanceArchiveResource(base_url=archive_url, backoff_seconds=0.01, max_attempts=3),
        "universe": UniverseResource(symbols=symbols),
        "gold": GoldResource(),
    }


def definitions(res: dict[str, Any]) -> dg.Definitions:
    job = dg.define_asset_job("klines_job", selection=dg.AssetSelection.assets(*ASSETS))
    return dg.Definitions(assets=ASSETS, jobs=[job], resources=res)


def run_range(
    res: dict[str, Any],
    start: str,
    end: str,
    instance: dg.DagsterInstance,
    *,
    run_config: dict | None = None,
    tags: dict[str, str] | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    job = definitions(res).resolve_job_def("klines_job")
    return job.execute_in_process(
        instance=instance,
        run_config=run_config,
        tags={RANGE_START: start, RANGE_END: end, **(tags or {})},
        raise_on_error=raise_on_error,
    )


def copy_mirror(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rewrite_zip_csv(zip_path: Path, transform: Any, *, update_checksum: bool = True) -> None:
    """Rewrite the CSV inside a mirror zip (a deliberately damaged variant) and, optionally, its CHECKSUM."""
    with zipfile.ZipFile(zip_path) as zf:
        (member,) = zf.namelist()
        text = zf.read(member)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, transform(text))
    if update_checksum:
        write_checksum(zip_path)


def write_checksum(zip_path: Path, digest: str | None = None) -> None:
    digest = digest or hashlib.sha256(zip_path.read_bytes()).hexdigest()
    Path(str(zip_path) + ".CHECKSUM").write_text(f"{digest}  {zip_path.name}")


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        (e.step_failure_data.error.to_string() if e.step_failure_data and e.step_failure_data.error else e.message or "")
        for e in result.all_events
        if e.is_step_failure
    )


def run_gold(
    res: dict[str, Any],
    start: str,
    end: str | None,
    instance: dg.DagsterInstance,
    *,
    run_config: dict | None = None,
    tags: dict[str, str] | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """gold/klines_resampled + gold/features (silver/klines_filled must exist): one partition if ``end``
    is None, else [start, end] as one range run, the way a backfill run executes."""
    from lakehouse_assets.defs.klines.gapfill import klines_filled
    from lakehouse_assets.defs.klines.gold import features, klines_resampled
    from lakehouse_assets.defs.resources import BinanceRestResource

    gold_assets = [klines_resampled, features]
    job = dg.define_asset_job("gold_job", selection=dg.AssetSelection.assets(*gold_assets))
    # gold_job never runs klines_filled; it is in the graph as gold's input, and needs its resource key.
    res = {"binance_rest": BinanceRestResource(enabled=False), **res}
    defs = dg.Definitions(assets=[*ASSETS, klines_filled, *gold_assets], jobs=[job], resources=res)
    range_tags = {} if end is None else {RANGE_START: start, RANGE_END: end}
    return defs.resolve_job_def("gold_job").execute_in_process(
        instance=instance,
        run_config=run_config,
        partition_key=start if end is None else None,
        tags={**range_tags, **(tags or {})},
        raise_on_error=raise_on_error,
    )
