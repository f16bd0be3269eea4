"""The README's "Every setting" table lists exactly the variables settings.py declares, with their defaults."""

from __future__ import annotations

import re

from lakehouse_assets import settings
from lakehouse_assets_tests.samples import REPO

README = REPO / "README.md"


def _table_rows() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Every setting", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `(LAKEHOUSE_[A-Z0-9_]+)` \| ([^|]+) \|", section, flags=re.M)
    assert rows, "README has no '### Every setting' table"
    return {name: default.strip() for name, default in rows}


def test_readme_lists_exactly_the_declared_settings_with_their_defaults() -> None:
    rows = _table_rows()
    declared = {s.name: ("unset" if s.default is None else f"`{s.default}`") for s in settings.SETTINGS.values()}
    assert sorted(rows) == sorted(declared), (
        f"README only: {sorted(set(rows) - set(declared))}; settings.py only: {sorted(set(declared) - set(rows))}"
    )
    assert rows == declared


def test_every_lakehouse_variable_the_readme_mentions_exists() -> None:
    mentioned = set(re.findall(r"\bLAKEHOUSE_[A-Z0-9_]*[A-Z0-9]\b", README.read_text(encoding="utf-8")))
    # Deployment-only names (compose publishes, image tags, buckets, CI's Postgres) are not product settings.
    deploy_only = {"LAKEHOUSE_UI_PUBLISH", "LAKEHOUSE_IMAGE", "LAKEHOUSE_BUCKET", "LAKEHOUSE_TEST_POSTGRES_URL"}
    unknown = sorted(mentioned - set(settings.SETTINGS) - deploy_only)
    assert unknown == [], f"README mentions variables settings.py does not declare: {unknown}"
