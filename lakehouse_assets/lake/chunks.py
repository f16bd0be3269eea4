"""How much of a run is held in memory at once: the run's instrument-days cut into chunks that fit a budget.

Why: a step that loads its whole range needs memory in proportion to instruments x days (issue 11
measured 380 MiB + 0.76 MiB per symbol-day for silver/klines: ~9.8 GB for a 31-day run of 400
symbols). A step that processes and persists one chunk at a time needs the fixed cost of the
process plus one chunk, whatever the universe or the run's length.

The model is linear, fitted on measured peak RSS (numbers and method in ``klines/memory.py`` and
BENCHMARKS.md): ``peak ~ fixed_mib + mib_per_instrument_day x instrument-days in one chunk``. A
budget (``LAKEHOUSE_RUN_MEMORY_MIB``) becomes a chunk capacity by solving it for the chunk.

Chunks are instrument groups over all of the run's days: instruments are independent series, so
a chunk's rows, checks and files are exactly those of the same instruments in an unchunked run,
and a monthly archive file is read once per chunk. Days are split only when one instrument's days
alone exceed the capacity (a run far longer than LAKEHOUSE_DAYS_PER_RUN), and never for steps
whose values depend on earlier days (indicators), which pass ``split_days=False``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class MemoryModel:
    """Peak resident memory of a step processing ``n`` instrument-days at once: ``fixed_mib + per_day x n``.

    ``fixed_mib`` is the process (interpreter with Dagster, Polars, DuckDB, pyarrow, TA-Lib imported),
    the run's bookkeeping and the allocator's slack; ``mib_per_instrument_day`` the step's working set
    for one instrument-day (input bytes, parsed and sorted frames, checks, Parquet buffers).
    """

    fixed_mib: float
    mib_per_instrument_day: float

    def __post_init__(self) -> None:
        if self.fixed_mib < 0 or self.mib_per_instrument_day <= 0:
            raise ValueError(f"memory model {self}: fixed_mib >= 0 and mib_per_instrument_day > 0 expected")

    @property
    def min_budget_mib(self) -> int:
        """The smallest budget holding the process and one instrument-day."""
        return math.ceil(self.fixed_mib + self.mib_per_instrument_day)

    def capacity(self, budget_mib: int) -> int:
        """Instrument-days one chunk may hold under ``budget_mib`` (at least 1: a day of one instrument is
        the unit the lake writes; a smaller budget than ``min_budget_mib`` is refused by the setting)."""
        return max(1, math.floor((budget_mib - self.fixed_mib) / self.mib_per_instrument_day))

    def peak_mib(self, instrument_days: int) -> float:
        """What the model predicts for one chunk of ``instrument_days``."""
        return self.fixed_mib + self.mib_per_instrument_day * instrument_days


@dataclass(frozen=True)
class Chunk(Generic[T]):
    """Some instruments over some consecutive days of a run, processed and persisted together."""

    instruments: tuple[T, ...]
    days: tuple[date, ...]

    @property
    def instrument_days(self) -> int:
        return len(self.instruments) * len(self.days)


def plan_chunks(
    instruments: Sequence[T], days: Sequence[date], capacity: int, *, split_days: bool = True
) -> list[Chunk[T]]:
    """Cut instruments x days into chunks of at most ``capacity`` instrument-days, in order.

    Instruments are grouped (``capacity // len(days)`` per chunk, all days each); only when one
    instrument's days exceed ``capacity`` are its days cut into runs of ``capacity`` consecutive days
    (unless ``split_days`` is False: one instrument with all days is then the smallest chunk). With
    no instruments the run is one chunk without instruments, so its days are still written (empty).
    """
    if capacity < 1:
        raise ValueError(f"chunk capacity must be >= 1 instrument-day, got {capacity}")
    ordered_days = tuple(days)
    if not instruments:
        return [Chunk((), ordered_days)]
    if not ordered_days:
        return []
    per_chunk = capacity // len(ordered_days)
    if per_chunk >= 1 or not split_days:
        step = max(1, per_chunk)
        return [Chunk(tuple(instruments[i : i + step]), ordered_days) for i in range(0, len(instruments), step)]
    return [
        Chunk((instrument,), ordered_days[d : d + capacity])
        for instrument in instruments
        for d in range(0, len(ordered_days), capacity)
    ]
