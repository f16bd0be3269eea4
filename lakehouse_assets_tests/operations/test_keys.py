"""Each asset key is declared once (``defs/common/keys.py``), and the project defines exactly those keys."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg

from lakehouse_assets.defs.common import keys

PACKAGE = Path(keys.__file__).resolve().parents[2]  # lakehouse_assets/
# A key spelled out: AssetKey([...]) / AssetKey("...") or key=["layer", "name"].
KEY_LITERAL = re.compile(r"AssetKey\(\s*[\[\"']|\bkey\s*=\s*\[")


def test_every_asset_key_is_declared_only_in_keys_py():
    spelled_out = {
        str(path.relative_to(PACKAGE.parent)): [n for n, line in enumerate(path.read_text().splitlines(), 1) if KEY_LITERAL.search(line)]
        for path in PACKAGE.rglob("*.py")
        if path != Path(keys.__file__).resolve()
    }
    assert {path: lines for path, lines in spelled_out.items() if lines} == {}


def test_keys_py_declares_each_key_once_and_the_project_defines_exactly_them():
    declared = [value for name, value in vars(keys).items() if isinstance(value, dg.AssetKey)]
    assert len(declared) == len(set(declared)) == len(keys.ALL_KEYS)
    assert set(declared) == set(keys.ALL_KEYS)

    from lakehouse_assets.definitions import defs

    assert set(defs.resolve_asset_graph().get_all_asset_keys()) == set(keys.ALL_KEYS)


def test_jobs_select_by_key():
    from lakehouse_assets.definitions import defs

    repo = defs.get_repository_def()
    jobs = {
        "klines_job": {keys.BRONZE_KLINES, keys.SILVER_KLINES},
        "klines_filled_job": {keys.KLINES_FILLED, keys.KLINE_GAPS},
        "gold_job": {keys.GOLD_RESAMPLED, keys.GOLD_FEATURES},
        "funding_job": {keys.BRONZE_FUNDING, keys.SILVER_FUNDING},
    }
    for name, expected in jobs.items():
        assert set(repo.get_job(name).asset_layer.executable_asset_keys) == expected, name
    for path in (PACKAGE / "defs").rglob("*.py"):
        assert "AssetSelection.groups(" not in path.read_text(), path
