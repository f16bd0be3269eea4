"""Limiting a run to some instruments, e.g. to backfill one newly added symbol without rewriting the others."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from lakehouse_assets.instruments import Instrument, parse_instrument
from lakehouse_assets.lake.io_manager import SCOPE_ALL

SYMBOLS_TAG = "lakehouse/symbols"


class InstrumentSelection(dg.Config):
    symbols: list[str] = Field(
        default=[],
        description=(
            "Limit this run to these instruments ('market:SYMBOL', e.g. 'um:SOLUSDT'). Empty = the whole "
            f"universe (LAKEHOUSE_SYMBOLS). The run tag '{SYMBOLS_TAG}' (comma-separated) does the same for a whole backfill."
        ),
    )


def select_instruments(
    context: dg.AssetExecutionContext, config: InstrumentSelection, universe: list[Instrument]
) -> tuple[list[Instrument], str]:
    """The instruments to process and the write scope the IO manager uses to replace files.

    A selection outside the universe is refused: the next full run of those days would delete it again.
    """
    requested = list(config.symbols)
    tag = context.run.tags.get(SYMBOLS_TAG) if context.run else None
    if not requested and tag:
        requested = [part for part in tag.split(",") if part.strip()]
    if not requested:
        return list(universe), SCOPE_ALL
    try:
        chosen = [parse_instrument(text) for text in requested]
    except ValueError as exc:  # a typo in run config or the run tag: no retry can fix it
        raise dg.Failure(
            description=f"instrument selection {requested!r} (run config 'symbols' or tag '{SYMBOLS_TAG}'): {exc}",
            allow_retries=False,
        ) from exc
    unknown = [inst.key for inst in chosen if inst not in universe]
    if unknown:
        raise dg.Failure(
            description=(
                f"{', '.join(unknown)} not in the configured universe "
                f"({', '.join(i.key for i in universe)}); add them to LAKEHOUSE_SYMBOLS first"
            ),
            allow_retries=False,
        )
    chosen = list(dict.fromkeys(chosen))
    return chosen, ",".join(inst.key for inst in chosen)
