"""Turn the bronze manifest's stored zips into one typed, sorted, de-duplicated silver frame.

COIN-M files need each contract's USD size (``contract_sizes``, from exchangeInfo through the lake:
``universe/contract_sizes.py``); a cm file without one fails naming it, like any unparseable file.

One manifest row per instrument-day, as bronze writes it. A row whose ``period`` is ``monthly`` is
served by its month's zip (``lake_path``): that zip is read and parsed once per call, however many of
its days the call covers, and each row gets its own day's rows (none when the month lacks the day).
Manifests written before monthly files existed have no ``period``: every row is a daily file.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

from lakehouse_assets.archive.zip_limits import DEFAULT_ZIP_LIMITS, ZipLimits
from lakehouse_assets.instruments import Instrument, instrument_frame
from lakehouse_assets.klines.parse import (
    ArchiveFileError,
    ParsedKlines,
    parse_klines_month_zip,
    parse_klines_zip,
    split_days,
)
from lakehouse_assets.klines.schema import SILVER_KLINES_SCHEMA, empty_klines
from lakehouse_assets.lake.store import LakeStorageError, LakeStore


class SilverBuildError(RuntimeError):
    """Every file that could not be parsed, reported together so one rerun can fix them all."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} archive file(s) could not be parsed:\n" + "\n".join(f"- {e}" for e in errors))


@dataclass(frozen=True)
class FileStats:
    market: str
    symbol: str
    date: object
    file: str
    rows: int
    duplicates_dropped: int
    had_header: bool
    time_unit: str


def build_klines(
    manifest: pl.DataFrame,
    store: LakeStore,
    instruments: list[Instrument],
    *,
    max_workers: int = 4,
    zip_limits: ZipLimits = DEFAULT_ZIP_LIMITS,
    contract_sizes: Mapping[Instrument, float] | None = None,
) -> tuple[pl.DataFrame, list[FileStats]]:
    wanted = instrument_frame(instruments)
    files = manifest.join(wanted, on=["market", "symbol"], how="semi").filter(pl.col("lake_path").is_not_null())

    def parse(row: dict) -> ParsedKlines | Exception:
        name = row["lake_path"].rsplit("/", 1)[-1]
        instrument = Instrument(row["market"], row["symbol"])
        try:
            data = store.get_bytes(row["lake_path"])
            return parse_klines_zip(
                data,
                instrument=instrument,
                interval=row["interval"],
                day=row["date"],
                file_name=name,
                limits=zip_limits,
                contract_size=(contract_sizes or {}).get(instrument) if instrument.market == "cm" else None,
            )
        except ArchiveFileError as exc:
            return exc
        except LakeStorageError as exc:  # keeps its type (and cause): an S3 outage is retried, a parse error not
            where = LakeStorageError(f"{name} ({row['market']}:{row['symbol']}, {row['date']}): {exc}")
            where.__cause__ = exc
            return where
        except Exception as exc:  # other faults: still name the file, day and symbol
            return RuntimeError(f"{name} ({row['market']}:{row['symbol']}, {row['date']}): {exc}")

    def parse_month(month_rows: list[dict]) -> list[ParsedKlines | Exception]:
        first = month_rows[0]
        name = first["lake_path"].rsplit("/", 1)[-1]
        instrument = Instrument(first["market"], first["symbol"])
        served = sorted(r["date"] for r in month_rows)
        month = f"{served[0]:%Y-%m}"
        where = f"{month}, serving {served[0]}" + (f"..{served[-1]}" if len(served) > 1 else "")
        try:
            whole = parse_klines_month_zip(
                store.get_bytes(first["lake_path"]),
                instrument=instrument,
                interval=first["interval"],
                month=served[0].replace(day=1),
                file_name=name,
                limits=zip_limits,
                contract_size=(contract_sizes or {}).get(instrument) if instrument.market == "cm" else None,
            )
        except ArchiveFileError as exc:  # name the days of this run that the file serves
            error: Exception = ArchiveFileError(exc.reason, file=exc.file, market=exc.market, symbol=exc.symbol,
                                                day=None, period=where)  # fmt: skip
            return [error] * len(month_rows)
        except LakeStorageError as exc:
            stored = LakeStorageError(f"{name} ({instrument.key}, {where}): {exc}")
            stored.__cause__ = exc
            return [stored] * len(month_rows)
        except Exception as exc:
            return [RuntimeError(f"{name} ({instrument.key}, {where}): {exc}")] * len(month_rows)
        by_day = split_days(whole.frame)
        return [
            ParsedKlines(
                frame=by_day.get(row["date"], whole.frame.clear()),
                rows_in_file=whole.rows_in_file,
                duplicates_dropped=whole.duplicates_dropped if i == 0 else 0,  # counted once per file
                had_header=whole.had_header,
                time_unit=whole.time_unit,
            )
            for i, row in enumerate(month_rows)
        ]

    rows = list(files.iter_rows(named=True))
    # One task per daily row, one per monthly file (all its rows): a month is read and parsed once.
    tasks: list[list[int]] = []
    by_month: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        if row.get("period") != "monthly":
            tasks.append([i])
        elif row["lake_path"] in by_month:
            by_month[row["lake_path"]].append(i)
        else:
            tasks.append(by_month.setdefault(row["lake_path"], [i]))

    def run(task: list[int]) -> list[ParsedKlines | Exception]:
        if rows[task[0]].get("period") == "monthly":
            return parse_month([rows[i] for i in task])
        return [parse(rows[task[0]])]

    results: list[ParsedKlines | Exception | None] = [None] * len(rows)
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        for task, outcome in zip(tasks, pool.map(run, tasks)):
            for i, result in zip(task, outcome):
                results[i] = result
    errors = list({id(r): r for r in results if isinstance(r, Exception)}.values())  # a month's error once
    if errors:
        raise SilverBuildError(errors)
    parsed = [r for r in results if isinstance(r, ParsedKlines)]
    stats = [
        FileStats(
            row["market"], row["symbol"], row["date"], row["lake_path"].rsplit("/", 1)[-1],
            p.frame.height, p.duplicates_dropped, p.had_header, p.time_unit,
        )
        for row, p in zip(rows, parsed)
    ]
    if not parsed:
        return empty_klines(), stats
    frame = pl.concat([p.frame for p in parsed], how="vertical").select(list(SILVER_KLINES_SCHEMA))
    # Each file is already unique and confined to its own day, so sorting the union keeps the key unique.
    frame = frame.sort(["market", "symbol", "interval", "open_time"])
    return frame, stats
