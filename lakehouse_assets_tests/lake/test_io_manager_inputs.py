"""How assets read upstream through the IO manager: every day required (default) or days that may be missing.

The upstream table is real rows written with the lake's own writer; the downstream assets are small
probes that record what the IO manager handed them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from lakehouse_assets.lake.io_manager import (
    MISSING_KEY,
    MISSING_SKIP,
    HiveParquetIOManager,
    LakeResource,
    StoredDays,
)
from lakehouse_assets.lake.layout import write_partitions
from lakehouse_assets.lake.store import LocalStore
from lakehouse_assets_tests.harness import failure_text
from lakehouse_assets_tests.samples import real_rows

DAILY = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone="UTC", end_offset=0)
WITH_TODAY = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone="UTC", end_offset=1)
UPSTREAM = dg.AssetSpec(["silver", "t"], partitions_def=DAILY, metadata={"partition_expr": "open_time"})
LOOKBACK = dg.TimeWindowPartitionMapping(start_offset=-2, allow_nonexistent_upstream_partitions=True)
SKIP = {MISSING_KEY: MISSING_SKIP}

seen: dict[str, Any] = {}


@dg.asset(partitions_def=DAILY, ins={"up": dg.AssetIn(UPSTREAM.key, partition_mapping=LOOKBACK, metadata=SKIP)})
def skip_frame(up: pl.DataFrame | None) -> None:
    seen["value"] = up


@dg.asset(partitions_def=DAILY, ins={"up": dg.AssetIn(UPSTREAM.key, partition_mapping=LOOKBACK, metadata=SKIP)})
def skip_stored(up: StoredDays) -> None:
    seen["value"] = up


@dg.asset(partitions_def=DAILY, ins={"up": dg.AssetIn(UPSTREAM.key, partition_mapping=LOOKBACK)})
def strict(up: pl.LazyFrame) -> None:
    seen["value"] = up.collect()


@dg.asset(
    partitions_def=WITH_TODAY,
    ins={"up": dg.AssetIn(UPSTREAM.key, partition_mapping=dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True))},
)
def strict_with_today(up: pl.DataFrame | None) -> None:
    seen["value"] = up


def write_days(lake: Path, *days: str) -> None:
    for day in days:
        write_partitions(LocalStore(lake), "silver/t", real_rows(day, n=3), days=[day], partition_column="open_time")


def run(lake: Path, probe: dg.AssetsDefinition, day: str, **kw: Any) -> dg.ExecuteInProcessResult:
    # Deliberately not the harness: these probes (and silver/t) are assets built here to observe the IO
    # manager's input modes in isolation; the project's own assets read through it in every pipeline test.
    seen.clear()
    resources = {"io_manager": HiveParquetIOManager(lake=LakeResource(storage=str(lake)))}
    return dg.materialize([UPSTREAM, probe], selection=[probe], partition_key=day, resources=resources, **kw)


def test_skip_loads_the_days_present_and_no_error_for_absent_ones(tmp_path):
    write_days(tmp_path, "2020-01-01", "2020-01-03")  # 2020-01-02 never written
    assert run(tmp_path, skip_frame, "2020-01-03").success
    frame = seen["value"]
    assert sorted(frame["date"].unique().cast(pl.String)) == ["2020-01-01", "2020-01-03"]
    assert frame.height == 6

    assert run(tmp_path, skip_stored, "2020-01-03").success
    stored = seen["value"]
    assert (stored.present, stored.missing) == (("2020-01-01", "2020-01-03"), ("2020-01-02",))
    assert stored.frame.collect().height == 6


def test_skip_with_every_day_absent_is_an_empty_frame_of_the_table_schema(tmp_path):
    write_days(tmp_path, "2020-01-01")
    assert run(tmp_path, skip_frame, "2020-01-10").success  # window 2020-01-08..10: nothing stored
    frame = seen["value"]
    assert frame.is_empty()
    assert frame.schema == pl.read_parquet(next(tmp_path.glob("silver/t/date=2020-01-01/*.parquet"))).schema | {"date": pl.Date}

    assert run(tmp_path, skip_stored, "2020-01-10").success
    stored = seen["value"]
    assert stored.present == () and stored.missing == ("2020-01-08", "2020-01-09", "2020-01-10")
    assert stored.frame is not None and stored.frame.collect().is_empty()


def test_skip_on_a_table_never_written_is_none(tmp_path):
    assert run(tmp_path, skip_frame, "2020-01-10").success
    assert seen["value"] is None


def test_without_the_option_every_absent_day_fails_the_step_named_at_once(tmp_path):
    write_days(tmp_path, "2020-01-01")
    result = run(tmp_path, strict, "2020-01-03", raise_on_error=False)
    assert not result.success
    assert "silver/t has no data for 2 requested day(s): 2020-01-02, 2020-01-03 " in failure_text(result)

    write_days(tmp_path, "2020-01-02", "2020-01-03")
    assert run(tmp_path, strict, "2020-01-03").success
    assert seen["value"]["date"].unique().len() == 3


def test_a_window_whose_upstream_has_no_partition_loads_empty_not_an_error(tmp_path):
    """Today exists downstream (end_offset=1) but not upstream: the mapping leaves no upstream day."""
    today = datetime.now(UTC).date()
    if (datetime.now(UTC) + timedelta(seconds=30)).date() != today:
        pytest.skip("too close to midnight UTC")
    assert run(tmp_path, strict_with_today, today.isoformat()).success
    assert seen["value"] is None  # no table at all
    write_days(tmp_path, "2020-01-01")
    assert run(tmp_path, strict_with_today, today.isoformat()).success
    assert seen["value"].is_empty() and "close" in seen["value"].columns
