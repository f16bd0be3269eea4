"""Which instruments a run processes on which day: the point-in-time universe, optionally limited to some symbols.

Limiting a run to some instruments (run config ``symbols`` or the run tag) backfills one newly added
symbol without rewriting the others. Each day then keeps only the instruments expected on it
(``universe/lifecycle.py``): a day before a listing or after a delisting is neither downloaded, nor
asked of REST, nor reported as a gap. Nothing is deleted for it either: the IO manager only replaces
an instrument-day file with new rows for it, so data the lake holds for such a day stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg
from pydantic import Field

from lakehouse_assets.defs.resources import UniverseResource
from lakehouse_assets.instruments import Instrument, parse_instrument
from lakehouse_assets.lake.io_manager import SCOPE_ALL
from lakehouse_assets.universe.lifecycle import DELISTED, EXPECTED, PRE_LISTING, DailyUniverse

SYMBOLS_TAG = "lakehouse/symbols"
#: Instruments named in an error about the universe before it says "and N more".
_LISTED = 20


class InstrumentSelection(dg.Config):
    symbols: list[str] = Field(
        default=[],
        description=(
            "Limit this run to these instruments ('market:SYMBOL', e.g. 'um:SOLUSDT'). Empty = the whole "
            f"universe (LAKEHOUSE_SYMBOLS). The run tag '{SYMBOLS_TAG}' (comma-separated) does the same for a whole backfill."
        ),
    )


def _listed(instruments: list[Instrument]) -> str:
    shown = ", ".join(i.key for i in instruments[:_LISTED])
    return shown + (f", ... ({len(instruments)} in all)" if len(instruments) > _LISTED else "")


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
    members = set(universe)
    unknown = [inst.key for inst in chosen if inst not in members]
    if unknown:
        raise dg.Failure(
            description=(
                f"{', '.join(unknown)} not in the configured universe ({_listed(universe)}); "
                "add them to LAKEHOUSE_SYMBOLS first (a pattern entry such as um:*USDT resolves against silver/instruments)"
            ),
            allow_retries=False,
        )
    chosen = list(dict.fromkeys(chosen))
    return chosen, ",".join(inst.key for inst in chosen)


@dataclass(frozen=True)
class RunUniverse:
    """What one run processes: ``instruments`` (expected on at least one of its days), the IO manager's
    write ``scope``, and ``daily``: for every selected instrument and day, expected or why not."""

    instruments: list[Instrument]
    scope: str
    daily: DailyUniverse

    def pairs(self) -> list[tuple[Instrument, date]]:
        """Every expected (instrument, day) of the run: what to download, parse or complete."""
        return self.daily.expected_pairs()

    def metadata(self) -> dict[str, int]:
        """Instrument-days by status, for the materialization's metadata."""
        counts = self.daily.counts()
        return {
            "expected_instrument_days": counts[EXPECTED],
            "pre_listing_instrument_days": counts[PRE_LISTING],
            "delisted_instrument_days": counts[DELISTED],
        }


def select_universe(
    context: dg.AssetExecutionContext, config: InstrumentSelection, universe: UniverseResource, days: list[date]
) -> RunUniverse:
    """The run's point-in-time universe: resolved once per step, limited to the run's symbols if any."""
    daily = universe.daily(days)
    chosen, scope = select_instruments(context, config, list(daily.instruments))
    if scope != SCOPE_ALL:
        daily = daily.restrict(chosen)
    run = RunUniverse(daily.active, scope, daily)
    counts = daily.counts()
    if counts[PRE_LISTING] or counts[DELISTED]:
        context.log.info(
            f"{len(daily.instruments)} instrument(s) selected, {len(run.instruments)} trading on some of the "
            f"{len(days)} day(s); not expected: {counts[PRE_LISTING]} pre_listing and {counts[DELISTED]} delisted "
            "instrument-day(s) (not downloaded, not asked of REST, not gaps)"
        )
    return run
