"""USD-M and COIN-M klines next to spot in silver/klines, through the real pipeline (bronze -> silver).

Real files: USD-M BTCUSDT 2022-05-04/05 (no header row), USD-M 2023-04-15 (header row), COIN-M
BTCUSD_PERP 2022-10-24/25 (header row; volume in contracts, the file's quote_volume in BTC).
Parser-level tests of the same files are in test_parse.py.
"""

from __future__ import annotations

import zipfile
from datetime import datetime

import polars as pl
import pytest

from lakehouse_assets.lake.sql import query
from lakehouse_assets.lake.store import LocalStore
from lakehouse_assets_tests.harness import resources, run_klines
from lakehouse_assets_tests.samples import DATA, utc


def test_usdm_without_header_and_coinm_land_side_by_side_with_correct_units(tmp_path, sample_mirror, instance):
    lake = tmp_path / "lake"
    res = resources(str(lake), sample_mirror.as_uri(), "spot:BTCUSDT,um:BTCUSDT,cm:BTCUSD_PERP")
    assert run_klines(res, "2022-05-04", "2022-05-05", instance).success  # um headerless; spot/cm have no file: 404s
    assert run_klines(res, "2022-10-24", "2022-10-25", instance).success  # cm with header

    store = LocalStore(lake)
    days = query(
        "select market, symbol, date, count(*) n, min(open_time) first, max(open_time) last from silver.klines "
        "group by all order by all",
        store=store,
    )
    assert days.select("market", "date", "n").rows() == [
        ("cm", datetime(2022, 10, 24).date(), 1440), ("cm", datetime(2022, 10, 25).date(), 1440),
        ("um", datetime(2022, 5, 4).date(), 1440), ("um", datetime(2022, 5, 5).date(), 1440),
    ]  # fmt: skip

    um = query("select * from silver.klines where market = 'um' order by open_time", store=store)
    first, last = um.row(0, named=True), um.row(-1, named=True)
    # file line 1: 1651622400000,37713.00,37717.60,37700.00,37706.40,136.957,…,5164158.02430,2197,79.349,2992024.20020,0
    assert (first["open_time"], first["open"], first["high"], first["low"], first["close"]) == (
        utc(2022, 5, 4), 37713.0, 37717.6, 37700.0, 37706.4,
    )  # fmt: skip
    assert (first["volume"], first["quote_volume"], first["trade_count"]) == (136.957, 5164158.0243, 2197)
    assert (first["taker_buy_volume"], first["taker_buy_quote_volume"]) == (79.349, 2992024.2002)
    assert (last["open_time"], last["close"], last["volume"]) == (utc(2022, 5, 5, 23, 59), 36534.7, 123.37)
    assert um["contract_volume"].null_count() == um.height  # USD-M volumes are already base asset

    cm = query("select * from silver.klines where market = 'cm' order by open_time", store=store)
    last_cm = cm.row(-1, named=True)
    # file last line: 1666742340000,20079.9,20083.5,20078.8,20078.8,9274,…,46.18420633,163,3126,15.56770119,0
    assert last_cm["open_time"] == utc(2022, 10, 25, 23, 59)
    assert (last_cm["contract_volume"], last_cm["volume"], last_cm["quote_volume"]) == (9274.0, 46.18420633, 927400.0)
    assert (last_cm["taker_buy_contract_volume"], last_cm["taker_buy_volume"], last_cm["taker_buy_quote_volume"]) == (
        3126.0, 15.56770119, 312600.0,
    )  # fmt: skip
    # Units check over both COIN-M days: USD notional / BTC volume is a price inside every bar's range.
    vwap = cm.filter(pl.col("volume") > 0).with_columns(p=pl.col("quote_volume") / pl.col("volume"))
    assert vwap.filter((pl.col("p") < pl.col("low") * 0.999) | (pl.col("p") > pl.col("high") * 1.001)).height == 0
    assert vwap.height > 2800

    # Day totals against the files themselves, read by plain Python: silver volume = the file's BTC column,
    # silver quote_volume = 100 USD x the file's contract column.
    contracts = btc = 0.0
    for day in ("2022-10-24", "2022-10-25"):
        path = DATA / f"futures/cm/daily/klines/BTCUSD_PERP/1m/BTCUSD_PERP-1m-{day}.zip"
        with zipfile.ZipFile(path) as archive:
            rows = [line.split(",") for line in archive.read(path.name[:-4] + ".csv").decode().splitlines()[1:]]
        contracts += sum(float(r[5]) for r in rows)
        btc += sum(float(r[7]) for r in rows)
    totals = query("select sum(volume) base, sum(quote_volume) usd, sum(contract_volume) c from silver.klines where market = 'cm'", store=store)
    assert totals["c"][0] == pytest.approx(contracts, rel=1e-12)
    assert totals["base"][0] == pytest.approx(btc, rel=1e-12)
    assert totals["usd"][0] == pytest.approx(contracts * 100, rel=1e-12)
