"""Shared helpers for the gap-fill pipeline tests: resources with a REST stand-in, job runs, lake reads."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from lakehouse_assets.defs.klines.bronze import klines_archive
from lakehouse_assets.defs.klines.gapfill import klines_filled
from lakehouse_assets.defs.klines.silver import klines
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.defs.resources import BinanceRestResource
from lakehouse_assets_tests.pipeline_helpers import RANGE_END, RANGE_START, resources
from lakehouse_dev.fakes.rest_server import BinanceRestServer

SPOT = Instrument("spot", "BTCUSDT")
UM = Instrument("um", "BTCUSDT")
CM = Instrument("cm", "BTCUSD_PERP")
FILLED = "silver/klines_filled"
GAPS = "silver/kline_gaps"


def gapfill_resources(lake: Path, archive_url: str, symbols: str, rest: BinanceRestServer, **rest_options: Any) -> dict:
    res = resources(str(lake), archive_url, symbols)
    options: dict[str, Any] = {"base_url": rest.base_url, "backoff_seconds": 0.01, "max_attempts": 3, **rest_options}
    res["binance_rest"] = BinanceRestResource(**options)
    return res


def run_gapfill(
    res: dict, start: str, end: str, instance: dg.DagsterInstance, *, run_config: dict | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    job = dg.define_asset_job("klines_filled_job", selection=dg.AssetSelection.assets(klines_filled))
    defs = dg.Definitions(assets=[klines_archive, klines, klines_filled], jobs=[job], resources=res)
    tags = {RANGE_START: start, RANGE_END: end} if start != end else {}
    return defs.resolve_job_def("klines_filled_job").execute_in_process(
        instance=instance, run_config=run_config, tags=tags, partition_key=None if tags else start,
        raise_on_error=raise_on_error,
    )


def gapfill_config(**config: Any) -> dict:
    return {"ops": {"klines_filled": {"config": config}}}


def table(lake: Path, name: str, day: str) -> pl.DataFrame:
    files = sorted((lake / name / f"date={day}").glob("*.parquet"))
    assert files, f"{name} has no partition {day}"
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical")


def remove_minutes(start: datetime, end: datetime) -> Any:
    lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)

    def transform(text: bytes) -> bytes:
        kept = [
            line for line in text.splitlines(keepends=True)
            if not line[:1].isdigit() or not lo <= int(line.split(b",")[0]) < hi
        ]
        return b"".join(kept)

    return transform


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
