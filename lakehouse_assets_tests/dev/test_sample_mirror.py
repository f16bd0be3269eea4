"""The sample mirror: real Binance files copied verbatim, CSV-only samples wrapped deterministically."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

from lakehouse_assets.archive.client import parse_checksum
from lakehouse_assets_tests.samples import SAMPLE_DATA
from lakehouse_dev.fixtures.sample_mirror import FIXTURE_NOTE_NAME, build_sample_mirror

CSV_ONLY_DAILY = {
    "data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-04-08.zip",
    "data/spot/daily/klines/ADABTC/1m/ADABTC-1m-2021-11-27.zip",
    "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-09-21.zip",
}


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_build_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    first = build_sample_mirror(SAMPLE_DATA, tmp_path / "a")
    second = build_sample_mirror(SAMPLE_DATA, tmp_path / "b")
    assert first == second
    assert tree(tmp_path / "a") == tree(tmp_path / "b")

    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*") if p.is_file()}
    again = build_sample_mirror(SAMPLE_DATA, tmp_path / "a")
    assert again == first
    # unchanged files are not rewritten: re-runs are cheap and do not disturb mtimes
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*") if p.is_file()} == mtimes


def test_built_zips_wrap_the_csv_unchanged_and_checksums_verify(tmp_path: Path) -> None:
    sample_mirror = tmp_path / "mirror"
    built = build_sample_mirror(SAMPLE_DATA, sample_mirror)
    assert set(built) >= CSV_ONLY_DAILY
    assert all(p.endswith(".zip") for p in built)
    for rel in built:
        zip_bytes = (sample_mirror / rel).read_bytes()
        checksum = (sample_mirror / (rel + ".CHECKSUM")).read_bytes()
        name = rel.rsplit("/", 1)[-1]
        assert checksum == f"{hashlib.sha256(zip_bytes).hexdigest()}  {name}".encode()  # Binance shape
        assert not checksum.endswith(b"\n")
        assert parse_checksum(checksum, expected_name=name) == hashlib.sha256(zip_bytes).hexdigest()
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
            (info,) = archive.infolist()
            assert info.filename == name[: -len(".zip")] + ".csv"
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert archive.read(info) == (SAMPLE_DATA / rel[: -len(".zip")]).with_suffix(".csv").read_bytes()


def test_real_binance_files_are_copied_byte_for_byte(sample_mirror: Path) -> None:
    source = tree(SAMPLE_DATA)
    mirror = tree(sample_mirror)
    real = [p for p in source if p.endswith((".zip", ".zip.CHECKSUM"))]
    assert len(real) >= 14
    for rel in real:
        assert mirror[rel] == source[rel], rel
    assert mirror["PROVENANCE.md"] == source["PROVENANCE.md"]
    # no CHECKSUM is invented for a real zip that came without one
    assert "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2022-09-07.zip.CHECKSUM" not in mirror
    assert "data/futures/cm/daily/klines/BTCUSD_PERP/1m/BTCUSD_PERP-1m-2022-10-24.zip.CHECKSUM" not in mirror
    # CSVs are not served: the archive only has zips
    assert not [p for p in mirror if p.endswith(".csv")]


def test_fixture_note_names_every_locally_built_file(tmp_path: Path) -> None:
    sample_mirror = tmp_path / "mirror"
    built = build_sample_mirror(SAMPLE_DATA, sample_mirror)
    note = (sample_mirror / FIXTURE_NOTE_NAME).read_text()
    assert "self-computed, not published by Binance" in note
    built_section = note.split("## Copied byte for byte")[0]
    for rel in built:
        assert f"`{rel}`" in built_section and f"`{rel}.CHECKSUM`" in built_section
    assert "BTCUSDT-1m-2020-01-01.zip" not in built_section


def test_only_kline_and_funding_csvs_without_a_zip_are_wrapped(tmp_path: Path) -> None:
    src = tmp_path / "src"
    kline_dir = src / "data/spot/daily/klines/XYZUSDT/1m"
    kline_dir.mkdir(parents=True)
    (kline_dir / "XYZUSDT-1m-2021-01-01.csv").write_bytes(b"1609459200000,1,1,1,1,0,1609459259999,0,0,0,0,0\n")
    # a CSV next to its real zip must not shadow the zip
    real_zip = SAMPLE_DATA / "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2022-09-07.zip"
    (kline_dir / "XYZUSDT-1m-2021-01-02.zip").write_bytes(real_zip.read_bytes())
    (kline_dir / "XYZUSDT-1m-2021-01-02.csv").write_bytes(b"not used\n")
    funding_dir = src / "data/futures/um/monthly/fundingRate/XYZUSDT"
    funding_dir.mkdir(parents=True)
    (funding_dir / "XYZUSDT-fundingRate-2021-01.csv").write_bytes(
        b"calc_time,funding_interval_hours,last_funding_rate\n"
    )
    other = src / "data/futures/cm/daily/liquidationSnapshot/XYZUSD_PERP"
    other.mkdir(parents=True)
    (other / "XYZUSD_PERP-liquidationSnapshot-2024-10-01.head.csv").write_bytes(b"time,side\n")
    agg = src / "data/spot/daily/aggTrades/XYZUSDT"
    agg.mkdir(parents=True)
    (agg / "XYZUSDT-aggTrades-2021-01-01.csv").write_bytes(b"1,2,3\n")

    built = build_sample_mirror(src, tmp_path / "dst")

    assert built == [
        "data/futures/um/monthly/fundingRate/XYZUSDT/XYZUSDT-fundingRate-2021-01.zip",
        "data/spot/daily/klines/XYZUSDT/1m/XYZUSDT-1m-2021-01-01.zip",
    ]
    dst = tree(tmp_path / "dst")
    assert dst["data/spot/daily/klines/XYZUSDT/1m/XYZUSDT-1m-2021-01-02.zip"] == real_zip.read_bytes()
    assert "data/spot/daily/klines/XYZUSDT/1m/XYZUSDT-1m-2021-01-02.zip.CHECKSUM" not in dst
    assert not [p for p in dst if "liquidationSnapshot" in p or "aggTrades" in p]
    assert "PROVENANCE.md" not in dst  # nothing to copy when the source has none
