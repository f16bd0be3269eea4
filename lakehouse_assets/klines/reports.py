"""What the kline assets report about a run: counts and small tables for the Dagster UI (pure Polars).

The assets in ``defs/klines/`` attach these to their materializations; ``defs/common/metadata.py``
turns the frames into Markdown. Nothing here decides what is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from lakehouse_assets.klines.gapfill import (
    FILL_REPORT_SCHEMA,
    KLINE_GAPS_SCHEMA,
    SOURCE_ARCHIVE,
    SOURCE_REST,
    FillResult,
)
from lakehouse_assets.klines.indicators import segments
from lakehouse_assets.universe.lifecycle import EXPECTED

# ---------------------------------------------------------------------------------------------
# bronze/klines_archive: the manifest of one run


def manifest_counts(manifest: pl.DataFrame) -> dict[str, int]:
    """The run's files by what happened to them (downloaded, reused, verified, stored copy kept), each counted
    once however many days it serves (a monthly file serves a month), and its instrument-days by what serves
    them (a monthly file, or no file at all)."""
    files = manifest.filter(pl.col("lake_path").is_not_null()).unique("lake_path", keep="first", maintain_order=True)
    status_counts = dict(files.group_by("checksum_status").len().iter_rows())
    monthly = manifest["period"] == "monthly" if "period" in manifest.columns else pl.repeat(False, manifest.height, eager=True)
    return {
        "instrument_days": manifest.height,
        "days_from_monthly_files": int(monthly.sum()),
        "missing_days": int((manifest["checksum_status"] == "missing").sum()),
        "files": files.height,
        "downloaded": int(files["downloaded"].sum()),
        "reused_from_lake": int((~files["downloaded"]).sum()),
        "bytes_downloaded": int(files.filter("downloaded")["bytes"].sum() or 0),
        "verified": status_counts.get("verified", 0),
        "no_checksum": status_counts.get("no_checksum", 0),
        "kept_stored_copy": int(files["upstream_status"].is_in(["not_found", "fetch_failed", "not_listed"]).sum()),
    }


def upstream_problems(manifest: pl.DataFrame) -> list[str]:
    """One line per file the archive did not serve normally, and whether a stored verified copy stays in use."""
    return [
        f"{r['symbol']} ({r['market']}) {r['date']}: archive {r['upstream_status']}, "
        + ("stored verified copy kept" if r["lake_path"] else "no stored copy")
        for r in manifest.filter(pl.col("upstream_status") != "ok").iter_rows(named=True)
    ]


def missing_files(manifest: pl.DataFrame) -> list[str]:
    """One line per instrument-day without a file (not listed, or 404), with the URL of the file it lacks."""
    missing = manifest.filter(pl.col("checksum_status") == "missing")
    return [f"{r['symbol']} ({r['market']}) {r['date']}: {r['source_url']}" for r in missing.iter_rows(named=True)]


def manifest_overview(manifest: pl.DataFrame) -> pl.DataFrame:
    period = [pl.col("period")] if "period" in manifest.columns else []
    return manifest.select("date", "market", "symbol", *period, "checksum_status", "bytes", "downloaded")


# ---------------------------------------------------------------------------------------------
# completeness (silver/klines: ``missing_minutes``; silver/klines_filled: ``missing``)


def completeness_share(report: pl.DataFrame, missing: str = "missing_minutes") -> float:
    """Share of expected bars present on the grid (duplicates or off-grid rows cannot hide a gap)."""
    expected = int(report["expected"].sum())
    return round(1 - int(report[missing].sum()) / expected, 6) if expected else 1.0


def incomplete_days(report: pl.DataFrame, missing: str = "missing_minutes") -> pl.DataFrame:
    return report.filter(pl.col(missing) > 0)


def completeness_by_day(report: pl.DataFrame) -> pl.DataFrame:
    """silver/klines' completeness report as shown: one row per instrument-day with its missing ranges, and
    whether the instrument traded that day (status; not_trading: the listing/delisting day's edge bars)."""
    return report.select("date", "market", "symbol", "rows", "expected", "missing_ranges", "status", "not_trading")


def silver_completeness_by_symbol(report: pl.DataFrame) -> pl.DataFrame:
    """silver/klines per instrument: days, rows, expected, missing minutes, complete days, completeness."""
    trading = pl.col("status") == EXPECTED
    return (
        report.group_by("market", "symbol")
        .agg(
            days=trading.sum(),
            rows=pl.col("rows").sum(),
            expected=pl.col("expected").sum(),
            missing_minutes=pl.col("missing_minutes").sum(),
            complete_days=(trading & (pl.col("missing_minutes") == 0)).sum(),
            days_not_trading=(~trading).sum(),
        )
        .with_columns(
            completeness=pl.when(pl.col("expected") > 0)
            .then((1 - pl.col("missing_minutes") / pl.col("expected")).round(4))
            .otherwise(1.0)
        )
        .sort("market", "symbol")
    )


def first_and_last_close(frame: pl.DataFrame) -> pl.DataFrame:
    """Per instrument: the first bar of the run and its close, and the last close (a quick eyeball check)."""
    return (
        frame.group_by("market", "symbol")
        .agg(
            first_open_time=pl.col("open_time").first(),
            first_close=pl.col("close").first(),
            last_close=pl.col("close").last(),
        )
        .sort("market", "symbol")
    )


def combine_first_and_last_close(chunks: list[pl.DataFrame]) -> pl.DataFrame:
    """``first_and_last_close`` of a run processed in chunks, from each chunk's, in the run's order (a chunk
    holds whole instrument-days, and an instrument's chunks come in day order)."""
    return (
        pl.concat(chunks, how="vertical")
        .group_by("market", "symbol", maintain_order=True)
        .agg(
            first_open_time=pl.col("first_open_time").first(),
            first_close=pl.col("first_close").first(),
            last_close=pl.col("last_close").last(),
        )
        .sort("market", "symbol")
    )


# ---------------------------------------------------------------------------------------------
# silver/klines_filled and silver/kline_gaps


def filled_completeness_by_symbol(report: pl.DataFrame) -> pl.DataFrame:
    """The gap-fill report per instrument: archive vs REST rows, what is still missing, completeness."""
    trading = pl.col("status") == EXPECTED
    return (
        report.group_by("market", "symbol")
        .agg(
            days=trading.sum(),
            expected=pl.col("expected").sum(),
            archive_rows=pl.col("archive_rows").sum(),
            rest_rows=pl.col("rest_rows").sum(),
            missing=pl.col("missing").sum(),
            complete_days=(trading & (pl.col("missing") == 0)).sum(),
            days_not_trading=(~trading).sum(),
        )
        .with_columns(
            completeness=pl.when(pl.col("expected") > 0)
            .then((1 - pl.col("missing") / pl.col("expected")).round(6))
            .otherwise(1.0)
        )
        .sort("market", "symbol")
    )


def rows_by_source(frame: pl.DataFrame, source: str) -> int:
    return int((frame["source"] == source).sum())


@dataclass
class FillTotals:
    """What the chunks of one gap-fill run add up to (``lake/chunks.py``), without their rows: those are
    written chunk by chunk. Reports and gaps are one small row per instrument-day or gap."""

    rows: int = 0
    archive_rows: int = 0
    rest_rows: int = 0
    kept_rows: int = 0
    rest_requests: int = 0
    rest_retries: int = 0
    rest_duplicates_dropped: int = 0
    rest_windows: int = 0
    reports: list[pl.DataFrame] = field(default_factory=list)
    gaps: list[pl.DataFrame] = field(default_factory=list)

    def add(self, result: FillResult) -> None:
        self.rows += result.frame.height
        self.archive_rows += rows_by_source(result.frame, SOURCE_ARCHIVE)
        self.rest_rows += rows_by_source(result.frame, SOURCE_REST)
        self.kept_rows += result.kept_rows
        self.rest_requests += result.rest_requests
        self.rest_retries += result.rest_retries
        self.rest_duplicates_dropped += result.rest_duplicates_dropped
        self.rest_windows += len(result.windows)
        self.reports.append(result.report)
        self.gaps.append(result.gaps)

    @property
    def report(self) -> pl.DataFrame:
        """One row per instrument-day of the run, ordered as ``fill_report`` orders one chunk."""
        if not self.reports:
            return pl.DataFrame(schema=FILL_REPORT_SCHEMA)
        return pl.concat(self.reports, how="vertical").sort("date", "market", "symbol")

    @property
    def all_gaps(self) -> pl.DataFrame:
        """Every remaining gap of the run (chunks hold whole instruments, in the run's instrument order)."""
        return pl.concat(self.gaps, how="vertical") if self.gaps else pl.DataFrame(schema=KLINE_GAPS_SCHEMA)


def fill_summary(totals: FillTotals, *, days: int, instruments: int) -> str:
    """One log line for a gap-fill run: rows (from REST), REST requests, gaps left, stored rows kept."""
    return (
        f"{totals.rows} rows ({totals.rest_rows} from REST) over "
        f"{days} day(s) x {instruments} instrument(s); {totals.rest_requests} REST request(s); "
        f"{sum(g.height for g in totals.gaps)} gap(s) remain"
        + (f"; kept {totals.kept_rows} stored row(s) REST could not confirm now" if totals.kept_rows else "")
    )


def gap_list(gaps: pl.DataFrame) -> pl.DataFrame:
    return gaps.select("market", "symbol", "gap_start", "gap_end", "minutes", "reason")


def missing_bars(gaps: pl.DataFrame) -> int:
    return int(gaps["bars"].sum() or 0)


def gaps_by_reason(gaps: pl.DataFrame) -> pl.DataFrame:
    """Remaining gaps grouped by why they remain, most missing bars first."""
    return gaps.group_by("reason").agg(gaps=pl.len(), bars=pl.col("bars").sum()).sort("bars", descending=True)


# ---------------------------------------------------------------------------------------------
# gold/features: one day of a run


def latest_features(frame: pl.DataFrame) -> pl.DataFrame:
    """The newest bar per instrument and interval with its main indicators, rounded for reading."""
    if frame.is_empty():
        return frame
    return (
        frame.group_by("market", "symbol", "interval", maintain_order=True)
        .agg(pl.all().sort_by("open_time").last())
        .select(
            "market",
            "symbol",
            "interval",
            "open_time",
            "close",
            *(
                pl.col(c).round(4)
                for c in (
                    "rsi_14",
                    "macd_12_26_9",
                    "macd_signal_12_26_9",
                    "bb_lower_20_2",
                    "bb_upper_20_2",
                    "atr_14",
                    "vwap_24h",
                    "realized_vol_24h",
                )
            ),
        )
        .sort("market", "symbol", "interval")
    )


def feature_coverage(frame: pl.DataFrame) -> pl.DataFrame:
    """Per instrument and interval: bars, holes, and how many bars are still in indicator warm-up."""
    rows = []
    for (market, symbol, interval), part in frame.partition_by(["market", "symbol", "interval"], as_dict=True).items():
        segs = segments(part, str(interval))
        rows.append(
            {
                "market": market,
                "symbol": symbol,
                "interval": interval,
                "bars": part.height,
                "incomplete_bars": int((~part["is_complete"]).sum()),
                "holes": max(0, segs.height - 1),
                "rsi_null": part["rsi_14"].null_count(),
                "macd_null": part["macd_12_26_9"].null_count(),
                "lookback_incomplete": int((~part["lookback_complete"]).sum()),
                "first_bar": part["open_time"].min(),
                "last_bar": part["open_time"].max(),
            }
        )
    return pl.DataFrame(rows).sort("market", "symbol", "interval") if rows else pl.DataFrame()
