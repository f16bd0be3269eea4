"""What is parsed is checked: short rows, numbers that overflow, and zips that inflate without bound.

Every input is a real Binance file (data/binance/PROVENANCE.md) or a copy of it damaged in memory:
a row that lost a field, a value pushed past the float range, a declared size rewritten in the zip
headers. The zip bombs are generated here (zeros deflate about 1000:1), never stored.
"""

from __future__ import annotations

import bz2  # noqa: F401  (zipfile's ZIP_BZIP2 needs it; imported so a missing module fails loudly here)
import io
import struct
import tracemalloc
import zipfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse_assets.funding.parse import parse_funding_month_zip
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.klines.parse import ArchiveFileError, parse_klines_csv, parse_klines_zip
from lakehouse_assets_tests.harness import failure_text, resources, run_klines
from lakehouse_assets_tests.samples import CM, DATA, SPOT, UM, contract_size, rewrite_zip_csv, write_checksum

MIB = 1024 * 1024

SPOT_CSV = "spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-09-21.csv"  # headerless, 8-decimal spot
UM_CSV = "futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2023-04-15.csv"  # with a header row
CM_ZIP = "futures/cm/daily/klines/BTCUSD_PERP/1m/BTCUSD_PERP-1m-2022-10-24.zip"  # with a header row
SPOT_ZIP = "spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip"
SPOT_US_ZIP = "spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2026-05-08.zip"  # microsecond timestamps
FUNDING_ZIP = "futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2026-04.zip"

# Line 5 of SPOT_CSV, as Binance published it.
SPOT_LINE_5 = (
    "1726877040000,63150.42000000,63150.42000000,63112.94000000,63112.94000000,4.34547000,"
    "1726877099999,274311.89423060,832,0.36810000,23237.97493600,0"
)


def member_of(relative: str) -> tuple[str, bytes]:
    with zipfile.ZipFile(DATA / relative) as archive:
        (info,) = archive.infolist()
        return info.filename, archive.read(info)


def csv_of(relative: str) -> bytes:
    return member_of(relative)[1] if relative.endswith(".zip") else (DATA / relative).read_bytes()


def rezip(name: str, csv: bytes, *, compression: int = zipfile.ZIP_DEFLATED, extra_dirs: int = 0) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for i in range(extra_dirs):
            archive.mkdir(f"dir{i}")
        archive.writestr(name, csv)
    return buffer.getvalue()


def with_line(csv: bytes, index: int, change: Callable[[list[bytes]], list[bytes]]) -> bytes:
    """``csv`` with the fields of line ``index`` (0-based, header included) replaced by ``change(fields)``."""
    rows = csv.split(b"\n")
    rows[index] = b",".join(change(rows[index].split(b",")))
    return b"\n".join(rows)


def parse_spot_csv(csv: bytes) -> pl.DataFrame:
    return parse_klines_csv(
        csv, instrument=SPOT, interval="1m", day=date(2024, 9, 21), file_name="BTCUSDT-1m-2024-09-21.csv"
    ).frame


def refusal(parse: Callable[[], object]) -> ArchiveFileError:
    with pytest.raises(ArchiveFileError) as info:
        parse()
    return info.value


def with_declared_size(data: bytes, size: int) -> bytes:
    """A one-member zip whose headers (local and central directory) declare ``size`` uncompressed bytes."""
    assert data[:4] == b"PK\x03\x04"
    patched = bytearray(data)
    struct.pack_into("<I", patched, 22, size)  # local file header: uncompressed size
    struct.pack_into("<I", patched, data.rindex(b"PK\x01\x02") + 24, size)  # central directory entry
    return bytes(patched)


def zeros_zip(name: str, size: int) -> bytes:
    """A zip bomb: ``size`` bytes of ASCII '0' in one deflated member, written 1 MiB at a time."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open(name, "w") as stream:
            chunk = b"0" * MIB
            for _ in range(size // MIB):
                stream.write(chunk)
            stream.write(b"0" * (size % MIB))
    return buffer.getvalue()


def peak_bytes(call: Callable[[], object]) -> tuple[int, BaseException | None]:
    """Peak Python heap while ``call`` runs (zlib's output buffers included), and what it raised."""
    tracemalloc.start()
    try:
        call()
        raised = None
    except Exception as exc:  # noqa: BLE001 - returned for the caller to assert on
        raised = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, raised


# ---------------------------------------------------------------------------------------------
# rows whose field count is not the file's


def test_a_row_that_lost_a_value_is_refused_instead_of_reading_ignore_as_taker_buy_quote_volume() -> None:
    csv = csv_of(SPOT_CSV)
    damaged = with_line(csv, 4, lambda f: f[:10] + f[11:])  # taker_buy_quote_volume lost: 11 fields
    error = refusal(lambda: parse_spot_csv(damaged))
    assert str(error) == (
        "BTCUSDT-1m-2024-09-21.csv (spot:BTCUSDT, 2024-09-21): line 5 has 11 fields, expected 12: "
        "'1726877040000,63150.42000000,63150.42000000,63112.94000000,63112.94000000,4.34547000,"
        "1726877099999,274311.89423060,832,0.36810000,0'"
    )
    assert (error.file, error.market, error.symbol, error.day) == (
        "BTCUSDT-1m-2024-09-21.csv", "spot", "BTCUSDT", date(2024, 9, 21)
    )


def test_a_row_that_lost_its_ignore_field_is_refused_but_a_blank_ignore_field_is_a_full_row() -> None:
    csv = csv_of(SPOT_CSV)
    blank = csv.replace(b",0\n", b",\n")  # 12 fields, the unused last one empty: still a full row
    assert parse_spot_csv(blank).equals(parse_spot_csv(csv))
    short = with_line(csv, 4, lambda f: f[:11])  # every value intact, but the row is short
    assert refusal(lambda: parse_spot_csv(short)).reason == (
        f"line 5 has 11 fields, expected 12: '{SPOT_LINE_5.removesuffix(',0')}'"
    )
    short_in_blank = with_line(blank, 4, lambda f: f[:11])
    assert refusal(lambda: parse_spot_csv(short_in_blank)).reason == (
        f"line 5 has 11 fields, expected 12: '{SPOT_LINE_5.removesuffix(',0')}'"
    )


@pytest.mark.parametrize(
    ("relative", "instrument", "interval", "day", "index", "expected_line"),
    [
        (SPOT_ZIP, SPOT, "1m", date(2020, 1, 1), 719, 720),
        (UM_CSV, UM, "1m", date(2023, 4, 15), 101, 102),  # header row: line numbers count it
        (CM_ZIP, CM, "1m", date(2022, 10, 24), 1001, 1002),  # COIN-M, header
        (SPOT_US_ZIP, SPOT, "1h", date(2026, 5, 8), 12, 13),  # microsecond file
    ],
    ids=["spot-zip", "um-header-csv", "cm-header-zip", "spot-us-zip"],
)
def test_a_short_row_is_named_in_every_file_shape(
    relative: str, instrument: Instrument, interval: str, day: date, index: int, expected_line: int
) -> None:
    name, csv = member_of(relative) if relative.endswith(".zip") else (Path(relative).name, csv_of(relative))
    original = csv.split(b"\n")[index]
    damaged = with_line(csv, index, lambda f: f[:11])
    zip_name = name.removesuffix(".csv") + ".zip"
    error = refusal(
        lambda: parse_klines_zip(
            rezip(name, damaged), instrument=instrument, interval=interval, day=day, file_name=zip_name,
            contract_size=contract_size(instrument),
        )
    )
    shown = original.rsplit(b",", 1)[0].decode()
    assert str(error) == (
        f"{zip_name} ({instrument.market}:{instrument.symbol}, {day.isoformat()}): "
        f"line {expected_line} has 11 fields, expected 12: {shown!r}"
    )


def test_a_short_row_fails_the_silver_build_naming_file_day_symbol_and_line(
    tmp_path: Path, mirror: Path
) -> None:
    rewrite_zip_csv(
        mirror / "data" / SPOT_ZIP.replace("2020-01-01", "2020-01-02"),
        lambda csv: with_line(csv, 9, lambda f: f[:10] + f[11:]),
    )
    lake = tmp_path / "lake"
    with dg.instance_for_test() as instance:
        result = run_klines(
            resources(str(lake), mirror.as_uri(), "spot:BTCUSDT"), "2020-01-02", "2020-01-02", instance,
            raise_on_error=False,
        )
    assert not result.success
    assert (
        "BTCUSDT-1m-2020-01-02.zip (spot:BTCUSDT, 2020-01-02): line 10 has 11 fields, expected 12: "
        "'1577923740000,7195.60000000,7195.98000000,7190.81000000,7191.64000000,10.10466400,"
        "1577923799999,72692.49942496,138,7.76905400,0'"
    ) in failure_text(result)
    assert not (lake / "silver").exists() or not list((lake / "silver").rglob("*.parquet"))


def test_conflicting_rows_raise_their_own_error_class_which_survives_pickling() -> None:
    # A REST fetch fails just its window on this class; a multiprocess executor pickles it.
    import pickle

    from lakehouse_assets.klines.parse import ConflictingRowsError

    csv = csv_of(SPOT_CSV)
    rows = csv.split(b"\n")
    rows.insert(6, with_line(rows[4], 0, lambda f: [*f[:4], b"63100.00000000", *f[5:]]))  # 00:04, other close
    error = refusal(lambda: parse_spot_csv(b"\n".join(rows)))
    assert isinstance(error, ConflictingRowsError)
    assert error.open_time_ms == 1726877040000
    assert str(error) == (
        "BTCUSDT-1m-2024-09-21.csv (spot:BTCUSDT, 2024-09-21): conflicting rows for open_time "
        "2024-09-21 00:04:00 UTC: lines 5 and 7 differ"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ConflictingRowsError
    assert (str(copy), copy.open_time_ms, copy.day) == (str(error), error.open_time_ms, error.day)


# ---------------------------------------------------------------------------------------------
# numbers that parse but cannot be stored


@pytest.mark.parametrize(
    ("position", "value", "expected"),
    [
        (5, b"1e400", "column 6 (volume): '1e400' is not a finite number (it overflows a 64-bit float)"),
        (1, b"-1e400", "column 2 (open): '-1e400' is not a finite number (it overflows a 64-bit float)"),
        (10, b"2.5E+308", "column 11 (taker_buy_quote_volume): '2.5E+308' is not a finite number "
                          "(it overflows a 64-bit float)"),
        (8, b"99999999999999999999", "column 9 (count): '99999999999999999999' is outside the 64-bit "
                                     "integer range"),
    ],
    ids=["1e400", "-1e400", "2.5e308", "int64-overflow"],
)
def test_a_value_that_overflows_names_its_line_and_column(position: int, value: bytes, expected: str) -> None:
    damaged = with_line(csv_of(SPOT_CSV), 4, lambda f: [*f[:position], value, *f[position + 1 :]])
    fields = SPOT_LINE_5.split(",")
    fields[position] = value.decode()
    assert refusal(lambda: parse_spot_csv(damaged)).reason == f"line 5, {expected}: {','.join(fields)!r}"


def test_an_overflow_in_a_header_file_counts_the_header_line() -> None:
    csv = csv_of(UM_CSV)
    damaged = with_line(csv, 100, lambda f: [*f[:4], b"1e999", *f[5:]])
    error = refusal(
        lambda: parse_klines_csv(
            damaged, instrument=UM, interval="1m", day=date(2023, 4, 15), file_name="BTCUSDT-1m-2023-04-15.csv"
        )
    )
    assert str(error) == (
        "BTCUSDT-1m-2023-04-15.csv (um:BTCUSDT, 2023-04-15): line 101, column 5 (close): '1e999' is not a "
        "finite number (it overflows a 64-bit float): '1681522740000,30367.50,30367.50,30362.30,1e999,"
        "43.726,1681522799999,1327685.81000,702,13.392,406632.60070,0'"
    )


# ---------------------------------------------------------------------------------------------
# zip size limits


def test_a_zip_bomb_is_refused_from_its_declared_size_without_inflating() -> None:
    from lakehouse_assets.archive.zip_limits import ZipLimits

    bomb = zeros_zip("BTCUSDT-1m-2020-01-01.csv", 8 * MIB)  # ~33 KB on disk
    peak, raised = peak_bytes(
        lambda: parse_klines_zip(
            bomb, instrument=SPOT, interval="1m", day=date(2020, 1, 1), file_name="BTCUSDT-1m-2020-01-01.zip",
            limits=ZipLimits(max_member_bytes=MIB),
        )
    )
    assert isinstance(raised, ArchiveFileError)
    assert str(raised) == (
        "BTCUSDT-1m-2020-01-01.zip (spot:BTCUSDT, 2020-01-01): oversized zip: member 'BTCUSDT-1m-2020-01-01.csv' "
        "declares 8,388,608 bytes (8.0 MiB) uncompressed, over the 1,048,576 bytes (1.0 MiB) limit; refused "
        "before inflating (raise LAKEHOUSE_ZIP_MAX_MEMBER_MIB if the file is genuine)"
    )
    assert peak < 256 * 1024  # nothing was inflated


def test_the_default_cap_refuses_a_member_declaring_300_mib_before_inflating() -> None:
    declared = with_declared_size((DATA / SPOT_ZIP).read_bytes(), 300 * MIB)
    error = refusal(
        lambda: parse_klines_zip(
            declared, instrument=SPOT, interval="1m", day=date(2020, 1, 1), file_name="BTCUSDT-1m-2020-01-01.zip"
        )
    )
    assert error.reason == (
        "oversized zip: member 'BTCUSDT-1m-2020-01-01.csv' declares 314,572,800 bytes (300.0 MiB) "
        "uncompressed, over the 268,435,456 bytes (256.0 MiB) limit; refused before inflating "
        "(raise LAKEHOUSE_ZIP_MAX_MEMBER_MIB if the file is genuine)"
    )


def test_a_zip_lying_about_its_size_is_stopped_while_inflating() -> None:
    # 300 MiB of zeros (over the default cap) whose headers claim 250,000 bytes (under it).
    liar = with_declared_size(zeros_zip("BTCUSDT-1m-2020-01-01.csv", 300 * MIB), 250_000)
    peak, raised = peak_bytes(
        lambda: parse_klines_zip(
            liar, instrument=SPOT, interval="1m", day=date(2020, 1, 1), file_name="BTCUSDT-1m-2020-01-01.zip"
        )
    )
    assert isinstance(raised, ArchiveFileError)
    assert raised.reason == (
        "corrupt zip: member 'BTCUSDT-1m-2020-01-01.csv' inflates to more than the 250,000 bytes its header "
        "declares; stopped after 250,001 bytes"
    )
    assert peak < 4 * MIB  # the 300 MiB were never produced


def test_a_zip_listing_more_entries_than_allowed_is_refused() -> None:
    name, csv = member_of(SPOT_ZIP)
    crowded = rezip(name, csv, extra_dirs=4)  # one real CSV among 4 directory entries
    error = refusal(
        lambda: parse_klines_zip(
            crowded, instrument=SPOT, interval="1m", day=date(2020, 1, 1), file_name="BTCUSDT-1m-2020-01-01.zip"
        )
    )
    assert error.reason == "oversized zip: it lists 5 entries, more than the 4 allowed (a Binance zip holds one CSV)"


def test_a_member_compressed_without_an_output_bound_is_refused() -> None:
    name, csv = member_of(SPOT_ZIP)
    error = refusal(
        lambda: parse_klines_zip(
            rezip(name, csv, compression=zipfile.ZIP_BZIP2),
            instrument=SPOT, interval="1m", day=date(2020, 1, 1), file_name="BTCUSDT-1m-2020-01-01.zip",
        )
    )
    assert error.reason == (
        "zip member 'BTCUSDT-1m-2020-01-01.csv' uses compression method 12; only stored and deflated members "
        "are read (Binance deflates)"
    )


def test_funding_zips_have_the_same_limits() -> None:
    from lakehouse_assets.archive.zip_limits import ZipLimits

    real = (DATA / FUNDING_ZIP).read_bytes()
    kwargs = {"instrument": UM, "month": "2026-04", "file_name": "BTCUSDT-fundingRate-2026-04.zip"}
    assert parse_funding_month_zip(real, **kwargs).height == 90
    error = refusal(lambda: parse_funding_month_zip(with_declared_size(real, 300 * MIB), **kwargs))
    assert str(error) == (
        "BTCUSDT-fundingRate-2026-04.zip (um:BTCUSDT): oversized zip: member 'BTCUSDT-fundingRate-2026-04.csv' "
        "declares 314,572,800 bytes (300.0 MiB) uncompressed, over the 268,435,456 bytes (256.0 MiB) limit; "
        "refused before inflating (raise LAKEHOUSE_ZIP_MAX_MEMBER_MIB if the file is genuine)"
    )
    error = refusal(lambda: parse_funding_month_zip(real, **kwargs, limits=ZipLimits(max_member_bytes=2_000)))
    assert error.reason == (
        "oversized zip: member 'BTCUSDT-fundingRate-2026-04.csv' declares 2,539 bytes uncompressed, over the "
        "2,000 bytes limit; refused before inflating (raise LAKEHOUSE_ZIP_MAX_MEMBER_MIB if the file is genuine)"
    )


def test_silver_refuses_a_bronze_zip_over_the_cap_naming_file_day_and_symbol(
    tmp_path: Path, mirror: Path
) -> None:
    path = mirror / "data" / SPOT_ZIP.replace("2020-01-01", "2020-01-02")
    path.write_bytes(with_declared_size(path.read_bytes(), 520 * MIB))
    write_checksum(path)  # a consistent publication: bronze verifies and stores it, silver must refuse it
    lake = tmp_path / "lake"
    with dg.instance_for_test() as instance:
        result = run_klines(
            resources(str(lake), mirror.as_uri(), "spot:BTCUSDT"), "2020-01-02", "2020-01-02", instance,
            raise_on_error=False,
        )
    assert not result.success
    assert (
        "BTCUSDT-1m-2020-01-02.zip (spot:BTCUSDT, 2020-01-02): oversized zip: member 'BTCUSDT-1m-2020-01-02.csv' "
        "declares 545,259,520 bytes (520.0 MiB) uncompressed, over the 268,435,456 bytes (256.0 MiB) limit; "
        "refused before inflating"
    ) in failure_text(result)
    assert not (lake / "silver").exists() or not list((lake / "silver").rglob("*.parquet"))


def test_zip_limits_must_be_positive() -> None:
    from lakehouse_assets.archive.zip_limits import ZipLimits

    with pytest.raises(ValueError, match="max_member_bytes must be >= 1, got 0"):
        ZipLimits(max_member_bytes=0)
    with pytest.raises(ValueError, match="max_entries must be >= 1, got 0"):
        ZipLimits(max_entries=0)
