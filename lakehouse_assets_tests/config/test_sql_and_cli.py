"""The SQL layer and the `lakehouse` command over a small lake of real rows."""

from __future__ import annotations

import subprocess
import sys

from lakehouse_assets.cli import main
from lakehouse_assets.lake.layout import write_partitions
from lakehouse_assets.lake.sql import connect, tables
from lakehouse_assets.lake.store import LocalStore
from lakehouse_assets_tests.samples import real_rows


def make_lake(root):
    store = LocalStore(root)
    write_partitions(store, "silver/klines", real_rows("2020-01-01", n=3), days=["2020-01-01"], partition_column="open_time")
    (root / "bronze/binance/data").mkdir(parents=True)  # the raw mirror is not a table
    return store


def test_views_per_layer_and_utc(tmp_path):
    store = make_lake(tmp_path)
    assert tables(store) == ["silver.klines"]
    con = connect(store)
    assert con.execute("select current_setting('TimeZone')").fetchone()[0] == "UTC"
    row = con.execute("select strftime(min(open_time), '%Y-%m-%d %H:%M'), list(close order by open_time) from silver.klines").fetchone()
    assert row == ("2020-01-01 00:00", [7186.68, 7184.03, 7182.43])


def test_cli_query_prints_result(tmp_path, monkeypatch, capsys):
    make_lake(tmp_path)
    monkeypatch.setenv("LAKEHOUSE_STORAGE", str(tmp_path))
    assert main(["query", "select count(*) as n, max(close) as hi from silver.klines", "--format", "csv"]) == 0
    assert capsys.readouterr().out == "n,hi\n3,7186.68\n"
    assert main(["query", "select * from silver.nope"]) == 1
    assert "nope" in capsys.readouterr().err


def test_cli_entry_point_is_installed(tmp_path):
    make_lake(tmp_path)
    bin_dir = __import__("pathlib").Path(sys.executable).parent
    out = subprocess.run(
        [str(bin_dir / "lakehouse"), "tables"], capture_output=True, text=True, env={"LAKEHOUSE_STORAGE": str(tmp_path)}, check=True
    )
    assert out.stdout.strip() == "silver.klines"
