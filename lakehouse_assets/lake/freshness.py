"""How old is the newest data of each instrument in a lake table? (the freshness check's logic)

Why per instrument, and from the data rather than from Dagster's records: a day can be
"materialized" with zero rows (the archive was not published yet), and one symbol can silently stop
updating while the others are fine. Reading the newest ``close_time`` of each configured instrument
in the newest few partitions answers the question users actually ask: "is ETHUSDT current?".
Only that column of at most ``scan_days`` × instruments files is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl

from lakehouse_assets.instruments import Instrument
from lakehouse_assets.lake.layout import instrument_file
from lakehouse_assets.lake.store import LakeStore

DEFAULT_MAX_AGE = timedelta(hours=36)


def newest_per_instrument(
    store: LakeStore,
    table: str,
    instruments: Sequence[Instrument],
    *,
    time_column: str = "close_time",
    scan_days: int = 4,
) -> dict[Instrument, tuple[str, datetime]]:
    """``{instrument: (partition day, newest time)}`` over the newest ``scan_days`` partitions."""
    days = sorted((d.removeprefix("date=") for d in store.list_dirs(table) if d.startswith("date=")), reverse=True)
    found: dict[Instrument, tuple[str, datetime]] = {}
    for day in days[:scan_days]:
        present = set(store.list_keys(f"{table}/date={day}"))
        for inst in instruments:
            if inst in found:
                continue
            key = f"{table}/date={day}/{instrument_file(inst.market, inst.symbol)}"
            if key not in present:
                continue
            newest = (
                pl.scan_parquet(store.uri(key), glob=False, storage_options=store.polars_storage_options)
                .select(pl.col(time_column).max())
                .collect()
                .item()
            )
            if newest is not None:
                found[inst] = (day, newest)
        if len(found) == len(instruments):
            break
    return found


def freshness_report(
    store: LakeStore,
    table: str,
    instruments: Sequence[Instrument],
    now: datetime,
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
    time_column: str = "close_time",
    scan_days: int | None = None,
) -> pl.DataFrame:
    """One row per instrument: newest data time, its age in hours, and whether it is stale."""
    scan = scan_days if scan_days is not None else max(2, int(max_age / timedelta(days=1)) + 2)
    found = newest_per_instrument(store, table, instruments, time_column=time_column, scan_days=scan)
    rows = []
    for inst in instruments:
        day, newest = found.get(inst, (None, None))
        age = None if newest is None else round((now - newest).total_seconds() / 3600, 2)
        rows.append(
            {
                "market": inst.market,
                "symbol": inst.symbol,
                "latest_partition": day,
                "newest_data": newest,
                "age_hours": age,
                "stale": newest is None or (now - newest) > max_age,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "market": pl.String,
            "symbol": pl.String,
            "latest_partition": pl.String,
            "newest_data": pl.Datetime("ms", "UTC"),
            "age_hours": pl.Float64,
            "stale": pl.Boolean,
        },
    )
