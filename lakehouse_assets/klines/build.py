"""Turn the bronze manifest's stored zips into one typed, sorted, de-duplicated silver frame."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

from lakehouse_assets.archive.zip_limits import DEFAULT_ZIP_LIMITS, ZipLimits
from lakehouse_assets.instruments import Instrument, instrument_frame
from lakehouse_assets.klines.parse import ArchiveFileError, ParsedKlines, parse_klines_zip
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
) -> tuple[pl.DataFrame, list[FileStats]]:
    wanted = instrument_frame(instruments)
    files = manifest.join(wanted, on=["market", "symbol"], how="semi").filter(pl.col("lake_path").is_not_null())

    def parse(row: dict) -> ParsedKlines | Exception:
        name = row["lake_path"].rsplit("/", 1)[-1]
        try:
            data = store.get_bytes(row["lake_path"])
            return parse_klines_zip(
                data,
                instrument=Instrument(row["market"], row["symbol"]),
                interval=row["interval"],
                day=row["date"],
                file_name=name,
                limits=zip_limits,
            )
        except ArchiveFileError as exc:
            return exc
        except LakeStorageError as exc:  # keeps its type (and cause): an S3 outage is retried, a parse error not
            where = LakeStorageError(f"{name} ({row['market']}:{row['symbol']}, {row['date']}): {exc}")
            where.__cause__ = exc
            return where
        except Exception as exc:  # other faults: still name the file, day and symbol
            return RuntimeError(f"{name} ({row['market']}:{row['symbol']}, {row['date']}): {exc}")

    rows = list(files.iter_rows(named=True))
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        results = list(pool.map(parse, rows))
    errors = [r for r in results if isinstance(r, Exception)]
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
