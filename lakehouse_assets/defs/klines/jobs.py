"""Jobs users launch from the UI (and the demo runs): bronze -> silver for a day or a range."""

from __future__ import annotations

import dagster as dg

klines_job = dg.define_asset_job(
    "klines_job",
    selection=dg.AssetSelection.groups("bronze", "silver"),
    description="Download the day's Binance 1m kline archives (bronze) and parse them into silver/klines.",
)
