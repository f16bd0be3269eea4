"""What the demo runs on: the days the bundled sample holds, the instruments of each, and where things go.

Every demo module and ``make dev-offline`` take these facts from here, so the demo's printout, the
offline UI and the README say the same thing.

The sample holds one instrument per day range, so each range is run with ``LAKEHOUSE_SYMBOLS`` set
to that range's instruments: the completeness checks then judge each day by what it is supposed to
hold, and pass where the data is complete (with the whole demo universe they would report 3 of the
4 instruments missing on every day).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lakehouse_dev import REPO

__all__ = [
    "DEMO_DIR",
    "FUNDING",
    "KLINES",
    "MIRROR",
    "START_DATE",
    "UNIVERSE",
    "SampleRange",
    "default_storage",
    "offline_env",
    "shell_line",
]


@dataclass(frozen=True)
class SampleRange:
    """Consecutive days of the sample and the instruments it has files for on each of them."""

    start: str
    end: str
    symbols: str  # LAKEHOUSE_SYMBOLS for runs over this range
    note: str = ""


# Date ranges covered by the real sample files (see lakehouse_assets_tests/data/binance/PROVENANCE.md).
KLINES = [
    SampleRange("2020-01-01", "2020-01-03", "spot:BTCUSDT", "spot BTCUSDT, Binance CHECKSUMs"),
    SampleRange("2021-11-27", "2021-11-27", "spot:ADABTC", "spot ADABTC (satoshi prices)"),
    SampleRange("2022-05-04", "2022-05-06", "um:BTCUSDT", "USD-M BTCUSDT, no header row"),
    SampleRange("2022-10-24", "2022-10-25", "cm:BTCUSD_PERP", "COIN-M BTCUSD_PERP, header row, volume in contracts"),
    SampleRange("2023-04-15", "2023-04-15", "um:BTCUSDT", "USD-M BTCUSDT with a header row"),
]
# The bundled USD-M fundingRate month (one monthly zip + its published CHECKSUM).
FUNDING = SampleRange("2026-04-01", "2026-04-30", "um:BTCUSDT", "USD-M BTCUSDT fundingRate month")

#: Every instrument of the sample: the universe the code location is loaded with (sensors, the UI).
UNIVERSE = ",".join(dict.fromkeys(part for r in [*KLINES, FUNDING] for part in r.symbols.split(",")))
START_DATE = KLINES[0].start  # the first daily partition

DEMO_DIR = REPO / ".demo"  # mirror, gap-fill showcase, charts: `make clean` removes it
MIRROR = DEMO_DIR / "mirror"  # the sample laid out like data.binance.vision, read through file://


def default_storage() -> str:
    """The demo lake: LAKEHOUSE_STORAGE when set, else ``lakehouse_data`` in the project root (absolute)."""
    return os.environ.get("LAKEHOUSE_STORAGE") or str(REPO / "lakehouse_data")


def offline_env(storage: str | None = None, mirror: Path = MIRROR) -> dict[str, str]:
    """The settings under which the demo lake is served without any outside call (``make dev-offline``)."""
    return {
        "LAKEHOUSE_ARCHIVE_URL": mirror.resolve().as_uri(),  # the local mirror, not data.binance.vision
        "LAKEHOUSE_REST_FILL": "0",  # no exchange REST calls (gaps are still found and reported)
        "LAKEHOUSE_SYMBOLS": UNIVERSE,
        "LAKEHOUSE_STORAGE": storage or default_storage(),
        "LAKEHOUSE_START_DATE": START_DATE,
    }


def shell_line(env: dict[str, str]) -> str:
    """``VAR=value ...`` as one would type it before a command."""
    return " ".join(f"{name}={value}" for name, value in env.items())
