"""``exchange_info_daily``: today's bronze/exchange_info, every day (ships RUNNING).

exchangeInfo can only be fetched for "now", so a day the schedule misses has no answer, ever: the
instrument history loses that day's resolution (the next answer still shows every listing and
delisting, one day later). 00:10 UTC runs before ``lakehouse_daily`` (00:15), so the day's parse of
COIN-M klines finds the newest contract sizes.
"""

from __future__ import annotations

import dagster as dg

from lakehouse_assets import settings
from lakehouse_assets.defs.common import sensors
from lakehouse_assets.defs.common.keys import BRONZE_EXCHANGE_INFO

EXCHANGE_INFO_CRON: str = settings.get("LAKEHOUSE_EXCHANGE_INFO_CRON")


@dg.schedule(
    name="exchange_info_daily",
    cron_schedule=EXCHANGE_INFO_CRON,
    execution_timezone="UTC",
    target=dg.AssetSelection.assets(BRONZE_EXCHANGE_INFO),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "00:10 UTC: fetches today's exchangeInfo of every market LAKEHOUSE_SYMBOLS names into bronze/exchange_info "
        "(the only day it can be fetched for). silver/instruments and the COIN-M contract sizes read it."
    ),
)
def exchange_info_daily(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return sensors.todays_partition_request(context, "exchange_info_daily")
