"""What the funding assets report about a run: counts, small tables and charts for the Dagster UI (pure Polars).

The assets in ``defs/funding/`` attach these to their materializations; ``defs/common/metadata.py``
turns the frames into Markdown. Nothing here decides what is written.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import polars as pl

from lakehouse_assets.funding.chart import funding_svg, svg_markdown
from lakehouse_assets.funding.transforms import missing_slot_times
from lakehouse_assets.instruments import Instrument

if TYPE_CHECKING:
    from lakehouse_assets.funding.ingest import FundingIngestStats

# ---------------------------------------------------------------------------------------------
# bronze/funding_archive


def sources_by_month(manifest: pl.DataFrame) -> pl.DataFrame:
    """Per instrument and month: where its days come from (archive, rest, none), with the checksum and note."""
    return (
        manifest.group_by("market", "symbol", "source", "month")
        .agg(days=pl.len(), first=pl.col("date").min(), last=pl.col("date").max(), checksum=pl.col("checksum_status").first(),
             note=pl.col("note").first())
        .sort("market", "symbol", "month", "source")
    )  # fmt: skip


def source_counts(manifest: pl.DataFrame, stats: FundingIngestStats, spot_skipped: int) -> dict[str, int]:
    """Instrument-days by source, months by what happened to them, and REST settlements fetched."""
    counts = dict(manifest.group_by("source").len().iter_rows())
    return {
        "instrument_days": manifest.height,
        "days_from_archive": counts.get("archive", 0),
        "days_from_rest": counts.get("rest", 0),
        "days_without_source": counts.get("none", 0),
        "months_from_archive": stats.months_from_archive,
        "months_downloaded": stats.months_downloaded,
        "months_reused_from_lake": stats.months_reused,
        "months_not_published": stats.months_missing,
        "rest_settlements_fetched": stats.rest_rows,
        "spot_instruments_skipped": spot_skipped,
    }


# ---------------------------------------------------------------------------------------------
# silver/funding_rates


def settlements_by_symbol(frame: pl.DataFrame) -> pl.DataFrame:
    """Per instrument: settlements, intervals seen, archive vs REST, rate range and mean (also annualized),
    and how many calc_times were snapped to their slot (and by how much at most)."""
    return (
        frame.group_by("market", "symbol")
        .agg(
            settlements=pl.len(),
            intervals_h=pl.col("funding_interval_hours").unique().sort().cast(pl.String).str.join(","),
            from_archive=(pl.col("source") == "archive").sum(),
            from_rest=(pl.col("source") == "rest").sum(),
            mean_rate=pl.col("funding_rate").mean(),
            min_rate=pl.col("funding_rate").min(),
            max_rate=pl.col("funding_rate").max(),
            mean_annualized=(pl.col("funding_rate") * 24 / pl.col("funding_interval_hours") * 365).mean().round(6),
            snapped=(pl.col("calc_time") != pl.col("funding_time")).sum(),
            max_calc_lateness_ms=(pl.col("calc_time") - pl.col("funding_time")).dt.total_milliseconds().max(),
        )
        .sort("market", "symbol")
    )


def snapped_to_slot(frame: pl.DataFrame) -> int:
    return int((frame["calc_time"] != frame["funding_time"]).sum())


def missing_slots(incomplete: pl.DataFrame) -> int:
    return int(incomplete["missing"].fill_null(0).sum())


def funding_charts(frame: pl.DataFrame, days: list[date], futures: list[Instrument], limit: int) -> dict[str, str]:
    """One funding bar chart (Markdown with an embedded SVG) per instrument, up to ``limit``, keyed ``chart <key>``."""
    if not days:
        return {}
    start = datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC)
    end = datetime(days[-1].year, days[-1].month, days[-1].day, tzinfo=UTC) + timedelta(days=1)
    out: dict[str, str] = {}
    for inst in futures[:limit]:
        rows = frame.filter((pl.col("market") == inst.market) & (pl.col("symbol") == inst.symbol))
        title = f"{inst.key} funding rate per settlement"
        svg = funding_svg(rows, title=title, start=start, end=end, missing_ms=missing_slot_times(frame, days, inst))
        out[f"chart {inst.key}"] = svg_markdown(svg, title)
    return out


# ---------------------------------------------------------------------------------------------
# gold/funding_features


def bars_without_funding(features: pl.DataFrame) -> pl.DataFrame:
    """Per instrument, interval and day: bars that see no settlement at all, with the first and last of them."""
    return (
        features.filter(pl.col("funding_rate").is_null())
        .group_by("market", "symbol", "interval", pl.col("open_time").dt.date().alias("date"))
        .agg(bars_without_funding=pl.len(), first=pl.col("open_time").min(), last=pl.col("open_time").max())
        .sort("market", "symbol", "interval", "date")
    )


def latest_funding(features: pl.DataFrame) -> pl.DataFrame:
    """Per instrument and interval: the funding state at the newest bar that has any."""
    return (
        features.filter(pl.col("funding_rate").is_not_null())
        .group_by("market", "symbol", "interval")
        .agg(pl.all().sort_by("open_time").last())
        .select("market", "symbol", "interval", "open_time", "funding_rate", "funding_interval_hours",
                "funding_rate_annualized", "funding_rate_mean_7d", "funding_events_7d", "next_funding_time")
        .sort("market", "symbol", "interval")
    )  # fmt: skip
