"""COIN-M contract sizes for the kline assets, read from the lake (``universe/contract_sizes.py``).

Shared by silver/klines (archive files) and silver/klines_filled (REST rows). A missing size fails the
step at once, naming the instrument and the asset to materialize (bronze/exchange_info): no retry can
produce one. A lake that cannot be read right now (an S3 outage) is retried like any storage failure.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from lakehouse_assets.defs.common.retries import is_transient, retry_requested
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.lake.io_manager import LakeResource
from lakehouse_assets.lake.store import LakeStorageError
from lakehouse_assets.universe.contract_sizes import MissingContractSizeError, lake_contract_sizes


def contract_sizes_or_fail(
    context: dg.AssetExecutionContext, lake: LakeResource, instruments: Iterable[Instrument]
) -> dict[Instrument, float]:
    """The USD size of each COIN-M instrument of ``instruments`` (an empty dict when there is none)."""
    try:
        sizes = lake_contract_sizes(lake.store(), instruments)
    except MissingContractSizeError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    except (LakeStorageError, OSError) as exc:
        if is_transient(exc):
            raise retry_requested(context.retry_number) from exc
        raise
    if sizes:
        context.log.info("COIN-M contract sizes (USD): " + ", ".join(f"{i.key}={s:g}" for i, s in sizes.items()))
    return sizes
