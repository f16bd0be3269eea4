"""The demo's plan (lakehouse_dev/demo/sample.py) matches the bundled sample and the README."""

from __future__ import annotations

import re
from datetime import date, timedelta

from lakehouse_assets.instruments import parse_universe
from lakehouse_assets_tests import samples
from lakehouse_dev import REPO, SAMPLE_DATA
from lakehouse_dev.demo.sample import FUNDING, KLINES, START_DATE, UNIVERSE, offline_env


def _days(start: str, end: str) -> list[date]:
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _instruments_with_1m_file(day: date) -> set[str]:
    found = set()
    for inst in parse_universe(UNIVERSE):
        zip_path = SAMPLE_DATA / inst.daily_klines_path("1m", day)
        if zip_path.is_file() or zip_path.with_suffix(".csv").is_file():
            found.add(inst.key)
    return found


def test_each_demo_range_runs_with_exactly_the_instruments_the_sample_has_on_its_days() -> None:
    # a run's universe wider than the day's files would fail its completeness check (the UI turns orange)
    for r in KLINES:
        for day in _days(r.start, r.end):
            assert _instruments_with_1m_file(day) == set(r.symbols.split(",")), (r, day)


def test_the_funding_range_is_the_bundled_month() -> None:
    month = FUNDING.start[:7]
    assert FUNDING.end.startswith(month) and FUNDING.symbols == "um:BTCUSDT"
    assert (SAMPLE_DATA / f"data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-{month}.zip").is_file()


def test_sample_data_is_the_tests_data_folder() -> None:
    assert SAMPLE_DATA == samples.SAMPLE_DATA  # lakehouse_assets_tests/data/binance
    assert (SAMPLE_DATA / "PROVENANCE.md").is_file()


def test_the_readme_lists_the_offline_settings_the_demo_uses() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    table = dict(re.findall(r"^\| `(LAKEHOUSE_[A-Z_]+)` \| `([^`]*)` \|", section, flags=re.M))
    env = offline_env(str(REPO / "lakehouse_data"))
    assert {name: value.replace("<project>", str(REPO)) for name, value in table.items()} == env
    assert re.search(r"^dev-offline:", (REPO / "Makefile").read_text(), flags=re.M)
    assert env["LAKEHOUSE_START_DATE"] == START_DATE == KLINES[0].start
