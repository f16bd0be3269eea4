"""What one instrument-day costs in memory in each kline step: the measured model behind the chunk size.

``LAKEHOUSE_RUN_MEMORY_MIB`` (default 2048) is the peak a run may reach; each step turns it into a
chunk of instrument-days with ``MemoryModel.capacity`` (``lake/chunks.py``) and processes and
persists one chunk at a time.

How the numbers were measured (2 vCPU, Python 3.11, polars 2.1, dagster 1.13; BENCHMARKS.md,
"Universe scale and bounded memory"): peak RSS (``ru_maxrss``) of one fresh process per point, running
the step in process on a sqlite instance over synthetic 1m files in Binance's format, 31 days of 1 to
100 symbols, then a line fitted to the points and rounded up:

* silver/klines from monthly archive files (read once per chunk, sliced per day), in one chunk: 617
  MiB for 310 instrument-days, 1,322 for 1,023, 2,221 for 2,046, i.e. about 370 MiB + 0.9 MiB per
  instrument-day. Of the 0.9: the build (zip bytes, CSV text, the parsed month, the day slices, their
  concatenation and the sorted frame) 0.75, the Pandera checks 0.15 (a 1m instrument-day is 1,440
  rows, 0.17 MiB as a typed frame); the Parquet writes add nothing (each file is a slice of the
  chunk). From daily files it was 340 MiB + 0.73-0.82 (issue 11 measured 380 + 0.76 before chunking).
  In chunks, peaks vary by up to 0.2 MiB per instrument-day more (allocator slack: freed chunk memory
  is reused, not all returned): 400 symbols x 31 days in chunks of 1,488 peaked at 1,985 MiB.
* silver/klines_filled (``klines_filled_job``, REST off) in one chunk: 352 MiB for 31
  instrument-days, 644 for 310, 1,596 for 1,240, i.e. about 320 MiB + 1.03 MiB per instrument-day
  (the chunk's silver rows, the rows it already stored, the merged and sorted frame, the checks'
  view); in chunks of 310: 726 MiB (82 MiB of slack).
* gold (``gold_job``: klines_resampled then features, one process, charts off) over that
  klines_filled lake in one chunk: 366 MiB for 31 instrument-days, 654 for 310, 1,457 for 1,240,
  i.e. about 390 MiB + 0.86-1.03 MiB per instrument-day (the chunk's minutes and the lookback
  day, five resampled intervals, the 1m features with their 24h windows); in chunks of 310: 688
  MiB, 713 with the default 12 charts a day.

``RUN_FIXED_MIB`` = 450 covers the process (interpreter with Dagster, Polars, DuckDB, pyarrow and
TA-Lib imported, the run started: 320-390 MiB), the slack between chunks and the run's small
per-instrument-day bookkeeping (manifest, completeness and check rows, per-day metadata). With
1.1 MiB (silver, gold) and 1.2 MiB (gap-fill) per instrument-day the models lie above every
measured point, so a chunk they allow stays under the budget: the default 2,048 MiB allows 1,452
(silver, gold) and 1,331 (gap-fill) instrument-days per chunk, i.e. 46 and 42 symbols of a 31-day
run.
"""

from __future__ import annotations

import math

from lakehouse_assets.lake.chunks import MemoryModel

RUN_FIXED_MIB = 450.0

SILVER_KLINES = MemoryModel(fixed_mib=RUN_FIXED_MIB, mib_per_instrument_day=1.1)
KLINES_FILLED = MemoryModel(fixed_mib=RUN_FIXED_MIB, mib_per_instrument_day=1.2)
GOLD_RESAMPLED = MemoryModel(fixed_mib=RUN_FIXED_MIB, mib_per_instrument_day=1.1)
GOLD_FEATURES = MemoryModel(fixed_mib=RUN_FIXED_MIB, mib_per_instrument_day=1.1)

MODELS: tuple[MemoryModel, ...] = (SILVER_KLINES, KLINES_FILLED, GOLD_RESAMPLED, GOLD_FEATURES)

#: The smallest LAKEHOUSE_RUN_MEMORY_MIB: the process plus one instrument-day of the costliest step.
MIN_RUN_MEMORY_MIB: int = max(model.min_budget_mib for model in MODELS)
DEFAULT_RUN_MEMORY_MIB = 2048

#: Steps whose values depend on earlier days (gap-fill windows, indicators): they never cut an
#: instrument's days, so one instrument over a whole run is their smallest chunk.
WHOLE_RUN_MODELS: tuple[MemoryModel, ...] = (KLINES_FILLED, GOLD_RESAMPLED, GOLD_FEATURES)


def min_budget_for_run(days_per_run: int) -> int:
    """The budget that still holds one instrument over a whole run in the steps that cannot cut days."""
    return math.ceil(max(model.peak_mib(days_per_run) for model in WHOLE_RUN_MODELS))


def max_days_for_budget(budget_mib: int) -> int:
    """The longest run whose one-instrument chunk fits ``budget_mib`` in every step that cannot cut days."""
    return min(model.capacity(budget_mib) for model in WHOLE_RUN_MODELS)
