"""Build a data.binance.vision-layout mirror from the bundled real sample files.

Why: some real Binance samples only survive as the CSV (the third party committed the
decompressed member, not the zip). To run the ingestion path end to end (download -> verify
CHECKSUM -> unzip -> parse) on them, we wrap each such CSV in a deterministic zip and compute a
CHECKSUM ourselves. Those zips/CHECKSUMs are *ours*, not Binance's, and FIXTURE_BUILDER.md in the
mirror says so file by file. Real zips and published CHECKSUMs are copied byte for byte; a real
zip whose CHECKSUM was never obtained stays without one (nothing is fabricated for it).

Deterministic on purpose: fixed member timestamp/attributes and compression level mean the same
CSV always yields the same zip bytes (for a given zlib build), so re-runs are idempotent and
checksum pinning in tests is stable.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Final

__all__ = ["FIXTURE_NOTE_NAME", "build_sample_mirror", "checksum_text", "deterministic_zip"]

logger = logging.getLogger("lakehouse.archive")

FIXTURE_NOTE_NAME: Final = "FIXTURE_BUILDER.md"
#: Data types whose CSV-only samples get wrapped into zips (klines family + funding).
_WRAPPED_TYPES: Final = frozenset(
    {"klines", "markPriceKlines", "indexPriceKlines", "premiumIndexKlines", "fundingRate"}
)
#: Fixed member timestamp: real zips carry the publication time; ours must not carry build time.
_ZIP_DATE_TIME: Final = (2000, 1, 1, 0, 0, 0)
_COMPRESS_LEVEL: Final = 6


def deterministic_zip(
    member_name: str,
    payload: bytes,
    *,
    date_time: tuple[int, int, int, int, int, int] = _ZIP_DATE_TIME,
    compresslevel: int = _COMPRESS_LEVEL,
) -> bytes:
    """A one-member deflate zip shaped like Binance's (Unix host, 0644) with a fixed timestamp."""
    info = zipfile.ZipInfo(member_name, date_time=date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix, as in Binance's zips
    info.external_attr = (0o100644 & 0xFFFF) << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, payload, compress_type=zipfile.ZIP_DEFLATED, compresslevel=compresslevel)
    return buffer.getvalue()


def checksum_text(zip_name: str, zip_bytes: bytes) -> bytes:
    """sha256sum format exactly as Binance writes it: two spaces, no trailing newline."""
    return f"{hashlib.sha256(zip_bytes).hexdigest()}  {zip_name}".encode("ascii")


def _write_if_changed(target: Path, data: bytes) -> bool:
    """Atomic write that leaves an identical file alone (cheap, mtime-stable re-runs)."""
    if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the mirror unreadable to other users/servers
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _is_wrappable_csv(rel: Path) -> bool:
    name = rel.name
    if not name.endswith(".csv") or name.endswith(".head.csv"):
        return False
    parts = rel.parts
    # data/<market...>/<daily|monthly>/<dataType>/<SYMBOL>/[<interval>/]<file>
    return any(p in _WRAPPED_TYPES for p in parts[:-1])


def build_sample_mirror(src: Path, dst: Path) -> list[str]:
    """Mirror ``src`` (the bundled sample folder) into ``dst``; return the zips built locally.

    The returned list (sorted, POSIX, archive-relative) holds every zip this function created from
    a CSV; each has a self-computed ``<zip>.CHECKSUM`` next to it. Every other zip/CHECKSUM in the
    mirror is a byte-for-byte copy of a Binance file.
    """
    src = Path(src).resolve()
    dst = Path(dst).resolve()
    if not (src / "data").is_dir():
        raise FileNotFoundError(f"{src} has no data/ folder; expected the Binance sample layout")
    dst.mkdir(parents=True, exist_ok=True)

    copied: list[str] = []
    built: list[tuple[str, str, str, str]] = []  # (zip path, checksum path, source csv, sha256)
    unchecksummed: list[str] = []

    files = sorted(p for p in (src / "data").rglob("*") if p.is_file())
    present = {p.relative_to(src).as_posix() for p in files}
    for path in files:
        rel = path.relative_to(src)
        rel_posix = rel.as_posix()
        if path.name.endswith(".zip") or path.name.endswith(".zip.CHECKSUM"):
            _write_if_changed(dst / rel, path.read_bytes())
            copied.append(rel_posix)
            if path.name.endswith(".zip") and f"{rel_posix}.CHECKSUM" not in present:
                unchecksummed.append(rel_posix)
        elif _is_wrappable_csv(rel):
            zip_rel = rel.with_name(path.name[: -len(".csv")] + ".zip")
            if zip_rel.as_posix() in present:
                continue  # the real zip is there; never shadow it with ours
            zip_bytes = deterministic_zip(path.name, path.read_bytes())
            checksum_rel = zip_rel.with_name(zip_rel.name + ".CHECKSUM")
            _write_if_changed(dst / zip_rel, zip_bytes)
            _write_if_changed(dst / checksum_rel, checksum_text(zip_rel.name, zip_bytes))
            built.append(
                (zip_rel.as_posix(), checksum_rel.as_posix(), rel_posix, hashlib.sha256(zip_bytes).hexdigest())
            )

    provenance = src / "PROVENANCE.md"
    if provenance.is_file():
        _write_if_changed(dst / "PROVENANCE.md", provenance.read_bytes())
    _write_if_changed(dst / FIXTURE_NOTE_NAME, _fixture_note(copied, built, unchecksummed).encode("utf-8"))

    for zip_path, checksum_path, csv_path, digest in built:
        logger.info(
            "sample mirror: built %s and %s locally from Binance's %s (sha256 %s is self-computed, "
            "not published by Binance)",
            zip_path,
            checksum_path,
            csv_path,
            digest,
        )
    logger.info(
        "sample mirror at %s: %d Binance files copied byte for byte, %d zips + %d CHECKSUMs built locally",
        dst,
        len(copied),
        len(built),
        len(built),
    )
    return sorted(b[0] for b in built)


def _fixture_note(copied: list[str], built: list[tuple[str, str, str, str]], unchecksummed: list[str]) -> str:
    lines = [
        "# Sample mirror: what was built locally",
        "",
        "Generated by `lakehouse_assets.sample_mirror.build_sample_mirror`; do not edit.",
        "Provenance of the Binance files themselves: see PROVENANCE.md.",
        "",
        "## Built locally (NOT published by Binance)",
        "",
        "Each zip below wraps a CSV that Binance published, unchanged, as its single member",
        f"(deflate level {_COMPRESS_LEVEL}, member date fixed to {_ZIP_DATE_TIME[:3]}).",
        "The zip bytes are ours, so **each CHECKSUM below is self-computed, not published by Binance**;",
        "it proves only that the mirror was not corrupted, nothing about Binance's original zip.",
        "",
        "| zip (built here) | CHECKSUM (self-computed) | source CSV (Binance's) | sha256 |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{z}` | `{c}` | `{s}` | `{d}` |" for z, c, s, d in built]
    if not built:
        lines.append("| (none) | | | |")
    lines += [
        "",
        "## Copied byte for byte from Binance's publication",
        "",
        *[f"- `{p}`" for p in copied],
        "",
        "## Real zips without a CHECKSUM",
        "",
        "The publisher's CHECKSUM for these was never obtained, and none was fabricated:",
        "fetching `<zip>.CHECKSUM` from this mirror gives 404.",
        "",
        *([f"- `{p}`" for p in unchecksummed] or ["- (none)"]),
        "",
    ]
    return "\n".join(lines)


def main() -> None:  # pragma: no cover - convenience CLI
    """``python -m lakehouse_assets.sample_mirror SRC DST``."""
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m lakehouse_assets.sample_mirror SRC DST")
    for path in build_sample_mirror(Path(sys.argv[1]), Path(sys.argv[2])):
        print(path)


if __name__ == "__main__":  # pragma: no cover
    main()
