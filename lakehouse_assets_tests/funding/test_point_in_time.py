"""Funding with the point-in-time universe, on the real USD-M BTCUSDT 2026-04 funding month.

The silver/instruments table is SYNTHETIC (``universe/periods.py``): it pretends um:BTCUSDT was listed on
2026-04-10, and that um:ETHUSDT (no funding file bundled) was delisted before April 2026.
"""

from __future__ import annotations

from datetime import date

from lakehouse_assets.lake.sql import query
from lakehouse_assets.lake.store import LocalStore
from lakehouse_assets_tests.harness import check_outcomes, read_table, resources, run_funding
from lakehouse_assets_tests.universe.periods import instruments_table, period, write_instruments
from lakehouse_dev.fakes.funding_routes import add_funding_routes


def test_funding_skips_days_and_months_an_instrument_did_not_trade(tmp_path, archive_server, rest_server, instance):
    routes = add_funding_routes(rest_server)
    lake = tmp_path / "lake"
    write_instruments(lake, instruments_table(
        period("um:BTCUSDT", date(2026, 4, 10)), period("um:ETHUSDT", date(2019, 11, 27), date(2026, 3, 1)),
    ))  # fmt: skip
    res = resources(str(lake), archive_server.base_url, "um:BTCUSDT,um:ETHUSDT", rest_url=rest_server.base_url)
    result = run_funding(res, "2026-04-08", "2026-04-11", instance)
    assert result.success

    assert archive_server.count("GET", "ETHUSDT") == 0 and archive_server.count("HEAD", "ETHUSDT") == 0
    assert routes.requests() == []  # without the table ETHUSDT's unpublished month would be asked of REST
    manifest = read_table(lake, "bronze/funding_archive")
    assert sorted(manifest.select("symbol", "date").unique().rows()) == [("BTCUSDT", "2026-04-10"), ("BTCUSDT", "2026-04-11")]
    silver = query("select date, count(*) as n from silver.funding_rates group by date order by date", store=LocalStore(lake))
    assert silver.rows() == [(date(2026, 4, 10), 3), (date(2026, 4, 11), 3)]
    assert check_outcomes(result)["funding_count_per_day"] is True  # 04-08 and 04-09 miss nothing: not listed yet
