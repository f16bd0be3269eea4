"""Do a day's daily file and its month's file say the same thing? Recorded, never silently resolved.

Why: Binance's monthly kline files have missed whole days that the daily files hold and carried
revised hours (binance-public-data #129, #253, #475). When bronze holds both files for a day (the
daily one stored while the month was running, the monthly one after it closed), the daily file
serves the day (the fresher publication) and this module says whether the monthly one agrees on
that day's rows: bars only one of them has, and bars whose values differ (the first one shown).

Both files are parsed the way silver parses them. COIN-M files are compared in contracts (a
contract size of 1): a USD size would scale both sides alike and cannot change the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import polars as pl

from lakehouse_assets.archive.zip_limits import DEFAULT_ZIP_LIMITS, ZipLimits
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.klines.parse import parse_klines_month_zip, parse_klines_zip, split_days
from lakehouse_assets.klines.schema import SILVER_KLINES_SCHEMA
from lakehouse_assets.lake.store import LakeStore

#: The columns two files must agree on (the bar's time is the join key).
COMPARED: tuple[str, ...] = tuple(
    c for c in SILVER_KLINES_SCHEMA if c not in ("market", "symbol", "interval", "open_time", "source")
)

REPORT_SCHEMA: dict[str, pl.DataType] = {
    "market": pl.String(),
    "symbol": pl.String(),
    "date": pl.Date(),
    "daily_bars": pl.Int64(),
    "monthly_bars": pl.Int64(),
    "only_in_daily": pl.Int64(),
    "only_in_monthly": pl.Int64(),
    "differing_bars": pl.Int64(),
    "disagreement": pl.String(),
}


@dataclass(frozen=True)
class DayComparison:
    daily_bars: int
    monthly_bars: int
    only_in_daily: int
    only_in_monthly: int
    differing_bars: int
    disagreement: str | None  # None: the files agree on the day


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if hasattr(value, "strftime") else str(value)


def compare_day(daily: pl.DataFrame, monthly: pl.DataFrame) -> DayComparison:
    """The bars of one day as the daily file and as the monthly file hold them (silver-shaped frames)."""
    joined = daily.select("open_time", *COMPARED).join(
        monthly.select("open_time", *COMPARED), on="open_time", how="full", suffix="_monthly", coalesce=True
    )
    in_daily = pl.col("close").is_not_null() | pl.col("open").is_not_null()
    in_monthly = pl.col("close_monthly").is_not_null() | pl.col("open_monthly").is_not_null()
    only_daily = joined.filter(in_daily & ~in_monthly).sort("open_time")
    only_monthly = joined.filter(~in_daily & in_monthly).sort("open_time")
    both = joined.filter(in_daily & in_monthly)
    differs = pl.any_horizontal(*(pl.col(c).ne_missing(pl.col(f"{c}_monthly")) for c in COMPARED))
    differing = both.filter(differs).sort("open_time")
    parts: list[str] = []
    if only_daily.height:
        parts.append(
            f"the monthly file lacks {only_daily.height} of the daily file's {daily.height} bars "
            f"(first {_when(only_daily['open_time'][0])})"
        )
    if only_monthly.height:
        parts.append(
            f"the monthly file has {only_monthly.height} bars the daily file lacks "
            f"(first {_when(only_monthly['open_time'][0])})"
        )
    if differing.height:
        row = differing.row(0, named=True)
        fields = [c for c in COMPARED if row[c] != row[f"{c}_monthly"]]
        shown = ", ".join(f"{c} {row[c]} daily vs {row[f'{c}_monthly']} monthly" for c in fields[:3])
        parts.append(f"{differing.height} bars differ (first {_when(row['open_time'])}: {shown})")
    return DayComparison(
        daily_bars=daily.height,
        monthly_bars=monthly.height,
        only_in_daily=only_daily.height,
        only_in_monthly=only_monthly.height,
        differing_bars=differing.height,
        disagreement="; ".join(parts) or None,
    )


def compare_with_monthly(
    manifest: pl.DataFrame,
    store: LakeStore,
    *,
    zip_limits: ZipLimits = DEFAULT_ZIP_LIMITS,
    max_workers: int = 4,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Fill ``monthly_agrees`` / ``disagreement`` of every manifest row that names a ``monthly_lake_path``
    (bronze holds the day twice), and return the per-day report (``REPORT_SCHEMA``) of those rows.

    A file that cannot be parsed is a disagreement that says so (the day's own file is still the daily
    one; silver reports a bad daily file in full). Each monthly file is parsed once.
    """
    pairs = manifest.filter(pl.col("monthly_lake_path").is_not_null() & pl.col("lake_path").is_not_null())
    if pairs.height == 0:
        return manifest, pl.DataFrame(schema=REPORT_SCHEMA)
    rows = list(pairs.iter_rows(named=True))

    def instrument(row: dict) -> Instrument:
        return Instrument(row["market"], row["symbol"])

    def size(inst: Instrument) -> float | None:
        return 1.0 if inst.market == "cm" else None

    def month_days(path: str) -> dict[date, pl.DataFrame] | str:
        row = next(r for r in rows if r["monthly_lake_path"] == path)
        inst = instrument(row)
        try:
            parsed = parse_klines_month_zip(
                store.get_bytes(path), instrument=inst, interval=row["interval"], month=row["date"].replace(day=1),
                file_name=path.rsplit("/", 1)[-1], limits=zip_limits, contract_size=size(inst),
            )  # fmt: skip
        except ValueError as exc:  # ArchiveFileError included
            return f"the monthly file cannot be parsed: {exc}"
        return split_days(parsed.frame)

    def daily_day(row: dict) -> pl.DataFrame | str:
        inst = instrument(row)
        try:
            return parse_klines_zip(
                store.get_bytes(row["lake_path"]), instrument=inst, interval=row["interval"], day=row["date"],
                file_name=row["lake_path"].rsplit("/", 1)[-1], limits=zip_limits, contract_size=size(inst),
            ).frame  # fmt: skip
        except ValueError as exc:
            return f"the daily file cannot be parsed: {exc}"

    months = sorted({r["monthly_lake_path"] for r in rows})
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        by_month: Mapping[str, dict[date, pl.DataFrame] | str] = dict(zip(months, pool.map(month_days, months)))
        dailies = list(pool.map(daily_day, rows))

    report: list[dict[str, object]] = []
    for row, daily in zip(rows, dailies):
        month = by_month[row["monthly_lake_path"]]
        if isinstance(month, str) or isinstance(daily, str):
            reason = month if isinstance(month, str) else str(daily)
            outcome = DayComparison(daily.height if isinstance(daily, pl.DataFrame) else 0, 0, 0, 0, 0, reason)
        else:
            empty = daily.clear()
            outcome = compare_day(daily, month.get(row["date"], empty))
        report.append(
            dict(
                market=row["market"],
                symbol=row["symbol"],
                date=row["date"],
                daily_bars=outcome.daily_bars,
                monthly_bars=outcome.monthly_bars,
                only_in_daily=outcome.only_in_daily,
                only_in_monthly=outcome.only_in_monthly,
                differing_bars=outcome.differing_bars,
                disagreement=outcome.disagreement,
            )  # fmt: skip
        )
    found = pl.DataFrame(report, schema=REPORT_SCHEMA)
    verdicts = found.select(
        "market", "symbol", "date",
        pl.col("disagreement").is_null().alias("__agrees"),
        pl.col("disagreement").alias("__disagreement"),
    )  # fmt: skip
    updated = (
        manifest.join(verdicts, on=["market", "symbol", "date"], how="left", maintain_order="left")
        .with_columns(
            monthly_agrees=pl.coalesce("__agrees", "monthly_agrees"),
            disagreement=pl.coalesce("__disagreement", "disagreement"),
        )
        .drop("__agrees", "__disagreement")
        .select(manifest.columns)
    )
    return updated, found
