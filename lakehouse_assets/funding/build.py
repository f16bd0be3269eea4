"""Turn the bronze funding manifest's stored files into silver funding rows for the run's days.

A monthly zip is parsed once per run however many of its days the run covers; a REST day is
parsed from its own JSON envelope (which carries the settlement before midnight, so the first
row's interval can be read from the spacing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from lakehouse_assets.archive.zip_limits import DEFAULT_ZIP_LIMITS, ZipLimits
from lakehouse_assets.funding.parse import parse_funding_month_zip, parse_funding_rest_payload
from lakehouse_assets.funding.schema import FUNDING_MARKETS
from lakehouse_assets.funding.transforms import combine, fill_intervals, snap_events, within_days
from lakehouse_assets.instruments import Instrument, instrument_frame
from lakehouse_assets.klines.build import SilverBuildError
from lakehouse_assets.klines.parse import ArchiveFileError
from lakehouse_assets.lake.store import LakeStore


@dataclass(frozen=True)
class FundingFileStats:
    market: str
    symbol: str
    source: str
    file: str
    days: int
    rows_in_file: int
    rows_used: int
    snapped: int  # rows whose calc_time was off the slot (by a few ms) and got snapped


def build_funding(
    manifest: pl.DataFrame, store: LakeStore, instruments: list[Instrument], *, zip_limits: ZipLimits = DEFAULT_ZIP_LIMITS
) -> tuple[pl.DataFrame, list[FundingFileStats]]:
    wanted = instrument_frame(instruments)
    files = (
        manifest.join(wanted, on=["market", "symbol"], how="semi")
        .filter(pl.col("market").is_in(list(FUNDING_MARKETS)) & pl.col("lake_path").is_not_null())
        .sort("market", "symbol", "date")
    )
    frames: list[pl.DataFrame] = []
    stats: list[FundingFileStats] = []
    errors: list[Exception] = []
    for (market, symbol, source, lake_path), group in files.group_by(
        ["market", "symbol", "source", "lake_path"], maintain_order=True
    ):
        inst = Instrument(str(market), str(symbol))
        days: list[date] = group["date"].to_list()
        name = str(lake_path).rsplit("/", 1)[-1]
        try:
            data = store.get_bytes(str(lake_path))
            if source == "archive":
                raw = parse_funding_month_zip(
                    data, instrument=inst, month=str(group["month"][0]), file_name=name, limits=zip_limits
                )
                rows = snap_events(raw, instrument=inst, source="archive")
            elif source == "rest":
                raw, fallback = parse_funding_rest_payload(data, instrument=inst, file_name=name, day=days[0])
                rows = fill_intervals(snap_events(raw, instrument=inst, source="rest"), fallback)
            else:
                raise ValueError(f"unknown funding source {source!r} in the bronze manifest for {name}")
        except (ArchiveFileError, ValueError) as exc:
            errors.append(exc)
            continue
        except Exception as exc:  # storage faults: still name the file and instrument
            errors.append(RuntimeError(f"{name} ({inst.key}, {days[0]}..{days[-1]}): {type(exc).__name__}: {exc}"))
            continue
        used = within_days(rows, days)
        frames.append(used)
        stats.append(
            FundingFileStats(
                market=inst.market,
                symbol=inst.symbol,
                source=str(source),
                file=name,
                days=len(days),
                rows_in_file=raw.height,
                rows_used=used.height,
                snapped=int((used["calc_time"] != used["funding_time"]).sum()),
            )
        )
    if errors:
        raise SilverBuildError(errors)
    return combine(frames), stats
