"""Every asset key of the lakehouse, and the check names several modules share, each declared once.

Keys carry the UI history (materializations, check results, backfills): never rename one. Assets,
jobs, sensors, schedules and tests import them from here instead of spelling ``["silver", "klines"]``
again; ``operations/test_keys.py`` fails if a key is declared anywhere else.
"""

from __future__ import annotations

import dagster as dg

# --- klines: bronze -> silver -> gap-fill -> gold
BRONZE_KLINES = dg.AssetKey(["bronze", "klines_archive"])
SILVER_KLINES = dg.AssetKey(["silver", "klines"])
KLINES_FILLED = dg.AssetKey(["silver", "klines_filled"])
KLINE_GAPS = dg.AssetKey(["silver", "kline_gaps"])
GOLD_RESAMPLED = dg.AssetKey(["gold", "klines_resampled"])
GOLD_FEATURES = dg.AssetKey(["gold", "features"])

# --- funding: bronze -> silver -> gold (joined onto gold/features' bars)
BRONZE_FUNDING = dg.AssetKey(["bronze", "funding_archive"])
SILVER_FUNDING = dg.AssetKey(["silver", "funding_rates"])
GOLD_FUNDING = dg.AssetKey(["gold", "funding_features"])

# --- universe: the exchange's raw instrument lists (daily) and the instruments table (unpartitioned, slowly changing)
BRONZE_EXCHANGE_INFO = dg.AssetKey(["bronze", "exchange_info"])
SILVER_INSTRUMENTS = dg.AssetKey(["silver", "instruments"])

ALL_KEYS: tuple[dg.AssetKey, ...] = (
    BRONZE_KLINES,
    SILVER_KLINES,
    KLINES_FILLED,
    KLINE_GAPS,
    GOLD_RESAMPLED,
    GOLD_FEATURES,
    BRONZE_FUNDING,
    SILVER_FUNDING,
    GOLD_FUNDING,
    BRONZE_EXCHANGE_INFO,
    SILVER_INSTRUMENTS,
)

# --- check names used by more than one module (the asset's own module and the automation or tests)
COMPLETENESS_CHECK = "completeness"  # silver/klines and silver/klines_filled: WARN, missing minutes listed
FRESHNESS_CHECK = "freshness"  # silver/klines: WARN, newest candle older than LAKEHOUSE_FRESHNESS_MAX_AGE_HOURS
