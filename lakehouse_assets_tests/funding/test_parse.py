"""Parsing the real USD-M fundingRate month (see data/binance/PROVENANCE.md), REST payloads, and damaged copies.

Expected values are read off the real file; damaged inputs are derived from its bytes in the test.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from lakehouse_assets.archive.client import parse_checksum
from lakehouse_assets.funding.parse import (
    BINANCE_DEFAULT_INTERVAL_HOURS,
    parse_funding_month_csv,
    parse_funding_month_zip,
    parse_funding_rest_payload,
)
from lakehouse_assets.funding.schema import RAW_FUNDING_SCHEMA, SILVER_FUNDING_SCHEMA
from lakehouse_assets.funding.transforms import snap_events
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.klines.parse import ArchiveFileError
from lakehouse_assets_tests.samples import FUNDING_MONTH_ZIP, funding_month_csv, utc

UM_BTC = Instrument("um", "BTCUSDT")


def parse_csv(csv: bytes, month: str = "2026-04") -> pl.DataFrame:
    return parse_funding_month_csv(csv, instrument=UM_BTC, month=month, file_name="test.csv")


def test_the_real_month_zip_matches_its_published_checksum() -> None:
    published = parse_checksum(Path(str(FUNDING_MONTH_ZIP) + ".CHECKSUM").read_bytes(), expected_name=FUNDING_MONTH_ZIP.name)
    assert hashlib.sha256(FUNDING_MONTH_ZIP.read_bytes()).hexdigest() == published
    assert published.startswith("51cdeb4de7d5ef1d")


def test_real_month_parses_to_90_settlements_with_exact_values() -> None:
    raw = parse_funding_month_zip(FUNDING_MONTH_ZIP.read_bytes(), instrument=UM_BTC, month="2026-04", file_name=FUNDING_MONTH_ZIP.name)
    assert raw.schema == pl.Schema(RAW_FUNDING_SCHEMA)
    assert raw.height == 90
    assert raw["funding_interval_hours"].unique().to_list() == [8]
    assert raw["mark_price"].null_count() == 90  # the archive has no mark price
    first, fourth, last = raw.row(0, named=True), raw.row(3, named=True), raw.row(-1, named=True)
    assert (first["calc_time_ms"], first["funding_rate"]) == (1775001600000, -0.00003449)
    assert (fourth["calc_time_ms"], fourth["funding_rate"]) == (1775088000003, 0.00003521)  # 3 ms late
    assert (last["calc_time_ms"], last["funding_rate"]) == (1777564800000, -0.00002904)
    assert raw["funding_rate"].sum() == pytest.approx(sum(float(line.split(",")[2]) for line in funding_month_csv().decode().splitlines()[1:]))


def test_snapping_puts_every_settlement_on_its_8h_slot_and_keeps_the_raw_time() -> None:
    raw = parse_funding_month_zip(FUNDING_MONTH_ZIP.read_bytes(), instrument=UM_BTC, month="2026-04", file_name=FUNDING_MONTH_ZIP.name)
    silver = snap_events(raw, instrument=UM_BTC, source="archive")
    assert silver.columns == list(SILVER_FUNDING_SCHEMA)
    assert silver["funding_time"].to_list() == [
        utc(2026, 4, 1) + k * (utc(2026, 4, 1, 8) - utc(2026, 4, 1)) for k in range(90)
    ]
    late_ms = (silver["calc_time"] - silver["funding_time"]).dt.total_milliseconds()
    assert int((late_ms > 0).sum()) == 49  # PROVENANCE: 49 of 90 calc_times are a few ms late
    assert int(late_ms.min()) == 0 and int(late_ms.max()) == 13
    row = silver.row(3, named=True)
    assert row["funding_time"] == utc(2026, 4, 2, 0) and row["calc_time"] == datetime(2026, 4, 2, 0, 0, 0, 3000, tzinfo=UTC)
    assert silver["source"].unique().to_list() == ["archive"]


def test_a_settlement_recorded_a_few_ms_early_snaps_forward_to_its_slot() -> None:
    lines = funding_month_csv().decode().splitlines(keepends=True)
    lines[2] = lines[2].replace("1775030400000", "1775030399998")  # 08:00 settlement, 2 ms early
    raw = parse_csv("".join(lines).encode())
    silver = snap_events(raw, instrument=UM_BTC, source="archive")
    assert silver["funding_time"][1] == utc(2026, 4, 1, 8)


def test_headerless_and_crlf_copies_parse_identically() -> None:
    csv = funding_month_csv()
    reference = parse_csv(csv)
    headerless = csv.split(b"\n", 1)[1]
    assert parse_csv(headerless).equals(reference)
    assert parse_csv(csv.replace(b"\n", b"\r\n")).equals(reference)


def test_exact_duplicate_rows_are_dropped() -> None:
    lines = funding_month_csv().decode().splitlines(keepends=True)
    doubled = "".join(lines[:1] + lines[1:] + lines[1:11]).encode()
    assert parse_csv(doubled).height == 90


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c[:-1], "truncated CSV: last line is not terminated"),
        (lambda c: c.split(b"\n", 1)[0] + b"\n", "header only"),
        (lambda c: b"", "empty CSV"),
        (lambda c: c.replace(b"1775088000003,8,", b"1775088000003,8,0.0001,"), "line 5 has 4 fields"),
        (lambda c: c.replace(b"1775088000003", b"1775088000"), "line 5: calc_time '1775088000' is not 13-digit"),
        (lambda c: c.replace(b"1775088000003,8", b"1775088000003,0"), "line 5: funding_interval_hours '0'"),
        (lambda c: c.replace(b"0.00003521", b"nan"), "line 5: last_funding_rate 'nan'"),
        (lambda c: c.replace(b"1777564800000", b"1777593600000"), "outside 2026-04"),  # a May slot
    ],
)
def test_bad_csv_fails_naming_file_instrument_and_line(mutate, message) -> None:
    with pytest.raises(ArchiveFileError) as info:
        parse_csv(mutate(funding_month_csv()))
    assert message in str(info.value)
    assert "test.csv (um:BTCUSDT)" in str(info.value)


def test_the_month_must_match_the_file_name() -> None:
    with pytest.raises(ArchiveFileError, match="zip member 'BTCUSDT-fundingRate-2026-04.csv' is for BTCUSDT 2026-04, expected BTCUSDT 2026-05"):
        parse_funding_month_zip(FUNDING_MONTH_ZIP.read_bytes(), instrument=UM_BTC, month="2026-05", file_name="x.zip")
    with pytest.raises(ArchiveFileError, match="outside 2026-05"):
        parse_csv(funding_month_csv(), month="2026-05")


def test_corrupt_and_truncated_zips_are_rejected() -> None:
    data = FUNDING_MONTH_ZIP.read_bytes()
    for broken in (data[: len(data) // 2], data[:-1], b"PK\x03\x04garbage", b""):
        with pytest.raises(ArchiveFileError, match="corrupt zip"):
            parse_funding_month_zip(broken, instrument=UM_BTC, month="2026-04", file_name=FUNDING_MONTH_ZIP.name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.csv", funding_month_csv())
        archive.writestr("b.csv", funding_month_csv())
    with pytest.raises(ArchiveFileError, match="expected exactly one CSV member"):
        parse_funding_month_zip(buffer.getvalue(), instrument=UM_BTC, month="2026-04", file_name="two.zip")


def envelope(rows: list[dict], **extra: object) -> bytes:
    return json.dumps({"rows": rows, "funding_info": None, "funding_info_checked": True, **extra}).encode()


def test_rest_payload_parses_rows_mark_prices_and_the_fundinginfo_interval() -> None:
    # Binance's documented response example for GET /fapi/v1/fundingRate (first row has a mark price,
    # the second the empty string Binance sends for old settlements).
    rows = [
        {"symbol": "BTCUSDT", "fundingRate": "-0.03750000", "fundingTime": 1570608000000, "markPrice": "34287.54619963"},
        {"symbol": "BTCUSDT", "fundingRate": "0.00010000", "fundingTime": 1570636800000, "markPrice": ""},
    ]
    raw, interval = parse_funding_rest_payload(envelope(rows), instrument=UM_BTC, file_name="d.json")
    assert raw["calc_time_ms"].to_list() == [1570608000000, 1570636800000]
    assert raw["funding_rate"].to_list() == [-0.0375, 0.0001]
    assert raw["mark_price"].to_list() == [34287.54619963, None]
    assert raw["funding_interval_hours"].null_count() == 2  # REST does not say; silver infers it
    assert interval == BINANCE_DEFAULT_INTERVAL_HOURS  # fundingInfo checked, symbol not listed
    adjusted = {"symbol": "BTCUSDT", "adjustedFundingRateCap": "0.02", "adjustedFundingRateFloor": "-0.02", "fundingIntervalHours": 4}
    assert parse_funding_rest_payload(envelope(rows, funding_info=adjusted), instrument=UM_BTC, file_name="d.json")[1] == 4
    unchecked = envelope(rows, funding_info_checked=False)
    assert parse_funding_rest_payload(unchecked, instrument=UM_BTC, file_name="d.json")[1] is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "not the expected JSON envelope"),
        (json.dumps({"rows": {}}).encode(), "'rows' is not a list"),
        (envelope([{"symbol": "ETHUSDT", "fundingTime": 1570608000000, "fundingRate": "0.0001"}]), "is for 'ETHUSDT'"),
        (envelope([{"symbol": "BTCUSDT", "fundingTime": "soon", "fundingRate": "0.0001"}]), "lacks a numeric"),
        (envelope([{"symbol": "BTCUSDT", "fundingTime": 1570608000, "fundingRate": "0.0001"}]), "invalid fundingTime"),
    ],
)
def test_bad_rest_payloads_are_named(payload: bytes, message: str) -> None:
    with pytest.raises(ArchiveFileError, match=message) as info:
        parse_funding_rest_payload(payload, instrument=UM_BTC, file_name="BTCUSDT-fundingRate-2026-05-03.json", day=date(2026, 5, 3))
    assert "BTCUSDT-fundingRate-2026-05-03.json (um:BTCUSDT, 2026-05-03)" in str(info.value)
