"""Parse Binance funding-rate sources into raw events: the monthly archive and the REST payload.

Monthly archive (``data/futures/<um|cm>/monthly/fundingRate/<SYMBOL>/<SYMBOL>-fundingRate-YYYY-MM.zip``):
one CSV ``calc_time,funding_interval_hours,last_funding_rate``, ``calc_time`` in epoch ms and a few
ms after the funding slot, one row per settlement. Columns are mapped by position (the header is
optional, as in the kline files) and every row must belong to the month the file is named for.

REST payload: what ``bronze/funding_archive`` stored for a day fetched through ccxt before the month
was published: Binance's raw ``fundingRate`` rows (``symbol, fundingTime, fundingRate[, markPrice]``)
plus the symbol's ``fundingInfo`` entry, wrapped in a small JSON envelope (see ``funding_rest``).
REST rows carry no interval; ``funding_transforms.fill_intervals`` derives it from their spacing.

Both are strict: anything malformed raises ``ArchiveFileError`` naming the file, instrument and
line, so a bad file fails its days loudly instead of landing plausible but wrong rates.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
import zlib
from datetime import UTC, date, datetime

import polars as pl

from lakehouse_assets.archive.zip_limits import DEFAULT_ZIP_LIMITS, ZipLimitError, ZipLimits, check_entries, read_member
from lakehouse_assets.funding.schema import HOUR_MS, RAW_FUNDING_SCHEMA, month_bounds
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.klines.parse import ArchiveFileError

ARCHIVE_COLUMNS = ("calc_time", "funding_interval_hours", "last_funding_rate")
_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_MEMBER_RE = re.compile(r"(?P<symbol>[A-Za-z0-9_]+)-fundingRate-(?P<month>\d{4}-\d{2})\.csv")
_MS_MIN, _MS_MAX = 10**12, 10**13 - 1


def funding_month_file(symbol: str, month: str) -> str:
    return f"{symbol}-fundingRate-{month}.zip"


def _error(reason: str, file: str, instrument: Instrument, day: date | None = None) -> ArchiveFileError:
    return ArchiveFileError(reason, file=file, market=instrument.market, symbol=instrument.symbol, day=day)


def parse_funding_month_zip(
    data: bytes, *, instrument: Instrument, month: str, file_name: str, limits: ZipLimits = DEFAULT_ZIP_LIMITS
) -> pl.DataFrame:
    """Raw events (RAW_FUNDING_SCHEMA) of one monthly fundingRate zip, sorted by calc_time.

    The member is inflated within ``limits`` (see ``zip_limits``), as every archive zip is.
    """
    if not data:
        raise _error("corrupt zip: file is empty (0 bytes)", file_name, instrument)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in check_entries(archive, limits) if not m.is_dir()]
            if len(members) != 1 or not members[0].filename.lower().endswith(".csv"):
                names = ", ".join(m.filename for m in members[:5]) or "none"
                raise _error(f"corrupt zip: expected exactly one CSV member, found {names}", file_name, instrument)
            found = _MEMBER_RE.fullmatch(members[0].filename.rsplit("/", 1)[-1])
            if found and (found["symbol"], found["month"]) != (instrument.symbol, month):
                raise _error(
                    f"zip member {members[0].filename!r} is for {found['symbol']} {found['month']}, "
                    f"expected {instrument.symbol} {month}",
                    file_name,
                    instrument,
                )
            csv = read_member(archive, members[0], limits)  # verifies CRC-32
    except ArchiveFileError:
        raise
    except ZipLimitError as exc:
        raise _error(str(exc), file_name, instrument) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise _error(f"corrupt zip: {type(exc).__name__}: {exc}", file_name, instrument) from exc
    return parse_funding_month_csv(csv, instrument=instrument, month=month, file_name=file_name)


def parse_funding_month_csv(csv: bytes, *, instrument: Instrument, month: str, file_name: str) -> pl.DataFrame:
    """Line-by-line on purpose: a month is ~90..750 rows, and every bad line gets named."""
    text = csv.removeprefix(b"\xef\xbb\xbf")
    if not text:
        raise _error("empty CSV: no rows", file_name, instrument)
    if not text.endswith(b"\n"):
        raise _error("truncated CSV: last line is not terminated", file_name, instrument)
    try:
        lines = text.decode("ascii").split("\n")[:-1]
    except UnicodeDecodeError as exc:
        raise _error(f"CSV is not ASCII text: {exc}", file_name, instrument) from None
    first_field = lines[0].split(",", 1)[0].strip() if lines else ""
    start_line = 1
    if lines and _INT_RE.fullmatch(first_field) is None:
        header = [f.strip() for f in lines[0].rstrip("\r").split(",")]
        if len(header) != len(ARCHIVE_COLUMNS):
            raise _error(f"line 1 is neither a header nor a funding row: {lines[0]!r}", file_name, instrument)
        lines, start_line = lines[1:], 2
    if not lines:
        raise _error("empty CSV: header only, no funding rows", file_name, instrument)

    first_day, next_month = month_bounds(month)
    lo = int(datetime(first_day.year, first_day.month, 1, tzinfo=UTC).timestamp()) * 1000
    hi = int(datetime(next_month.year, next_month.month, 1, tzinfo=UTC).timestamp()) * 1000
    calc, interval, rate = [], [], []
    for offset, raw_line in enumerate(lines):
        line_no = offset + start_line
        line = raw_line.rstrip("\r")
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(ARCHIVE_COLUMNS):
            raise _error(
                f"line {line_no} has {len(fields)} fields, expected {len(ARCHIVE_COLUMNS)}: {line!r}", file_name, instrument
            )
        calc_s, hours_s, rate_s = fields
        if _INT_RE.fullmatch(calc_s) is None or not _MS_MIN <= int(calc_s) <= _MS_MAX:
            raise _error(f"line {line_no}: calc_time {calc_s!r} is not 13-digit epoch milliseconds: {line!r}", file_name, instrument)
        if _INT_RE.fullmatch(hours_s) is None or int(hours_s) <= 0:
            raise _error(f"line {line_no}: funding_interval_hours {hours_s!r} is not a positive integer: {line!r}", file_name, instrument)
        if _FLOAT_RE.fullmatch(rate_s) is None or not math.isfinite(float(rate_s)):
            raise _error(f"line {line_no}: last_funding_rate {rate_s!r} is not a finite number: {line!r}", file_name, instrument)
        ms = int(calc_s)
        slot = (ms + HOUR_MS // 2) // HOUR_MS * HOUR_MS  # the settlement's hour: rows run a few ms late
        if not lo <= slot < hi:
            raise _error(
                f"line {line_no}: calc_time {_fmt(ms)} is outside {month} (the file belongs to another month): {line!r}",
                file_name,
                instrument,
            )
        calc.append(ms)
        interval.append(int(hours_s))
        rate.append(float(rate_s))
    frame = pl.DataFrame(
        {"calc_time_ms": calc, "funding_interval_hours": interval, "funding_rate": rate, "mark_price": [None] * len(calc)},
        schema=RAW_FUNDING_SCHEMA,
    )
    return frame.unique(maintain_order=True).sort("calc_time_ms")


# Binance's fundingInfo endpoint lists only symbols whose interval (or cap) was adjusted;
# every other perpetual settles on the exchange's default schedule.
BINANCE_DEFAULT_INTERVAL_HOURS = 8


def parse_funding_rest_payload(
    data: bytes, *, instrument: Instrument, file_name: str, day: date | None = None
) -> tuple[pl.DataFrame, int | None]:
    """Raw events of a stored REST payload, and the interval fundingInfo states for the symbol.

    The interval is the symbol's ``fundingIntervalHours`` when fundingInfo lists it, Binance's
    default when fundingInfo was fetched and does not list it, and None when it was not fetched.
    The caller uses it only when the rows' own spacing cannot tell the interval (a lone row).
    """
    try:
        envelope = json.loads(data)
        rows = envelope["rows"]
        info = envelope.get("funding_info")
        info_checked = bool(envelope.get("funding_info_checked"))
    except (ValueError, KeyError, TypeError) as exc:
        raise _error(f"REST payload is not the expected JSON envelope: {exc}", file_name, instrument, day) from exc
    if not isinstance(rows, list):
        raise _error("REST payload 'rows' is not a list", file_name, instrument, day)
    calc, rate, mark = [], [], []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _error(f"REST row {i} is not an object: {row!r}", file_name, instrument, day)
        if row.get("symbol") not in (None, instrument.symbol):
            raise _error(f"REST row {i} is for {row.get('symbol')!r}, expected {instrument.symbol}", file_name, instrument, day)
        try:
            ms = int(row["fundingTime"])
            value = float(row["fundingRate"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _error(f"REST row {i} lacks a numeric fundingTime/fundingRate: {row!r}", file_name, instrument, day) from exc
        if not _MS_MIN <= ms <= _MS_MAX or not math.isfinite(value):
            raise _error(f"REST row {i} has an invalid fundingTime/fundingRate: {row!r}", file_name, instrument, day)
        price = row.get("markPrice")
        # Binance sends "" for settlements that predate mark prices in this endpoint.
        mark.append(float(price) if price not in (None, "") else None)
        calc.append(ms)
        rate.append(value)
    interval: int | None = BINANCE_DEFAULT_INTERVAL_HOURS if info_checked else None
    if isinstance(info, dict) and info.get("fundingIntervalHours") not in (None, ""):
        interval = int(info["fundingIntervalHours"])
    frame = pl.DataFrame(
        {"calc_time_ms": calc, "funding_interval_hours": [None] * len(calc), "funding_rate": rate, "mark_price": mark},
        schema=RAW_FUNDING_SCHEMA,
    )
    return frame.unique(maintain_order=True).sort("calc_time_ms"), interval


def _fmt(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
