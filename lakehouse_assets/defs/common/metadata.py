"""Small renderers for Dagster UI metadata (the metadata panel shows Markdown)."""

from __future__ import annotations

import polars as pl


def markdown_table(frame: pl.DataFrame, limit: int = 50) -> str:
    if frame.height == 0:
        return "_none_"
    shown = frame.head(limit)
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
    body = "\n".join(
        "| " + " | ".join("" if v is None else str(v).replace("|", "\\|") for v in row) + " |"
        for row in shown.iter_rows()
    )
    more = f"\n\n… and {frame.height - limit} more rows" if frame.height > limit else ""
    return header + body + more
