"""Issue 12's table-format evaluation: Delta Lake, Apache Iceberg and compacted Hive Parquet with a manifest,
measured on the same synthetic silver/klines lake, each beside the floor (the same SQL on ONE Parquet file).

The candidates are not project dependencies: run this with an interpreter that has them, from the repo root,
for example ``/work/tools/fmtvenv/bin/python -m lakehouse_dev.bench.table_formats --work /tmp/fmt``. Every
candidate is imported lazily; a missing one is reported and its steps are skipped, never faked.

Steps (``--steps``, all by default, results merged into ``<work>/results.json`` so steps can be re-run):
gen (daily Hive files + the floor file), delta, iceberg, hive (write daily, compact closed months, replace one
day), schema (evolution: add a column, refuse an incompatible one), queries, count (a whole new process),
s3 (moto on 127.0.0.1: writes, concurrent writers, reads), offline (DuckDB extensions, Spark jars).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from lakehouse_dev import REPO

START = date(2023, 1, 1)
SEED = 12
CANDIDATES = ("numpy", "polars", "duckdb", "pyarrow", "deltalake", "pyiceberg", "pyiceberg_core", "polars_iceberg", "moto", "boto3", "sqlalchemy")
ROW_GROUP = 1440  # one symbol-day of 1m bars: a one-day read of a compacted month touches one row group per file
TAIL_MONTH = 12  # the last month stays daily (recent days); closed months are compacted


# ---------------------------------------------------------------------------------------------- helpers


def available() -> dict[str, str | None]:
    """Version of each candidate package, or None when it cannot be imported."""
    out: dict[str, str | None] = {}
    for name in CANDIDATES:
        try:
            out[name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception:  # noqa: BLE001 - any import failure means "missing" here
            out[name] = None
    return out


def need(*names: str) -> str | None:
    missing = [n for n in names if available()[n] is None]
    return f"missing package(s): {', '.join(missing)}" if missing else None


def symbols(n: int) -> list[str]:
    return [f"S{i:03d}USDT" for i in range(n)]


def day_of(i: int) -> date:
    return START + timedelta(days=i)


def month_key(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    out = fn()
    return time.perf_counter() - began, out


def median_of_5(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Median wall seconds of 5 runs after 1 warm-up; returns the last result for cross-checking."""
    fn()
    runs = []
    out = None
    for _ in range(5):
        began = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs), out


def tree_stats(root: Path, suffix: str = ".parquet", exclude: tuple[str, ...] = ()) -> dict[str, int]:
    files = [p for p in root.rglob(f"*{suffix}") if p.is_file() and not any(x in p.parts for x in exclude)]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def gen_day(i: int, n_symbols: int) -> Any:
    """One day of 1m bars for every symbol in the silver schema, sorted by (symbol, open_time).

    Prices move on a 0.01 tick and volumes carry 5 decimals, like Binance's, so Parquet sizes are realistic.
    A pure function of (day, symbols): every format ingests exactly the same rows without keeping them.
    """
    import numpy as np
    import polars as pl

    from lakehouse_assets.klines.schema import SILVER_KLINES_SCHEMA

    rng = np.random.default_rng([SEED, i])
    ns, nm = n_symbols, 1440
    idx = np.arange(ns)
    base = (10.0 ** (1 + idx % 4)) * (1 + 0.2 * np.sin(i / 29 + idx))
    start = np.round(base, 2)[:, None]
    close = np.round(start * np.exp(np.cumsum(rng.normal(0, 0.0008, (ns, nm)), axis=1)), 2)
    open_ = np.concatenate([start, close[:, :-1]], axis=1)
    wick = np.abs(rng.normal(0, 0.0004, (ns, nm))) * close
    high = np.round(np.maximum(open_, close) + wick, 2)
    low = np.round(np.maximum(np.minimum(open_, close) - wick, 0.01), 2)
    volume = np.round(rng.gamma(2.0, 5.0, (ns, nm)), 5)
    taker = np.round(volume * rng.uniform(0.3, 0.7, (ns, nm)), 5)
    day_ms = int(datetime(day_of(i).year, day_of(i).month, day_of(i).day, tzinfo=UTC).timestamp() * 1000)
    open_ms = np.tile(day_ms + np.arange(nm, dtype=np.int64) * 60_000, ns)
    frame = pl.DataFrame(
        {
            "market": "spot",
            "symbol": np.repeat(np.array(symbols(ns)), nm),
            "interval": "1m",
            "open_time": open_ms,
            "close_time": open_ms + 59_999,
            "open": open_.ravel(), "high": high.ravel(), "low": low.ravel(), "close": close.ravel(),
            "volume": volume.ravel(),
            "quote_volume": np.round(volume * close, 8).ravel(),
            "trade_count": rng.poisson(50, (ns, nm)).astype(np.int64).ravel(),
            "taker_buy_volume": taker.ravel(),
            "taker_buy_quote_volume": np.round(taker * close, 8).ravel(),
            "source": "archive",
            "contract_volume": None,
            "taker_buy_contract_volume": None,
        }
    )
    return frame.with_columns(
        pl.from_epoch(pl.col("open_time"), "ms").dt.replace_time_zone("UTC"),
        pl.from_epoch(pl.col("close_time"), "ms").dt.replace_time_zone("UTC"),
    ).cast(SILVER_KLINES_SCHEMA)  # type: ignore[arg-type]


def to_arrow_us(frame: Any) -> Any:
    """Delta and Iceberg store timestamps in microseconds; the silver schema says milliseconds."""
    import polars as pl

    return frame.with_columns(pl.col("open_time", "close_time").dt.cast_time_unit("us")).to_arrow()


def write_tuned(table: Any, path: Path, row_group_size: int | None = None) -> int:
    """The project's writer settings (lake/layout.frame_to_parquet) plus a row-group size; atomic rename."""
    import pyarrow.parquet as pq

    delta = [f.name for f in table.schema if str(f.type).startswith(("int", "timestamp", "date"))]
    strings = [f.name for f in table.schema if str(f.type) in ("string", "large_string", "string_view")]
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, tmp, compression="zstd", compression_level=6, use_dictionary=strings or False,
                   column_encoding={n: "DELTA_BINARY_PACKED" for n in delta} or None, data_page_version="1.0",
                   write_statistics=True, row_group_size=row_group_size)
    os.replace(tmp, path)
    return path.stat().st_size


class Results:
    def __init__(self, work: Path) -> None:
        self.path = work / "results.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.path.write_text(json.dumps(self.data, indent=2, default=str))
        print(f"[{time.strftime('%H:%M:%S')}] {key}: {json.dumps(value, default=str)[:1500]}", flush=True)


# ------------------------------------------------------------------------------------------------- gen


def step_gen(work: Path, n_sym: int, n_days: int, res: Results) -> None:
    """The project's current layout (date=YYYY-MM-DD/spot-SYM.parquet, one file per day x symbol) and the floor."""
    import polars as pl
    import pyarrow.parquet as pq

    from lakehouse_assets.lake.layout import frame_to_parquet

    daily = work / "daily"
    shutil.rmtree(daily, ignore_errors=True)
    floor_path = work / "floor.parquet"
    writer = None
    gen_s = write_s = floor_s = 0.0
    pool = ThreadPoolExecutor(2)
    for i in range(n_days):
        t, frame = timed(lambda i=i: gen_day(i, n_sym))
        gen_s += t

        today = day_of(i)

        def write_one(args: tuple[str, Any], d: date = today) -> None:
            sym, part = args
            path = daily / f"date={d.isoformat()}" / f"spot-{sym}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(frame_to_parquet(part))

        began = time.perf_counter()
        list(pool.map(write_one, [(k[0], g) for k, g in frame.group_by("symbol", maintain_order=True)]))
        write_s += time.perf_counter() - began
        began = time.perf_counter()
        table = frame.to_arrow()
        if writer is None:
            writer = pq.ParquetWriter(floor_path, table.schema, compression="zstd", compression_level=6,
                                      use_dictionary=["market", "symbol", "interval", "source"], write_statistics=True,
                                      column_encoding={n: "DELTA_BINARY_PACKED" for n in ("open_time", "close_time", "trade_count")})
        writer.write_table(table, row_group_size=len(frame))  # one row group per day, all symbols
        floor_s += time.perf_counter() - began
    assert writer is not None
    writer.close()
    pool.shutdown()
    rows = pl.scan_parquet(floor_path).select(pl.len()).collect().item()
    res.put("gen", {"symbols": n_sym, "days": n_days, "rows": rows, "generate_s": gen_s,
                    "daily_write_s (project writer, 2 threads)": write_s, "floor_write_s": floor_s,
                    "daily_layout": tree_stats(daily), "floor": tree_stats(work, exclude=("daily",)) | {"files": 1,
                    "bytes": floor_path.stat().st_size}, "load": load_avg()})


def month_days(n_days: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i in range(n_days):
        out.setdefault(month_key(day_of(i)), []).append(i)
    return out


def closed_months(n_days: int) -> list[str]:
    months = list(month_days(n_days))
    return months[:-1]  # the last month stays daily, as recent days would


REPLACE_DAY = 165  # 2023-06-15: a day inside a compacted (closed) month
REPLACE_TAIL_DAY = 348  # 2023-12-15: a day of the daily tail


def replace_days(n_days: int) -> list[tuple[str, int]]:
    return [(k, i) for k, i in (("compacted_month", REPLACE_DAY), ("daily_tail", REPLACE_TAIL_DAY)) if i < n_days]


def bounds(d: date) -> tuple[datetime, datetime]:
    lo = datetime(d.year, d.month, d.day, tzinfo=UTC)
    return lo, lo + timedelta(days=1)


# ----------------------------------------------------------------------------------------------- delta


def step_delta(work: Path, n_sym: int, n_days: int, res: Results) -> None:
    from deltalake import DeltaTable, WriterProperties, write_deltalake

    path = work / "delta" / "klines"
    shutil.rmtree(path.parent, ignore_errors=True)
    wp = WriterProperties(compression="ZSTD", compression_level=6, max_row_group_size=ROW_GROUP)
    import polars as pl

    def day_arrow(i: int) -> Any:
        return to_arrow_us(gen_day(i, n_sym).with_columns(month=pl.lit(month_key(day_of(i)))))

    per_day = []
    for i in range(n_days):
        data = day_arrow(i)
        t, _ = timed(lambda data=data: write_deltalake(path, data, mode="append", partition_by=["month", "symbol"],
                                                       writer_properties=wp))
        per_day.append(t)
    dt = DeltaTable(path)
    res.put("delta.write_daily", {"total_s": sum(per_day), "median_day_s": statistics.median(per_day),
                                  "version": dt.version(), "data": tree_stats(path, exclude=("_delta_log",)),
                                  "log": tree_stats(path / "_delta_log", suffix=""), "load": load_avg()})
    # compaction of closed months, one commit each; month 1 also timed with z_order for comparison
    months = closed_months(n_days)
    comp = {}
    for m in months:
        t, metrics = timed(lambda m=m: DeltaTable(path).optimize.compact(partition_filters=[("month", "=", m)],
                                                                         writer_properties=wp))
        comp[m] = {"s": t, "added": metrics.get("numFilesAdded"), "removed": metrics.get("numFilesRemoved")}
    t_vac, removed = timed(lambda: DeltaTable(path).vacuum(retention_hours=0, enforce_retention_duration=False,
                                                           dry_run=False))
    one = next(iter(comp.values()))
    # compact bin-packs without sorting; z_order on open_time alone is the sort, timed on the first month again
    t_z, zm = timed(lambda: DeltaTable(path).optimize.z_order(["open_time"], partition_filters=[("month", "=", months[0])],
                                                                writer_properties=wp))
    fz = max((path / f"month={months[0]}" / f"symbol={symbols(n_sym)[0]}").glob("*.parquet"),
             key=lambda p: p.stat().st_mtime)  # the z-ordered file; the compacted one awaits vacuum
    zorder = {"s": t_z, "added": zm.get("numFilesAdded"), "removed": zm.get("numFilesRemoved")}
    f = next((path / f"month={months[min(1, len(months) - 1)]}" / f"symbol={symbols(n_sym)[0]}").glob("*.parquet"))
    sorted_ok = pl.read_parquet(f)["open_time"].is_sorted()
    zorder["file_sorted_by_open_time"] = pl.read_parquet(fz)["open_time"].is_sorted()
    if len(months) == 1:  # the month just z-ordered: both the compacted and the z-ordered file are still there
        sorted_ok = None
    in_file = pl.read_parquet_schema(f)
    res.put("delta.compact", {"per_month_s_median": statistics.median(v["s"] for v in comp.values()),
                              "first_month": one, "total_s": sum(v["s"] for v in comp.values()),
                              "vacuum_s": t_vac, "vacuum_removed_files": len(removed),
                              "compacted_file_sorted_by_open_time": sorted_ok, "z_order_open_time_first_month": zorder,
                              "partition_columns_in_file": [c for c in ("month", "symbol") if c in in_file],
                              "data_after": tree_stats(path, exclude=("_delta_log",)),
                              "log_after": tree_stats(path / "_delta_log", suffix=""), "load": load_avg()})
    # replace exactly one day, atomically, in a compacted month and in the daily tail
    for label, i in replace_days(n_days):
        lo, hi = bounds(day_of(i))
        pred = (f"month = '{month_key(day_of(i))}' AND open_time >= '{lo.isoformat()}' "
                f"AND open_time < '{hi.isoformat()}'")
        data = day_arrow(i)
        t, _ = timed(lambda data=data, pred=pred: write_deltalake(path, data, mode="overwrite", predicate=pred,
                                                                  writer_properties=wp))
        dt = DeltaTable(path)
        hist = dt.history(1)[0]
        om = hist.get("operationMetrics", {})
        lf = pl.scan_delta(dt)
        day_rows = lf.filter(pl.col("open_time").is_between(lo, hi, closed="left")).select(pl.len()).collect().item()
        total = lf.select(pl.len()).collect().item()
        res.put(f"delta.replace_day.{label}", {"s": t, "predicate": pred, "operation": hist.get("operation"),
                                               "files_added": om.get("num_added_files"),
                                               "files_removed": om.get("num_removed_files"),
                                               "rows_copied": om.get("num_copied_rows"),
                                               "day_rows_after": day_rows, "total_rows_after": total,
                                               "load": load_avg()})
    t_vac, removed = timed(lambda: DeltaTable(path).vacuum(retention_hours=0, enforce_retention_duration=False,
                                                           dry_run=False))
    res.put("delta.final", {"vacuum_s": t_vac, "vacuum_removed": len(removed), "version": DeltaTable(path).version(),
                            "data": tree_stats(path, exclude=("_delta_log",)),
                            "log": tree_stats(path / "_delta_log", suffix="")})


# --------------------------------------------------------------------------------------------- iceberg


def iceberg_catalog(work: Path, warehouse: str | None = None, props: dict[str, str] | None = None) -> Any:
    from pyiceberg.catalog.sql import SqlCatalog

    root = work / "iceberg"
    root.mkdir(parents=True, exist_ok=True)
    return SqlCatalog("bench", uri=f"sqlite:///{root / 'catalog.db'}",
                      warehouse=warehouse or (root / "warehouse").as_uri(), **(props or {}))


def iceberg_create(cat: Any, name: str, arrow_schema: Any) -> Any:
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform, MonthTransform

    try:
        cat.create_namespace("silver")
    except Exception:  # noqa: BLE001 - exists
        pass
    tbl = cat.create_table(f"silver.{name}", schema=arrow_schema, properties={
        "write.parquet.compression-codec": "zstd", "write.parquet.compression-level": "6",
        "write.parquet.row-group-limit": str(ROW_GROUP)})
    field_ids = {f.name: f.field_id for f in tbl.schema().fields}
    with tbl.update_spec() as spec:
        spec.add_field("open_time", MonthTransform(), "open_time_month")
        spec.add_field("symbol", IdentityTransform(), "symbol")
    del PartitionField, PartitionSpec, field_ids
    return cat.load_table(f"silver.{name}")


def day_filter(d: date) -> Any:
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    lo, hi = bounds(d)
    return And(GreaterThanOrEqual("open_time", lo.isoformat()), LessThan("open_time", hi.isoformat()))


def step_iceberg(work: Path, n_sym: int, n_days: int, res: Results) -> None:
    import polars as pl
    import pyarrow.compute as pc
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    shutil.rmtree(work / "iceberg", ignore_errors=True)
    cat = iceberg_catalog(work)
    first = to_arrow_us(gen_day(0, n_sym))
    tbl = iceberg_create(cat, "klines", first.schema)
    per_day = []
    for i in range(n_days):
        data = first if i == 0 else to_arrow_us(gen_day(i, n_sym))
        t, _ = timed(lambda data=data: tbl.append(data))
        per_day.append(t)
    wh = work / "iceberg" / "warehouse"
    res.put("iceberg.write_daily", {"total_s": sum(per_day), "median_day_s": statistics.median(per_day),
                                    "last_day_s": per_day[-1], "snapshots": len(tbl.metadata.snapshots),
                                    "data": tree_stats(wh, exclude=("metadata",)),
                                    "metadata": tree_stats(wh, suffix="", exclude=("data",)), "load": load_avg()})
    comp = {}
    for m in closed_months(n_days):
        y, mo = map(int, m.split("-"))
        lo = datetime(y, mo, 1, tzinfo=UTC)
        hi = datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=UTC)
        flt = And(GreaterThanOrEqual("open_time", lo.isoformat()), LessThan("open_time", hi.isoformat()))

        def compact(flt: Any = flt) -> dict[str, int]:
            t = cat.load_table("silver.klines")
            before = len(list(t.scan(row_filter=flt).plan_files()))
            data = t.scan(row_filter=flt).to_arrow()
            data = data.sort_by([("symbol", "ascending"), ("open_time", "ascending")])
            t.overwrite(data, overwrite_filter=flt)  # one commit: delete the month's files, add the compacted ones
            after = len(list(cat.load_table("silver.klines").scan(row_filter=flt).plan_files()))
            return {"files_before": before, "files_after": after, "rows": data.num_rows}

        t, out = timed(compact)
        comp[m] = {"s": t, **out}
    tbl = cat.load_table("silver.klines")
    t_exp, _ = timed(lambda: tbl.maintenance.expire_snapshots().older_than(datetime.now(UTC)).commit())
    tbl = cat.load_table("silver.klines")
    res.put("iceberg.compact", {"method": "scan(month).to_arrow() + overwrite(month filter): pyiceberg "
                                "0.12 has no rewrite_data_files",
                                "per_month_s_median": statistics.median(v["s"] for v in comp.values()),
                                "first_month": next(iter(comp.values())), "total_s": sum(v["s"] for v in comp.values()),
                                "expire_snapshots_s": t_exp, "snapshots_left": len(tbl.metadata.snapshots),
                                "data_on_disk_after_expire": tree_stats(wh, exclude=("metadata",)),
                                "data_live": len(tbl.inspect.files()),
                                "metadata_after": tree_stats(wh, suffix="", exclude=("data",)), "load": load_avg()})
    for label, i in replace_days(n_days):
        data = to_arrow_us(gen_day(i, n_sym))
        snap_before = tbl.current_snapshot().snapshot_id
        t, _ = timed(lambda data=data, i=i: cat.load_table("silver.klines").overwrite(
            data, overwrite_filter=day_filter(day_of(i))))
        tbl = cat.load_table("silver.klines")
        summaries = [s.summary.additional_properties | {"operation": s.summary.operation.value}
                     for s in tbl.metadata.snapshots if s.parent_snapshot_id is not None
                     and s.sequence_number > tbl.metadata.snapshot_by_id(snap_before).sequence_number]
        lo, hi = bounds(day_of(i))
        lf = pl.scan_iceberg(tbl)
        day_rows = lf.filter(pl.col("open_time").is_between(lo, hi, closed="left")).select(pl.len()).collect().item()
        total = lf.select(pl.len()).collect().item()
        res.put(f"iceberg.replace_day.{label}", {
            "s": t, "snapshots": [{k: s.get(k) for k in ("operation", "added-data-files", "deleted-data-files",
                                                         "added-records", "deleted-records")} for s in summaries],
            "day_rows_after": day_rows, "total_rows_after": total, "load": load_avg()})
    del pc
    res.put("iceberg.final", {"data_live": len(tbl.inspect.files()), "data_on_disk": tree_stats(wh, exclude=("metadata",)),
                              "metadata": tree_stats(wh, suffix="", exclude=("data",)),
                              "snapshots": len(tbl.metadata.snapshots)})


# ------------------------------------------------------------------------------------------------ hive


class Manifest:
    """What we would write ourselves: one Parquet file listing every live data file with its symbol and days.

    A commit writes the new list to a temporary name and renames it over ``_manifest.parquet`` (one atomic
    object replace, also on S3 as a single PUT); files it no longer lists are deleted later, so a reader holding
    the previous list never finds a file gone (the Delta/Iceberg "vacuum after retention" rule).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "_manifest.parquet"

    def read(self) -> Any:
        import polars as pl

        return pl.read_parquet(self.path)

    def commit(self, frame: Any) -> None:
        tmp = self.path.with_name(f"._manifest.{uuid.uuid4().hex}.tmp")
        frame.sort("path").write_parquet(tmp)
        os.replace(tmp, self.path)

    def paths(self, symbol: str | None = None, first: date | None = None, last: date | None = None) -> list[str]:
        import polars as pl

        m = self.read().lazy()
        if symbol is not None:
            m = m.filter(pl.col("symbol") == symbol)
        if first is not None:
            m = m.filter(pl.col("last_day") >= first)
        if last is not None:
            m = m.filter(pl.col("first_day") <= last)
        return [str(self.root / p) for p in m.select("path").collect()["path"]]


def step_hive(work: Path, n_sym: int, n_days: int, res: Results) -> None:
    import polars as pl

    root = work / "hive" / "klines"
    shutil.rmtree(root.parent, ignore_errors=True)
    root.mkdir(parents=True)
    src = work / "daily"
    man = Manifest(root)
    # daily writes: the project's own files, copied in (their write cost is gen's "daily_write_s")
    rows = []
    began = time.perf_counter()
    for i in range(n_days):
        d = day_of(i)
        for sym in symbols(n_sym):
            rel = f"date={d.isoformat()}/spot-{sym}.parquet"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(src / rel, root / rel)
            rows.append({"path": rel, "market": "spot", "symbol": sym, "first_day": d, "last_day": d, "rows": 1440,
                         "bytes": (root / rel).stat().st_size, "kind": "day"})
    man.commit(pl.DataFrame(rows))
    res.put("hive.write_daily", {"note": "daily files are the project's current writer output (gen step); "
                                 "this step hard-links them and builds the manifest",
                                 "manifest_s": time.perf_counter() - began, "data": tree_stats(root, exclude=())})

    def compact_month(m: str, n_threads: int = 2) -> dict[str, Any]:
        current = man.read()
        days = current.filter((pl.col("kind") == "day") & (pl.col("first_day").dt.strftime("%Y-%m") == m))
        new_rows = []

        def one(sym: str) -> dict[str, Any]:
            files = days.filter(pl.col("symbol") == sym)
            frame = pl.read_parquet([str(root / p) for p in files["path"]]).sort("open_time")
            rel = f"month={m}/symbol={sym}/part-{uuid.uuid4().hex[:12]}.parquet"
            size = write_tuned(frame.to_arrow(), root / rel, row_group_size=ROW_GROUP)
            return {"path": rel, "market": "spot", "symbol": sym, "first_day": files["first_day"].min(),
                    "last_day": files["last_day"].max(), "rows": frame.height, "bytes": size, "kind": "month"}

        with ThreadPoolExecutor(n_threads) as pool:
            new_rows = list(pool.map(one, days["symbol"].unique().sort().to_list()))
        man.commit(pl.concat([current.join(days.select("path"), on="path", how="anti"),
                              pl.DataFrame(new_rows).cast(current.schema)]))  # type: ignore[arg-type]
        for p in days["path"]:  # after the commit; a real lake would wait out readers' grace period
            (root / p).unlink()
        return {"files_before": days.height, "files_after": len(new_rows)}

    comp = {}
    for m in closed_months(n_days):
        t, out = timed(lambda m=m: compact_month(m))
        comp[m] = {"s": t, **out}
    for d in root.glob("date=*"):
        if not any(d.iterdir()):
            d.rmdir()
    res.put("hive.compact", {"per_month_s_median": statistics.median(v["s"] for v in comp.values()),
                             "first_month": next(iter(comp.values())), "total_s": sum(v["s"] for v in comp.values()),
                             "data_after": tree_stats(root, exclude=()), "manifest_bytes": man.path.stat().st_size,
                             "load": load_avg()})

    def replace_day(i: int) -> dict[str, Any]:
        d = day_of(i)
        new = gen_day(i, n_sym)
        current = man.read()
        hit = current.filter((pl.col("first_day") <= d) & (pl.col("last_day") >= d))
        new_rows = []
        for sym, part in new.group_by("symbol", maintain_order=True):
            old = hit.filter(pl.col("symbol") == sym[0])
            if old.height and old["kind"][0] == "month":
                lo, hi = bounds(d)
                keep = pl.read_parquet(str(root / old["path"][0])).filter(
                    ~pl.col("open_time").is_between(lo, hi, closed="left"))
                frame = pl.concat([keep, part]).sort("open_time")
                rel = f"month={month_key(d)}/symbol={sym[0]}/part-{uuid.uuid4().hex[:12]}.parquet"
                size = write_tuned(frame.to_arrow(), root / rel, row_group_size=ROW_GROUP)
                new_rows.append({**old.row(0, named=True), "path": rel, "rows": frame.height, "bytes": size})
            else:
                rel = f"date={d.isoformat()}/spot-{sym[0]}-{uuid.uuid4().hex[:8]}.parquet"
                size = write_tuned(part.to_arrow(), root / rel)
                new_rows.append({"path": rel, "market": "spot", "symbol": sym[0], "first_day": d, "last_day": d,
                                 "rows": part.height, "bytes": size, "kind": "day"})
        man.commit(pl.concat([current.join(hit.select("path"), on="path", how="anti"),
                              pl.DataFrame(new_rows).cast(current.schema)]))  # type: ignore[arg-type]
        for p in hit["path"]:
            (root / p).unlink()
        return {"files_removed": hit.height, "files_added": len(new_rows)}

    import duckdb

    for label, i in replace_days(n_days):
        t, out = timed(lambda i=i: replace_day(i))
        lo, hi = bounds(day_of(i))
        con = duckdb.connect()
        files = man.paths()
        day_rows = con.execute("select count(*) from read_parquet($f) where open_time >= $lo and open_time < $hi",
                               {"f": files, "lo": lo, "hi": hi}).fetchone()[0]  # type: ignore[index]
        total = con.execute("select count(*) from read_parquet($f)", {"f": files}).fetchone()[0]  # type: ignore[index]
        res.put(f"hive.replace_day.{label}", {"s": t, **out, "day_rows_after": day_rows, "total_rows_after": total,
                                              "load": load_avg()})
    res.put("hive.final", {"data": tree_stats(root, exclude=()), "manifest_rows": man.read().height,
                           "manifest_bytes": man.path.stat().st_size})


# ---------------------------------------------------------------------------------------------- schema


def step_schema(work: Path, res: Results) -> None:
    """Add a nullable column (allowed, explicitly) and write an incompatible type (must be refused)."""
    import polars as pl

    root = work / "schema"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    base = gen_day(0, 2).head(10)
    extra = base.with_columns(new_col=pl.lit(1.5))
    bad = base.with_columns(pl.col("close").cast(pl.String))
    out: dict[str, Any] = {}

    def attempt(fn: Callable[[], Any]) -> str:
        try:
            fn()
            return "ok"
        except Exception as e:  # noqa: BLE001 - the message is the result
            return f"REFUSED {type(e).__name__}: {str(e).splitlines()[0][:300]}"

    if need("deltalake") is None:
        from deltalake import DeltaTable, write_deltalake

        p = root / "delta"
        out["delta"] = {
            "create with ms timestamps (silver schema as is)": attempt(lambda: write_deltalake(p / "ms", base.to_arrow())),
            "create": attempt(lambda: write_deltalake(p / "t", to_arrow_us(base))),
            "append close as string": attempt(lambda: write_deltalake(p / "t", to_arrow_us(bad), mode="append")),
            "append close as string, schema_mode=merge": attempt(lambda: write_deltalake(p / "t", to_arrow_us(bad), mode="append", schema_mode="merge")),
            "append extra column, no schema_mode": attempt(lambda: write_deltalake(p / "t", to_arrow_us(extra), mode="append")),
            "append extra column, schema_mode=merge": attempt(lambda: write_deltalake(p / "t", to_arrow_us(extra), mode="append", schema_mode="merge")),
            "append without new_col after merge (old writer)": attempt(lambda: write_deltalake(p / "t", to_arrow_us(base), mode="append")),
        }
        t = pl.read_delta(str(p / "t"))
        out["delta"] |= {"columns_after": t.width, "rows_after": t.height, "close dtype after": str(t.schema["close"]),
                         "ms timestamps stored as": str(pl.read_delta(str(p / "ms")).schema["open_time"])}
        del DeltaTable
    if need("pyiceberg") is None:
        from pyiceberg.types import DoubleType, StringType

        cat = iceberg_catalog(root)
        out["iceberg"] = {"create with ms timestamps": attempt(lambda: iceberg_create(cat, "ms", base.to_arrow().schema).append(base.to_arrow()))}
        t = iceberg_create(cat, "t", to_arrow_us(base).schema)
        t.append(to_arrow_us(base))

        def add_col() -> None:
            with cat.load_table("silver.t").update_schema() as u:
                u.add_column("new_col", DoubleType())

        def change_type() -> None:
            with cat.load_table("silver.t").update_schema() as u:
                u.update_column("close", StringType())

        out["iceberg"] |= {
            "append extra column before schema update": attempt(lambda: cat.load_table("silver.t").append(to_arrow_us(extra))),
            "update_schema().add_column(new_col)": attempt(add_col),
            "append extra column after update": attempt(lambda: cat.load_table("silver.t").append(to_arrow_us(extra))),
            "append without new_col after update (old writer)": attempt(lambda: cat.load_table("silver.t").append(to_arrow_us(base))),
            "update_column(close, string)": attempt(change_type),
            "append close as string": attempt(lambda: cat.load_table("silver.t").append(to_arrow_us(bad))),
        }
    import duckdb

    h = root / "hive"
    h.mkdir()
    base.write_parquet(h / "a.parquet")
    extra.write_parquet(h / "b.parquet")
    bad.write_parquet(h / "c.parquet")
    con = duckdb.connect()
    out["hive+duckdb"] = {
        "read [base, extra column] without union_by_name": attempt(lambda: con.execute("select count(*) from read_parquet($f)", {"f": [str(h / "a.parquet"), str(h / "b.parquet")]}).fetchall()),
        "read [extra column, base] without union_by_name": attempt(lambda: con.execute("select count(*), sum(new_col) from read_parquet($f)", {"f": [str(h / "b.parquet"), str(h / "a.parquet")]}).fetchall()),
        "read [base, close as string]": attempt(lambda: con.execute("select sum(close) from read_parquet($f)", {"f": [str(h / "a.parquet"), str(h / "c.parquet")]}).fetchall()),
        "note": "no format-level enforcement: the writer's schema check (checks + versioned contract) must refuse",
    }
    res.put("schema", out)


# --------------------------------------------------------------------------------------------- queries

QUERY_SYMBOL = "S042USDT"
CROSS_DAY = date(2023, 6, 15)
TAIL_DAY = date(2023, 12, 14)

SQL = {
    "a_resample_symbol_year_1h": """
        select time_bucket(interval 1 hour, open_time) as hour, arg_min(open, open_time) as open, max(high) as high,
               min(low) as low, arg_max(close, open_time) as close, sum(volume) as volume,
               sum(trade_count) as trades, count(*) as n
        from {src} where symbol = '{sym}' group by hour order by hour""",
    # the same buckets from epoch arithmetic: DuckDB's time_bucket on TIMESTAMPTZ goes through ICU per row
    "a2_resample_epoch_bucket": """
        select epoch_ms(open_time) // 3600000 as hour, arg_min(open, open_time) as open, max(high) as high,
               min(low) as low, arg_max(close, open_time) as close, sum(volume) as volume,
               sum(trade_count) as trades, count(*) as n
        from {src} where symbol = '{sym}' group by hour order by hour""",
    "b_cross_section_day": "select * from {src} where open_time >= '{lo}' and open_time < '{hi}'",
    "b2_cross_section_tail_day": "select * from {src} where open_time >= '{lo2}' and open_time < '{hi2}'",
    "c_daily_close_all": """
        select symbol, time_bucket(interval 1 day, open_time) as day, arg_max(close, open_time) as close
        from {src} group by all order by all""",
    "c2_daily_close_epoch_bucket": """
        select symbol, epoch_ms(open_time) // 86400000 as day, arg_max(close, open_time) as close
        from {src} group by all order by all""",
}


def polars_queries() -> dict[str, Callable[[Any], Any]]:
    import polars as pl

    lo, hi = bounds(CROSS_DAY)
    lo2, hi2 = bounds(TAIL_DAY)
    return {
        "a_resample_symbol_year_1h": lambda lf: lf.filter(pl.col("symbol") == QUERY_SYMBOL)
        .group_by(hour=pl.col("open_time").dt.truncate("1h"))
        .agg(pl.col("open").sort_by("open_time").first(), pl.col("high").max(), pl.col("low").min(),
             pl.col("close").sort_by("open_time").last(), pl.col("volume").sum(), trades=pl.col("trade_count").sum(),
             n=pl.len()).sort("hour").collect(),
        "b_cross_section_day": lambda lf: lf.filter(pl.col("open_time").is_between(lo, hi, closed="left")).collect(),
        "b2_cross_section_tail_day": lambda lf: lf.filter(pl.col("open_time").is_between(lo2, hi2, closed="left")).collect(),
        "c_daily_close_all": lambda lf: lf.group_by("symbol", day=pl.col("open_time").dt.truncate("1d"))
        .agg(pl.col("close").sort_by("open_time").last()).sort("symbol", "day").collect(),
    }


def fingerprint(out: Any) -> list[Any]:
    """Rows and a column sum, so that every reader of every format is checked to return the same answer."""
    import polars as pl

    frame = out if isinstance(out, pl.DataFrame) else pl.from_arrow(out)
    return [frame.height, round(float(frame["close"].sum()), 2)]


def step_queries(work: Path, n_sym: int, res: Results, formats: list[str]) -> None:
    import duckdb
    import polars as pl

    lo, hi = bounds(CROSS_DAY)
    lo2, hi2 = bounds(TAIL_DAY)
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")
    global QUERY_SYMBOL
    QUERY_SYMBOL = symbols(n_sym)[min(42, n_sym - 1)]
    sym = QUERY_SYMBOL

    def duck(src_for: Callable[[str], str]) -> dict[str, Any]:
        out = {}
        for name, sql in SQL.items():
            q = lambda name=name, sql=sql: con.sql(sql.format(src=src_for(name), sym=sym, lo=lo, hi=hi, lo2=lo2,  # noqa: E731
                                                              hi2=hi2)).arrow().read_all()
            t, r = median_of_5(q)
            out[name] = {"s": t, "check": fingerprint(r)}
        return out

    def polars(lf_for: Callable[[str], Any]) -> dict[str, Any]:
        out = {}
        for name, fn in polars_queries().items():
            t, r = median_of_5(lambda name=name, fn=fn: fn(lf_for(name)))
            out[name] = {"s": t, "check": fingerprint(r)}
        return out

    results: dict[str, Any] = {"load_before": load_avg()}
    floor = str(work / "floor.parquet")
    results["floor.duckdb"] = duck(lambda _n: f"read_parquet('{floor}')")
    results["floor.polars"] = polars(lambda _n: pl.scan_parquet(floor))
    res.put("queries.floor", results)

    def scope(name: str) -> tuple[str | None, date | None, date | None]:
        """The pruning a catalog can do from its metadata for each query: (symbol, first day, last day)."""
        return {"a_resample_symbol_year_1h": (sym, None, None), "b_cross_section_day": (None, CROSS_DAY, CROSS_DAY),
                "b2_cross_section_tail_day": (None, TAIL_DAY, TAIL_DAY), "c_daily_close_all": (None, None, None),
                "a2_resample_epoch_bucket": (sym, None, None), "c2_daily_close_epoch_bucket": (None, None, None)}[name]

    if "hive" in formats:
        man = Manifest(work / "hive" / "klines")

        def hive_src(name: str) -> str:
            files = man.paths(*scope(name))
            return "read_parquet([" + ",".join(f"'{f}'" for f in files) + "], hive_partitioning = false)"

        out = {"hive.duckdb (manifest file list)": duck(hive_src),
               "hive.polars (manifest file list)": polars(lambda n: pl.scan_parquet(man.paths(*scope(n)),
                                                                                     hive_partitioning=False)),
               "load": load_avg()}
        res.put("queries.hive", out)
    if "delta" in formats and need("deltalake") is None:
        from deltalake import DeltaTable

        dt = DeltaTable(work / "delta" / "klines")

        def delta_files(name: str) -> list[str]:
            s, first, _last = scope(name)
            filters = []
            if s:
                filters.append(("symbol", "=", s))
            if first:
                filters.append(("month", "=", month_key(first)))
            return dt.file_uris(filters or None)

        def delta_src(name: str) -> str:
            return ("read_parquet([" + ",".join(f"'{f}'" for f in delta_files(name)) + "], hive_partitioning = true,"
                    " hive_types = {'month': VARCHAR, 'symbol': VARCHAR})")

        out = {"delta.polars scan_delta": polars(lambda _n: pl.scan_delta(dt)),
               "delta.duckdb (file_uris from the log, partition values from the path)": duck(delta_src),
               "load": load_avg()}
        res.put("queries.delta", out)
    if "iceberg" in formats and need("pyiceberg") is None:
        cat = iceberg_catalog(work)
        tbl = cat.load_table("silver.klines")

        def ice_files(name: str) -> list[str]:
            from pyiceberg.expressions import AlwaysTrue, And, EqualTo, GreaterThanOrEqual, LessThan

            s, first, last = scope(name)
            flt: Any = AlwaysTrue()
            if s:
                flt = EqualTo("symbol", s)
            if first and last:
                flt = And(GreaterThanOrEqual("open_time", bounds(first)[0].isoformat()),
                          LessThan("open_time", bounds(last)[1].isoformat()))
            return [t.file.file_path.removeprefix("file://") for t in tbl.scan(row_filter=flt).plan_files()]

        def ice_src(name: str) -> str:
            return "read_parquet([" + ",".join(f"'{f}'" for f in ice_files(name)) + "], hive_partitioning = false)"

        out = {"iceberg.polars scan_iceberg": polars(lambda _n: pl.scan_iceberg(tbl)),
               "iceberg.duckdb (plan_files from the catalog)": duck(ice_src), "load": load_avg()}
        res.put("queries.iceberg", out)


COUNT_SNIPPETS = {
    "floor.duckdb": "import duckdb; print(duckdb.sql(\"select count(*) from read_parquet('{work}/floor.parquet')\").fetchall()[0][0])",
    "hive.duckdb (manifest)": "import duckdb; c = duckdb.connect(); f = [r[0] for r in c.sql(\"select '{work}/hive/klines/' || path from '{work}/hive/klines/_manifest.parquet'\").fetchall()]; print(c.execute('select count(*) from read_parquet($f, hive_partitioning = false)', dict(f=f)).fetchone()[0])",
    "hive.polars (manifest)": "import polars as pl; m = pl.read_parquet('{work}/hive/klines/_manifest.parquet'); print(pl.scan_parquet(['{work}/hive/klines/' + p for p in m['path']], hive_partitioning=False).select(pl.len()).collect().item())",
    "hive.manifest rows column (metadata only)": "import polars as pl; print(pl.read_parquet('{work}/hive/klines/_manifest.parquet', columns=['rows'])['rows'].sum())",
    "delta.polars scan_delta": "import polars as pl; print(pl.scan_delta('{work}/delta/klines').select(pl.len()).collect().item())",
    "delta.duckdb (file_uris)": "import duckdb; from deltalake import DeltaTable; f = DeltaTable('{work}/delta/klines').file_uris(); print(duckdb.execute('select count(*) from read_parquet($f)', dict(f=f)).fetchone()[0])",
    "delta.log num_records (metadata only)": "from deltalake import DeltaTable; import pyarrow as pa; print(sum(pa.table(DeltaTable('{work}/delta/klines').get_add_actions(flatten=True))['num_records'].to_pylist()))",
    "iceberg.polars scan_iceberg": "import polars as pl; from pyiceberg.catalog.sql import SqlCatalog; c = SqlCatalog('bench', uri='sqlite:///{work}/iceberg/catalog.db', warehouse='file://{work}/iceberg/warehouse'); print(pl.scan_iceberg(c.load_table('silver.klines')).select(pl.len()).collect().item())",
    "iceberg.duckdb (plan_files)": "import duckdb; from pyiceberg.catalog.sql import SqlCatalog; c = SqlCatalog('bench', uri='sqlite:///{work}/iceberg/catalog.db', warehouse='file://{work}/iceberg/warehouse'); f = [t.file.file_path.removeprefix('file://') for t in c.load_table('silver.klines').scan().plan_files()]; print(duckdb.execute('select count(*) from read_parquet($f)', dict(f=f)).fetchone()[0])",
    "iceberg.snapshot summary total-records (metadata only)": "from pyiceberg.catalog.sql import SqlCatalog; c = SqlCatalog('bench', uri='sqlite:///{work}/iceberg/catalog.db', warehouse='file://{work}/iceberg/warehouse'); print(c.load_table('silver.klines').current_snapshot().summary['total-records'])",
}


def step_count(work: Path, res: Results, formats: list[str]) -> None:
    out: dict[str, Any] = {"python": sys.executable, "load_before": load_avg()}
    for name, code in COUNT_SNIPPETS.items():
        if name.split(".")[0] not in ("floor", *formats):
            continue
        cmd = [sys.executable, "-c", code.format(work=work)]
        runs, value, err = [], None, None
        for k in range(4):  # 1 warm-up (OS cache, .pyc) + 3
            began = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, cwd="/tmp")
            if k:
                runs.append(time.perf_counter() - began)
            if p.returncode:
                err = p.stderr.strip().splitlines()[-1][:300]
                break
            value = p.stdout.strip()
        out[name] = {"s": statistics.median(runs) if runs else None, "count": value, "error": err}
    res.put("count_new_process", out)


# ------------------------------------------------------------------------------------------------- s3


S3_WORKER = textwrap.dedent("""
    import json, sys, time
    kind, uri, endpoint, n, who = sys.argv[1:6]
    import polars as pl
    sys.path.insert(0, {repo!r})
    from lakehouse_dev.bench.table_formats import gen_day, to_arrow_us, S3_OPTS
    opts = S3_OPTS(endpoint)
    ok, errors = 0, []
    for k in range(int(n)):
        data = to_arrow_us(gen_day(200 + k, 3).with_columns(symbol=pl.lit(f"W{{who}}USDT")))
        try:
            if kind == "delta":
                from deltalake import write_deltalake
                write_deltalake(uri, data, mode="append", storage_options=opts)
            else:
                from pyiceberg.catalog.sql import SqlCatalog
                cat = SqlCatalog("bench", uri=uri, **{{k2: v for k2, v in ICE(endpoint).items()}})
                cat.load_table("silver.s3").append(data)
            ok += 1
        except Exception as e:
            errors.append(type(e).__name__ + ": " + str(e).splitlines()[0][:200])
    print(json.dumps({{"ok": ok, "errors": errors}}))
""")


def S3_OPTS(endpoint: str) -> dict[str, str]:  # noqa: N802 - a constant-like factory used by the workers too
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}


def ICE(endpoint: str) -> dict[str, str]:  # noqa: N802
    return {"warehouse": "s3://lake/iceberg", "s3.endpoint": endpoint, "s3.access-key-id": "testing",
            "s3.secret-access-key": "testing", "s3.region": "us-east-1", "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}


def step_s3(work: Path, res: Results, formats: list[str]) -> None:
    import logging

    import boto3
    import polars as pl
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    out: dict[str, Any] = {"endpoint": endpoint}
    # does the stand-in honour conditional writes (what delta-rs 1.x relies on instead of a lock)?
    s3.put_object(Bucket="lake", Key="probe", Body=b"1")
    for label, kw in (("If-None-Match: * on an existing key", {"IfNoneMatch": "*"}),
                      ("If-Match: stale etag", {"IfMatch": '"0000"'})):
        try:
            s3.put_object(Bucket="lake", Key="probe", Body=b"2", **kw)
            out[f"moto {label}"] = "accepted (no precondition support)"
        except Exception as e:  # noqa: BLE001
            out[f"moto {label}"] = f"refused: {str(e)[:160]}"
    opts = S3_OPTS(endpoint)
    worker = S3_WORKER.format(repo=str(REPO))
    lo, hi = bounds(day_of(2))
    days = [gen_day(i, 20) for i in range(5)]

    def race(kind: str, uri: str) -> list[dict[str, Any]]:
        procs = [subprocess.Popen([sys.executable, "-c", worker.replace("ICE(endpoint)", repr(ICE(endpoint))), kind,
                                   uri, endpoint, "5", str(w)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=str(REPO)) for w in range(3)]
        outs = []
        for p in procs:
            so, se = p.communicate(timeout=600)
            outs.append(json.loads(so.strip().splitlines()[-1]) if p.returncode == 0 else {"crash": se[-400:]})
        return outs

    if "delta" in formats and need("deltalake") is None:
        from deltalake import DeltaTable, write_deltalake

        uri = "s3://lake/delta/klines"
        t, _ = timed(lambda: [write_deltalake(uri, to_arrow_us(d), mode="append", partition_by=["symbol"],
                                              storage_options=opts) for d in days])
        local = work / "s3local" / "delta"
        shutil.rmtree(local, ignore_errors=True)
        for d in days:
            write_deltalake(local, to_arrow_us(d), mode="append", partition_by=["symbol"])
        q = lambda src, o=None: pl.scan_delta(src, storage_options=o).filter(  # noqa: E731
            pl.col("open_time").is_between(lo, hi, closed="left")).collect()
        t_s3, r = median_of_5(lambda: q(uri, opts))
        t_local, _ = median_of_5(lambda: q(str(local)))
        v0 = DeltaTable(uri, storage_options=opts).version()
        outs = race("delta", uri)
        dt = DeltaTable(uri, storage_options=opts)
        out["delta"] = {"write 5 days x 20 symbols (5 commits) s": t, "one-day read s3 s": t_s3,
                        "one-day read local s": t_local, "rows": r.height,
                        "3 concurrent writers x 5 appends": outs, "versions added": dt.version() - v0,
                        "rows_from_writers": pl.scan_delta(dt).filter(pl.col("symbol").str.starts_with("W"))
                        .select(pl.len()).collect().item(),
                        "env AWS_S3_ALLOW_UNSAFE_RENAME": os.environ.get("AWS_S3_ALLOW_UNSAFE_RENAME"),
                        "AWS_S3_LOCKING_PROVIDER=dynamodb": _try(lambda: write_deltalake(
                            "s3://lake/delta/locked", to_arrow_us(days[0]), storage_options=opts |
                            {"AWS_S3_LOCKING_PROVIDER": "dynamodb"}))}
        res.put("s3.delta", out["delta"])
    if "iceberg" in formats and need("pyiceberg") is None:
        from pyiceberg.catalog.sql import SqlCatalog

        db = work / "s3local" / "ice_catalog.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        db.unlink(missing_ok=True)
        cat = SqlCatalog("bench", uri=f"sqlite:///{db}", **ICE(endpoint))
        tbl = iceberg_create(cat, "s3", to_arrow_us(days[0]).schema)
        t, _ = timed(lambda: [cat.load_table("silver.s3").append(to_arrow_us(d)) for d in days])
        lcat = iceberg_catalog(work / "s3local")
        try:
            lcat.drop_table("silver.s3")
        except Exception:  # noqa: BLE001
            pass
        ltbl = iceberg_create(lcat, "s3", to_arrow_us(days[0]).schema)
        for d in days:
            ltbl.append(to_arrow_us(d))
        so = {"aws_endpoint_url": endpoint, "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
              "aws_region": "us-east-1", "aws_allow_http": "true"}
        out["iceberg polars scan_iceberg without storage_options"] = _try(
            lambda: pl.scan_iceberg(cat.load_table("silver.s3")).select(pl.col("close").sum()).collect())
        q = lambda tb, so=None: pl.scan_iceberg(tb, storage_options=so).filter(pl.col("open_time").is_between(lo, hi, closed="left")).collect()  # noqa: E731
        tbl = cat.load_table("silver.s3")
        t_s3, r = median_of_5(lambda: q(tbl, so))
        t_local, _ = median_of_5(lambda: q(lcat.load_table("silver.s3")))
        outs = race("iceberg", f"sqlite:///{db}")
        tbl = cat.load_table("silver.s3")
        out["iceberg"] = {"write 5 days x 20 symbols (5 commits) s": t, "one-day read s3 s": t_s3,
                          "one-day read local s": t_local, "rows": r.height,
                          "3 concurrent writers x 5 appends (sqlite catalog)": outs,
                          "scan_iceberg without storage_options (endpoint not taken from the catalog)":
                          out.pop("iceberg polars scan_iceberg without storage_options"),
                          "rows_from_writers": pl.scan_iceberg(tbl, storage_options=so).filter(pl.col("symbol").str.starts_with("W"))
                          .select(pl.len()).collect().item()}
        res.put("s3.iceberg", out["iceberg"])
    if "hive" in formats:
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(endpoint_override=endpoint, access_key="testing", secret_key="testing",
                               region="us-east-1", scheme="http")

        def put(d: Any) -> list[str]:
            keys = []
            for sym, part in d.group_by("symbol", maintain_order=True):
                key = f"lake/hive/klines/date={part['open_time'][0].date()}/spot-{sym[0]}.parquet"
                buf = io.BytesIO()
                part.write_parquet(buf)
                with fs.open_output_stream(key) as f:
                    f.write(buf.getvalue())
                keys.append(key)
            return keys

        t, keys = timed(lambda: [k for d in days for k in put(d)])
        day_keys = [k for k in keys if f"date={day_of(2).isoformat()}" in k]
        q = lambda: pl.scan_parquet([f"s3://{k}" for k in day_keys], storage_options=opts).collect()  # noqa: E731
        t_s3, r = median_of_5(q)
        import duckdb

        con = duckdb.connect()
        out["hive"] = {"write 5 days x 20 symbols (100 PUTs) s": t, "one-day read s3 (polars, file list) s": t_s3,
                       "rows": r.height,
                       "duckdb read_parquet('s3://...')": _try(lambda: con.sql(f"select count(*) from read_parquet('s3://{day_keys[0]}')").fetchall()),
                       "manifest swap": "one PUT of _manifest.parquet; concurrent writers need If-Match "
                       "(compare-and-swap on the manifest's ETag), see moto probe above"}
        res.put("s3.hive", out["hive"])
    server.stop()
    res.put("s3.moto", {k: v for k, v in out.items() if k.startswith(("moto", "endpoint"))})


def _try(fn: Callable[[], Any]) -> str:
    try:
        fn()
        return "ok"
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"


# --------------------------------------------------------------------------------------------- offline


def step_offline(res: Results) -> None:
    """What needs the network: DuckDB's delta/iceberg/httpfs extensions, and Spark's format jars."""
    out: dict[str, Any] = {}
    for ext in ("delta", "iceberg", "httpfs"):
        code = f"import duckdb; c = duckdb.connect(); c.sql('INSTALL {ext}'); c.sql('LOAD {ext}'); print('loaded')"
        try:
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/tmp")
            msg = p.stdout.strip() or p.stderr.strip().splitlines()[-1]
        except subprocess.TimeoutExpired:
            msg = "timed out after 120 s"
        out[f"duckdb INSTALL {ext}"] = msg
    for pkg in ("delta-spark", "pyspark"):
        p = subprocess.run([sys.executable, "-m", "pip", "index", "versions", pkg], capture_output=True, text=True,
                           timeout=120)
        out[f"pip index versions {pkg}"] = (p.stdout.strip().splitlines() or [p.stderr.strip()[-300:]])[0]
    res.put("offline", out)


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / ".bench" / "table_formats")
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--steps", default="gen,delta,iceberg,hive,schema,queries,count,s3,offline")
    parser.add_argument("--formats", default="delta,iceberg,hive")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    res = Results(args.work)
    versions = available()
    missing = [k for k, v in versions.items() if v is None]
    res.put("environment", {"python": sys.version.split()[0], "executable": sys.executable, "cpus": os.cpu_count(),
                            "versions": versions, "missing": missing, "load": load_avg()})
    if missing:
        print(f"MISSING candidates (their steps are skipped): {', '.join(missing)}", file=sys.stderr)
    formats = [f for f in args.formats.split(",") if f]
    steps = args.steps.split(",")
    requirements = {"gen": ("numpy", "polars", "pyarrow"), "delta": ("deltalake", "numpy"),
                    "iceberg": ("pyiceberg", "pyiceberg_core", "sqlalchemy", "numpy"), "hive": ("duckdb", "numpy"),
                    "schema": ("duckdb", "numpy"), "queries": ("duckdb",), "count": (),
                    "s3": ("moto", "boto3", "numpy"), "offline": ("duckdb",)}
    for step in steps:
        problem = need(*requirements[step])
        if problem or (step in ("delta", "iceberg", "hive") and step not in formats):
            res.put(f"skipped.{step}", problem or "not in --formats")
            continue
        began = time.perf_counter()
        if step == "gen":
            step_gen(args.work, args.symbols, args.days, res)
        elif step == "delta":
            step_delta(args.work, args.symbols, args.days, res)
        elif step == "iceberg":
            step_iceberg(args.work, args.symbols, args.days, res)
        elif step == "hive":
            step_hive(args.work, args.symbols, args.days, res)
        elif step == "schema":
            step_schema(args.work, res)
        elif step == "queries":
            step_queries(args.work, args.symbols, res, formats)
        elif step == "count":
            step_count(args.work, res, formats)
        elif step == "s3":
            step_s3(args.work, res, formats)
        elif step == "offline":
            step_offline(res)
        res.put(f"step_seconds.{step}", round(time.perf_counter() - began, 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
