"""The Dagster code location: ``dagster dev -w workspace.yaml`` and notebooks load ``defs`` from here."""

from __future__ import annotations

import dagster as dg

from lakehouse_assets.defs import bronze, jobs, silver
from lakehouse_assets.resources import default_resources

defs = dg.Definitions(
    assets=[bronze.klines_archive, silver.klines],
    jobs=[jobs.klines_job],
    resources=default_resources(),
)
