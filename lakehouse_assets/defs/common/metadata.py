"""Renderers turning report frames and lines into Dagster UI metadata (the metadata panel shows Markdown).

The reports themselves (which rows, which counts) are pure and live beside the domain code:
``klines/reports.py``, ``funding/reports.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg
import polars as pl


def markdown_table(frame: pl.DataFrame, limit: int = 50, *, total: int | None = None) -> str:
    """``frame``'s first ``limit`` rows, then how many more; ``total``: the row count when ``frame`` holds only
    the first rows of a larger table (a run processed in chunks keeps a sample, not every row)."""
    if frame.height == 0:
        return "_none_"
    total = frame.height if total is None else total
    shown = frame.head(limit)
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
    body = "\n".join(
        "| " + " | ".join("" if v is None else str(v).replace("|", "\\|") for v in row) + " |"
        for row in shown.iter_rows()
    )
    more = f"\n\n… and {total - limit} more rows" if total > limit else ""
    return header + body + more


def md_table(frame: pl.DataFrame, limit: int = 50) -> dg.MetadataValue:
    """A frame as a Markdown table (its first ``limit`` rows, then how many more)."""
    return dg.MetadataValue.md(markdown_table(frame, limit=limit))


def md_list(lines: Iterable[str], *, empty: str | None = "none") -> dg.MetadataValue:
    """Lines as a Markdown bullet list; ``empty`` when there are none (``None``: an empty text)."""
    text = "\n".join(f"- {line}" for line in lines)
    return dg.MetadataValue.md(text or (empty or ""))


def md_each(texts: Mapping[str, str]) -> dict[str, dg.MetadataValue]:
    """Markdown texts (charts, …) by metadata key."""
    return {key: dg.MetadataValue.md(text) for key, text in texts.items()}
