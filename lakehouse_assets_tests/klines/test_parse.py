"""Parsing real Binance kline archives (see data/binance/PROVENANCE.md) and damaged copies of them.

Expected values are copied from the files themselves; corrupted inputs are derived from the
real bytes in the test (never by editing a fixture).
"""

from __future__ import annotations

import io
import pickle
import statistics
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from lakehouse_assets.instruments import Instrument
from lakehouse_assets.klines import parse as kline_parse
from lakehouse_assets.klines.parse import (
    ArchiveFileError,
    ParsedKlines,
    parse_klines_csv,
    parse_klines_zip,
)
from lakehouse_assets.klines.schema import (
    SILVER_KLINES_SCHEMA,
    empty_klines,
    interval_to_timedelta,
)
from lakehouse_assets_tests.samples import DATA, parse_real, real_csv, utc

SPOT_BTC = Instrument("spot", "BTCUSDT")
UM_BTC = Instrument("um", "BTCUSDT")
CM_BTC = Instrument("cm", "BTCUSD_PERP")
DAY1 = date(2020, 1, 1)
ZIP_2020_01_01 = "spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip"


def spot_day1_csv() -> bytes:
    return real_csv(ZIP_2020_01_01)


def parse_spot_day1(csv: bytes) -> ParsedKlines:
    return parse_klines_csv(
        csv, instrument=SPOT_BTC, interval="1m", day=DAY1, file_name="BTCUSDT-1m-2020-01-01.csv"
    )


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def lines(csv: bytes) -> list[bytes]:
    return csv.split(b"\n")[:-1]


def join(rows: list[bytes]) -> bytes:
    return b"\n".join(rows) + b"\n"


# (instrument, interval, day, rows, had_header, time_unit) for every real kline fixture.
REAL_FILES = [
    (SPOT_BTC, "1m", date(2020, 1, 1), 1440, False, "ms"),
    (SPOT_BTC, "1m", date(2020, 1, 2), 1440, False, "ms"),
    (SPOT_BTC, "1m", date(2020, 1, 3), 1440, False, "ms"),
    (SPOT_BTC, "1m", date(2024, 9, 21), 1440, False, "ms"),
    (Instrument("spot", "ADABTC"), "1m", date(2021, 11, 27), 1440, False, "ms"),
    (UM_BTC, "1m", date(2022, 4, 8), 1440, False, "ms"),
    (UM_BTC, "1m", date(2022, 5, 4), 1440, False, "ms"),
    (UM_BTC, "1m", date(2022, 5, 5), 1440, False, "ms"),
    (UM_BTC, "1m", date(2022, 5, 6), 1440, False, "ms"),
    (UM_BTC, "1m", date(2023, 4, 15), 1440, True, "ms"),
    (CM_BTC, "1m", date(2022, 10, 24), 1440, True, "ms"),
    (CM_BTC, "1m", date(2022, 10, 25), 1440, True, "ms"),
    (SPOT_BTC, "1h", date(2022, 9, 7), 24, False, "ms"),
    (SPOT_BTC, "1h", date(2022, 9, 8), 24, False, "ms"),
    (SPOT_BTC, "1h", date(2026, 5, 8), 24, False, "us"),
]


# ---------------------------------------------------------------------------------------------
# schema helpers


def test_silver_schema_order_and_empty_frame() -> None:
    assert list(SILVER_KLINES_SCHEMA) == [
        "market", "symbol", "interval", "open_time", "close_time", "open", "high", "low",
        "close", "volume", "quote_volume", "trade_count", "taker_buy_volume",
        "taker_buy_quote_volume", "source", "contract_volume", "taker_buy_contract_volume",
    ]  # fmt: skip
    assert SILVER_KLINES_SCHEMA["open_time"] == pl.Datetime("ms", "UTC")
    empty = empty_klines()
    assert empty.height == 0
    assert empty.schema == pl.Schema(SILVER_KLINES_SCHEMA)


def test_interval_to_timedelta() -> None:
    assert interval_to_timedelta("1s") == timedelta(seconds=1)
    assert interval_to_timedelta("1m") == timedelta(minutes=1)
    assert interval_to_timedelta("15m") == timedelta(minutes=15)
    assert interval_to_timedelta("12h") == timedelta(hours=12)
    assert interval_to_timedelta("1d") == timedelta(days=1)
    for bad in ("1M", "1mo", "1w", "3d", "", "60s"):
        with pytest.raises(ValueError, match="unsupported kline interval"):
            interval_to_timedelta(bad)


# ---------------------------------------------------------------------------------------------
# real files


@pytest.mark.parametrize(
    ("instrument", "interval", "day", "rows", "had_header", "unit"),
    REAL_FILES,
    ids=[f"{i.key}-{iv}-{d}" for i, iv, d, *_ in REAL_FILES],
)
def test_real_file_parses_to_a_full_clean_day(
    instrument: Instrument, interval: str, day: date, rows: int, had_header: bool, unit: str
) -> None:
    parsed = parse_real(instrument, interval, day)
    frame = parsed.frame
    step = interval_to_timedelta(interval)
    start = utc(day.year, day.month, day.day)

    assert frame.schema == pl.Schema(SILVER_KLINES_SCHEMA)
    assert (parsed.rows_in_file, frame.height, parsed.duplicates_dropped) == (rows, rows, 0)
    assert parsed.had_header is had_header
    assert parsed.time_unit == unit
    assert frame["open_time"].to_list() == [start + k * step for k in range(rows)]
    assert (frame["close_time"] - frame["open_time"]).unique().to_list() == [
        step - timedelta(milliseconds=1)
    ]
    assert frame["market"].unique().to_list() == [instrument.market]
    assert frame["symbol"].unique().to_list() == [instrument.symbol]
    assert frame["interval"].unique().to_list() == [interval]
    assert frame["source"].unique().to_list() == ["archive"]
    non_null = frame.drop("contract_volume", "taker_buy_contract_volume")
    assert sum(non_null.null_count().row(0)) == 0
    contract_nulls = frame.select("contract_volume", "taker_buy_contract_volume").null_count()
    expected_nulls = 0 if instrument.market == "cm" else rows
    assert contract_nulls.row(0) == (expected_nulls, expected_nulls)


def test_real_files_never_need_the_slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_args: object) -> None:
        raise AssertionError("valid file fell back to the line-by-line diagnostic path")

    monkeypatch.setattr(kline_parse, "_diagnose_lines", forbidden)
    for instrument, interval, day, *_ in REAL_FILES:
        parse_real(instrument, interval, day)


def test_spot_btcusdt_2020_01_01_values() -> None:
    frame = parse_real(SPOT_BTC, "1m", DAY1).frame
    first = frame.row(0, named=True)
    assert first["open_time"] == utc(2020, 1, 1, 0, 0)
    assert first["close_time"] == utc(2020, 1, 1, 0, 0, 59, 999000)
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        7195.24, 7196.25, 7183.14, 7186.68,
    )  # fmt: skip
    assert first["volume"] == 51.642812
    assert first["quote_volume"] == 371233.51835535
    assert first["trade_count"] == 493
    assert first["taker_buy_volume"] == 19.59823
    assert first["taker_buy_quote_volume"] == 140888.41428273
    assert first["contract_volume"] is None
    last = frame.row(-1, named=True)
    assert last["open_time"] == utc(2020, 1, 1, 23, 59)
    assert (last["open"], last["close"], last["trade_count"]) == (7198.71, 7200.85, 89)


def test_spot_2024_csv_and_adabtc_tiny_prices_parse_exactly() -> None:
    btc = parse_real(SPOT_BTC, "1m", date(2024, 9, 21)).frame.row(0, named=True)
    assert btc["open_time"] == utc(2024, 9, 21)
    assert (btc["open"], btc["close"], btc["volume"], btc["trade_count"]) == (
        63201.05, 63196.0, 10.91101, 2464,
    )  # fmt: skip

    ada = parse_real(Instrument("spot", "ADABTC"), "1m", date(2021, 11, 27)).frame
    first, last = ada.row(0, named=True), ada.row(-1, named=True)
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        0.00002853, 0.00002854, 0.00002851, 0.00002854,
    )  # fmt: skip
    assert (first["volume"], first["quote_volume"]) == (36304.2, 1.03547608)
    assert last["open_time"] == utc(2021, 11, 27, 23, 59)
    assert (last["open"], last["close"], last["taker_buy_quote_volume"]) == (
        0.00002818, 0.00002821, 0.14368173,
    )  # fmt: skip


def test_usdm_headerless_and_header_files() -> None:
    headerless = parse_real(UM_BTC, "1m", date(2022, 4, 8))
    row = headerless.frame.row(0, named=True)
    assert (row["open"], row["close"], row["volume"], row["trade_count"]) == (
        43417.1, 43402.7, 123.191, 1474,
    )  # fmt: skip
    assert row["contract_volume"] is None

    with_header = parse_real(UM_BTC, "1m", date(2023, 4, 15))
    assert with_header.had_header and with_header.rows_in_file == 1440
    first, last = with_header.frame.row(0, named=True), with_header.frame.row(-1, named=True)
    assert first["open_time"] == utc(2023, 4, 15)
    assert (first["open"], first["close"], first["volume"], first["trade_count"]) == (
        30453.0, 30452.4, 174.12, 1884,
    )  # fmt: skip
    assert (last["open"], last["close"], last["taker_buy_volume"]) == (30284.8, 30280.4, 9.539)


def test_coinm_volume_semantics_use_base_asset_and_usd_notional() -> None:
    parsed = parse_real(CM_BTC, "1m", date(2022, 10, 24))
    assert parsed.had_header
    first = parsed.frame.row(0, named=True)
    # file: 1666569600000,19560.7,19566.7,19555.5,19556.2,19431,…,99.33183109,425,9916,50.69336469,0
    assert first["open_time"] == utc(2022, 10, 24)
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        19560.7, 19566.7, 19555.5, 19556.2,
    )  # fmt: skip
    assert first["contract_volume"] == 19431.0
    assert first["volume"] == 99.33183109  # BTC, the column Binance names quote_volume
    assert first["quote_volume"] == 1943100.0  # 19431 contracts x 100 USD
    assert first["trade_count"] == 425
    assert first["taker_buy_contract_volume"] == 9916.0
    assert first["taker_buy_volume"] == 50.69336469
    assert first["taker_buy_quote_volume"] == 991600.0
    last = parsed.frame.row(-1, named=True)
    assert last["open_time"] == utc(2022, 10, 24, 23, 59)
    assert (last["contract_volume"], last["volume"], last["quote_volume"]) == (
        2594.0, 13.42149201, 259400.0,
    )  # fmt: skip
    assert (last["taker_buy_contract_volume"], last["taker_buy_volume"]) == (0.0, 0.0)

    day2 = parse_real(CM_BTC, "1m", date(2022, 10, 25)).frame.row(0, named=True)
    assert (day2["open"], day2["contract_volume"], day2["volume"], day2["quote_volume"]) == (
        19324.4, 3483.0, 18.02385187, 348300.0,
    )  # fmt: skip
    # USD notional / base volume = an average price in the bar's range, a sanity check on units.
    vwap = first["quote_volume"] / first["volume"]
    assert first["low"] * 0.999 < vwap < first["high"] * 1.001


def test_coinm_usd_notional_uses_the_contract_size_given() -> None:
    """The size is the caller's (exchangeInfo's contractSize): the same contracts at 10 USD each are a tenth."""
    csv = real_csv("futures/cm/daily/klines/BTCUSD_PERP/1m/BTCUSD_PERP-1m-2022-10-24.zip")
    eth_labelled = parse_klines_csv(
        csv, instrument=Instrument("cm", "ETHUSD_PERP"), interval="1m", day=date(2022, 10, 24),
        file_name="relabelled.csv", contract_size=10.0,
    )  # fmt: skip
    assert eth_labelled.frame["contract_volume"][0] == 19431.0
    assert eth_labelled.frame["quote_volume"][0] == 194310.0
    assert eth_labelled.frame["taker_buy_quote_volume"][0] == 99160.0


@pytest.mark.parametrize("size", [None, 0.0, -100.0, float("nan"), float("inf")])
def test_a_coinm_file_without_a_valid_contract_size_is_refused_naming_it(size: float | None) -> None:
    csv = real_csv("futures/cm/daily/klines/BTCUSD_PERP/1m/BTCUSD_PERP-1m-2022-10-24.zip")
    with pytest.raises(ValueError, match=r"cm:BTCUSD_PERP \(x.csv\): COIN-M volumes are counted in contracts") as info:
        parse_klines_csv(csv, instrument=CM_BTC, interval="1m", day=date(2022, 10, 24), file_name="x.csv",
                         contract_size=size)  # fmt: skip
    assert "contract size" in str(info.value) and repr(size) in str(info.value)
    assert not isinstance(info.value, ArchiveFileError)  # configuration, not a damaged file


def test_a_contract_size_for_spot_or_usdm_is_refused() -> None:
    with pytest.raises(ValueError, match=r"um:BTCUSDT \(x.csv\): a contract size applies to COIN-M \(cm\) instruments only"):
        parse_klines_csv(spot_day1_csv(), instrument=UM_BTC, interval="1m", day=DAY1, file_name="x.csv",
                         contract_size=100.0)  # fmt: skip


def test_microsecond_spot_file_is_normalised_to_ms() -> None:
    parsed = parse_real(SPOT_BTC, "1h", date(2026, 5, 8))
    assert parsed.time_unit == "us"
    frame = parsed.frame
    assert frame.schema["open_time"] == pl.Datetime("ms", "UTC")
    first, last = frame.row(0, named=True), frame.row(-1, named=True)
    assert first["open_time"] == utc(2026, 5, 8)
    assert first["close_time"] == utc(2026, 5, 8, 0, 59, 59, 999000)
    assert (first["open"], first["close"], first["trade_count"]) == (80006.0, 79831.99, 67626)
    assert last["open_time"] == utc(2026, 5, 8, 23)
    assert last["close_time"] == utc(2026, 5, 8, 23, 59, 59, 999000)
    assert (last["open"], last["close"]) == (80262.0, 80193.17)


def test_crlf_line_endings_parse_identically() -> None:
    csv = spot_day1_csv()
    crlf = parse_spot_day1(csv.replace(b"\n", b"\r\n"))
    assert crlf.frame.equals(parse_spot_day1(csv).frame)


def test_parse_time_of_a_daily_zip_is_a_few_ms() -> None:
    data = (DATA / ZIP_2020_01_01).read_bytes()
    timings = []
    for _ in range(15):
        start = time.perf_counter()
        parse_klines_zip(
            data,
            instrument=SPOT_BTC,
            interval="1m",
            day=DAY1,
            file_name="BTCUSDT-1m-2020-01-01.zip",
        )
        timings.append(time.perf_counter() - start)
    # Measured ~3 ms; the bound only catches an accidental slow (row-by-row) path.
    assert statistics.median(timings) < 0.05


# ---------------------------------------------------------------------------------------------
# damaged zips


def parse_spot_day1_zip(data: bytes) -> ParsedKlines:
    return parse_klines_zip(
        data, instrument=SPOT_BTC, interval="1m", day=DAY1, file_name="BTCUSDT-1m-2020-01-01.zip"
    )


def test_corrupt_zip_with_flipped_bytes(tmp_path: Path) -> None:
    data = bytearray((DATA / ZIP_2020_01_01).read_bytes())
    for offset in (20_000, 20_001, 35_000):  # inside the deflate stream
        data[offset] ^= 0xFF
    damaged = tmp_path / "BTCUSDT-1m-2020-01-01.zip"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ArchiveFileError, match="corrupt zip") as info:
        parse_spot_day1_zip(damaged.read_bytes())
    error = info.value
    assert (error.file, error.market, error.symbol, error.day) == (
        "BTCUSDT-1m-2020-01-01.zip", "spot", "BTCUSDT", DAY1,
    )  # fmt: skip
    assert str(error).startswith(
        "BTCUSDT-1m-2020-01-01.zip (spot:BTCUSDT, 2020-01-01): corrupt zip"
    )


def test_crc_mismatch_is_detected() -> None:
    data = (DATA / ZIP_2020_01_01).read_bytes()
    crc_offset = data.rindex(b"PK\x01\x02") + 16  # CRC-32 in the central directory entry
    damaged = bytearray(data)
    damaged[crc_offset] ^= 0x01
    with pytest.raises(ArchiveFileError, match=r"corrupt zip: .*CRC"):
        parse_spot_day1_zip(bytes(damaged))


@pytest.mark.parametrize("keep", [0.5, 0.99, 10 / 69497])
def test_truncated_zip(keep: float) -> None:
    data = (DATA / ZIP_2020_01_01).read_bytes()
    with pytest.raises(ArchiveFileError, match="corrupt zip"):
        parse_spot_day1_zip(data[: int(len(data) * keep)])


def test_zip_with_one_byte_missing() -> None:
    data = (DATA / ZIP_2020_01_01).read_bytes()
    with pytest.raises(ArchiveFileError, match="corrupt zip"):
        parse_spot_day1_zip(data[:30_000] + data[30_001:])


def test_empty_and_non_zip_inputs() -> None:
    with pytest.raises(ArchiveFileError, match="0 bytes"):
        parse_spot_day1_zip(b"")
    with pytest.raises(ArchiveFileError, match="not a zip file"):
        parse_spot_day1_zip(spot_day1_csv())
    with pytest.raises(ArchiveFileError, match="found 0"):
        parse_spot_day1_zip(zip_bytes({}))


def test_zip_must_hold_exactly_one_csv() -> None:
    csv = spot_day1_csv()
    with pytest.raises(ArchiveFileError, match="exactly one CSV member, found 2"):
        parse_spot_day1_zip(zip_bytes({"a.csv": csv, "b.csv": csv}))
    with pytest.raises(ArchiveFileError, match=r"is not a \.csv"):
        parse_spot_day1_zip(zip_bytes({"BTCUSDT-1m-2020-01-01.txt": csv}))
    rezipped = parse_spot_day1_zip(zip_bytes({"BTCUSDT-1m-2020-01-01.csv": csv}))
    assert rezipped.frame.equals(parse_spot_day1(csv).frame)


def test_zip_member_for_another_symbol_interval_or_day_is_rejected() -> None:
    csv = spot_day1_csv()
    with pytest.raises(ArchiveFileError) as info:
        parse_spot_day1_zip(zip_bytes({"ETHUSDT-1m-2020-01-01.csv": csv}))
    assert info.value.reason == (
        "zip member 'ETHUSDT-1m-2020-01-01.csv' is for ETHUSDT 1m 2020-01-01, "
        "expected BTCUSDT 1m 2020-01-01"
    )
    with pytest.raises(ArchiveFileError, match="is for BTCUSDT 1h 2020-01-01"):
        parse_spot_day1_zip(zip_bytes({"BTCUSDT-1h-2020-01-01.csv": csv}))
    with pytest.raises(ArchiveFileError, match="is for BTCUSDT 1m 2020-01-02"):
        parse_spot_day1_zip(zip_bytes({"BTCUSDT-1m-2020-01-02.csv": csv}))


def test_error_message_names_file_instrument_and_day() -> None:
    truncated = spot_day1_csv()[:-25]
    with pytest.raises(ArchiveFileError) as info:
        parse_spot_day1_zip(zip_bytes({"BTCUSDT-1m-2020-01-01.csv": truncated}))
    assert str(info.value) == (
        "BTCUSDT-1m-2020-01-01.zip (spot:BTCUSDT, 2020-01-01): "
        "truncated CSV: last line is not terminated"
    )
    assert info.value.reason == "truncated CSV: last line is not terminated"
    assert isinstance(info.value, ValueError)
    restored = pickle.loads(pickle.dumps(info.value))
    assert str(restored) == str(info.value) and restored.day == DAY1


def test_error_without_day() -> None:
    error = ArchiveFileError("boom", file="x.zip", market="um", symbol="BTCUSDT", day=None)
    assert str(error) == "x.zip (um:BTCUSDT): boom"


def test_configuration_errors_are_not_archive_errors() -> None:
    csv = spot_day1_csv()
    with pytest.raises(ValueError, match="unsupported kline interval") as info:
        parse_klines_csv(csv, instrument=SPOT_BTC, interval="1M", day=DAY1, file_name="x.csv")
    assert not isinstance(info.value, ArchiveFileError)
    with pytest.raises(ValueError, match="needs the contract size") as info:
        parse_klines_csv(
            csv, instrument=Instrument("cm", "BTCUSDT"), interval="1m", day=DAY1, file_name="x.csv"
        )
    assert not isinstance(info.value, ArchiveFileError)


# ---------------------------------------------------------------------------------------------
# damaged CSVs


def test_truncated_csv_cut_mid_line() -> None:
    csv = spot_day1_csv()
    with pytest.raises(ArchiveFileError, match="truncated CSV: last line is not terminated"):
        parse_spot_day1(csv[: len(csv) // 2])


def test_truncated_csv_short_last_line() -> None:
    rows = lines(spot_day1_csv())
    rows[-1] = b",".join(rows[-1].split(b",")[:5])
    with pytest.raises(ArchiveFileError, match=r"truncated CSV: last line 1440 has 5 of 12 fields"):
        parse_spot_day1(join(rows))


def test_line_cut_in_the_middle_of_the_file() -> None:
    rows = lines(spot_day1_csv())
    rows[99] = b",".join(rows[99].split(b",")[:9])
    with pytest.raises(ArchiveFileError) as info:
        parse_spot_day1(join(rows))
    assert info.value.reason == (
        "line 100 has 9 fields, expected 12: "
        "'1577842740000,7221.00000000,7221.41000000,7215.49000000,7216.00000000,"
        "15.86513900,1577842799999,114535.73416363,160'"
    )


def test_extra_field() -> None:
    rows = lines(spot_day1_csv())
    rows[9] += b",0"
    with pytest.raises(ArchiveFileError, match="line 10 has 13 fields, expected 12"):
        parse_spot_day1(join(rows))


def test_non_numeric_field_names_line_and_column() -> None:
    rows = lines(spot_day1_csv())
    fields = rows[5].split(b",")
    fields[4] = b"7179.9x000000"
    rows[5] = b",".join(fields)
    with pytest.raises(ArchiveFileError) as info:
        parse_spot_day1(join(rows))
    assert info.value.reason.startswith(
        "line 6, column 5 (close): '7179.9x000000' is not a finite number: '1577837100000,"
    )


def test_swapped_fields_in_a_row() -> None:
    rows = lines(spot_day1_csv())
    fields = rows[180].split(b",")
    fields[0], fields[1] = fields[1], fields[0]
    rows[180] = b",".join(fields)
    with pytest.raises(
        ArchiveFileError,
        match=r"line 181, column 1 \(open_time\): '7242.66000000' is not an integer",
    ):
        parse_spot_day1(join(rows))


def test_swapped_fields_in_the_first_row_are_not_mistaken_for_a_header() -> None:
    rows = lines(spot_day1_csv())
    fields = rows[0].split(b",")
    fields[0], fields[1] = fields[1], fields[0]
    rows[0] = b",".join(fields)
    with pytest.raises(ArchiveFileError, match="line 1 is neither a header nor a valid kline row"):
        parse_spot_day1(join(rows))


def test_flipped_byte_in_a_timestamp() -> None:
    rows = lines(spot_day1_csv())
    rows[10] = rows[10][:3] + b"#" + rows[10][4:]
    with pytest.raises(ArchiveFileError, match="line 11, column 1 \\(open_time\\)"):
        parse_spot_day1(join(rows))


def test_non_finite_number_is_rejected() -> None:
    rows = lines(spot_day1_csv())
    fields = rows[2].split(b",")
    fields[2] = b"inf"
    rows[2] = b",".join(fields)
    with pytest.raises(
        ArchiveFileError, match=r"line 3, column 3 \(high\): 'inf' is not a finite number"
    ):
        parse_spot_day1(join(rows))


def test_empty_line_in_the_middle() -> None:
    rows = lines(spot_day1_csv())
    rows.insert(700, b"")
    with pytest.raises(ArchiveFileError, match="line 701 is empty"):
        parse_spot_day1(join(rows))


def test_empty_and_header_only_csv() -> None:
    with pytest.raises(ArchiveFileError, match="empty CSV"):
        parse_spot_day1(b"")
    header = lines(real_csv("futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2023-04-15.csv"))[0]
    with pytest.raises(ArchiveFileError, match="header only"):
        parse_klines_csv(
            header + b"\n",
            instrument=UM_BTC,
            interval="1m",
            day=date(2023, 4, 15),
            file_name="h.csv",
        )


def test_header_file_concatenated_with_itself_fails_on_the_second_header() -> None:
    csv = real_csv("futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2023-04-15.csv")
    with pytest.raises(ArchiveFileError, match=r"line 1442, column 1 \(open_time\): 'open_time'"):
        parse_klines_csv(
            csv + csv, instrument=UM_BTC, interval="1m", day=date(2023, 4, 15), file_name="x.csv"
        )


def test_mixed_ms_and_us_timestamps() -> None:
    rows = lines(spot_day1_csv())
    fields = rows[41].split(b",")
    fields[0] += b"000"
    fields[6] += b"999"
    rows[41] = b",".join(fields)
    with pytest.raises(ArchiveFileError) as info:
        parse_spot_day1(join(rows))
    assert info.value.reason.startswith(
        "mixed timestamp units: line 1 is in milliseconds (13 digits) but line 42 has "
        "microseconds (16 digits): '1577839260000000,"
    )


def test_timestamps_in_seconds_are_rejected() -> None:
    rows = [
        b",".join([f[0][:-3], *f[1:6], f[6][:-3], *f[7:]])
        for f in (row.split(b",") for row in lines(spot_day1_csv()))
    ]
    with pytest.raises(
        ArchiveFileError, match="line 1: timestamp is neither 13-digit milliseconds"
    ):
        parse_spot_day1(join(rows))


def test_microsecond_open_time_must_be_whole_ms() -> None:
    csv = real_csv("spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2026-05-08.zip")
    rows = lines(csv)
    rows[3] = rows[3].replace(b"1778209200000000,", b"1778209200000123,", 1)
    with pytest.raises(
        ArchiveFileError, match="line 4: µs open_time 1778209200000123 is not a whole millisecond"
    ):
        parse_klines_csv(
            join(rows), instrument=SPOT_BTC, interval="1h", day=date(2026, 5, 8), file_name="x.csv"
        )


def test_row_from_another_day() -> None:
    day1 = lines(spot_day1_csv())
    day2 = lines(real_csv("spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-02.zip"))
    with pytest.raises(ArchiveFileError) as info:
        parse_spot_day1(join(day1 + day2[:1]))
    assert info.value.reason.startswith(
        "line 1441: open_time 2020-01-02 00:00:00 UTC is outside 2020-01-01 UTC (1 such rows; "
        "the file belongs to another day)"
    )


def test_whole_file_for_the_wrong_day() -> None:
    data = (DATA / "spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-02.zip").read_bytes()
    with pytest.raises(ArchiveFileError, match="is for BTCUSDT 1m 2020-01-02, expected"):
        parse_spot_day1_zip(data)  # caught by the member name before any row is read
    csv = real_csv("spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-02.zip")
    with pytest.raises(
        ArchiveFileError,
        match=r"line 1: open_time 2020-01-02 00:00:00 UTC is outside 2020-01-01 UTC \(1440 such",
    ):
        parse_spot_day1(csv)  # no member name: caught by the rows


def test_exact_duplicates_are_dropped_and_counted() -> None:
    csv = spot_day1_csv()
    doubled = parse_spot_day1(csv + csv)
    assert (doubled.rows_in_file, doubled.duplicates_dropped, doubled.frame.height) == (
        2880,
        1440,
        1440,
    )
    assert doubled.frame.equals(parse_spot_day1(csv).frame)


def test_duplicate_rows_out_of_order_are_sorted() -> None:
    rows = lines(spot_day1_csv())
    shuffled = list(reversed(rows)) + rows[:3]
    parsed = parse_spot_day1(join(shuffled))
    assert parsed.duplicates_dropped == 3
    assert parsed.frame.equals(parse_spot_day1(join(rows)).frame)


def test_conflicting_duplicate_names_the_minute() -> None:
    rows = lines(spot_day1_csv())
    fields = rows[5].split(b",")
    fields[4] = b"7179.98000000"  # a second, different close for 00:05
    with pytest.raises(ArchiveFileError) as info:
        parse_spot_day1(join([*rows, b",".join(fields)]))
    assert info.value.reason == (
        "conflicting rows for open_time 2020-01-01 00:05:00 UTC: lines 6 and 1441 differ"
    )
