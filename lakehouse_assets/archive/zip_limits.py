"""Size limits for reading one member out of an archive zip: a zip bomb is refused, never inflated.

Binance zips hold exactly one CSV: a daily 1m file inflates to about 250 KB, a daily 1s file to
about 13 MB, a monthly 1m file to 8..10 MB. A 2 MB zip of zeros can inflate to 2 GB, and the
parser then needs several times that, so without a cap one hostile or broken mirror file can take
the whole worker down (several files are parsed at a time). The cap is generous on purpose: it is
there to stop absurd sizes, not to judge plausible ones.

Two checks, because a zip states its sizes itself and can lie:

- before inflating: the entry count, and the member's declared uncompressed size, from the
  central directory (already in memory, bounded by the zip's own size);
- while inflating: the member is decompressed with an output budget of its declared size plus
  one byte (zlib's ``max_length``), so a stream that inflates past what the header declares is
  caught after at most that many bytes, whatever it would have grown to.

Only stored and deflated members are read (Binance deflates): zipfile's bzip2 and lzma readers
inflate a whole compressed chunk at once, with no output bound, so no budget could hold there.
"""

from __future__ import annotations

import copy
import zipfile
import zlib
from dataclasses import dataclass

MIB = 1024 * 1024
DEFAULT_MAX_MEMBER_BYTES = 256 * MIB
DEFAULT_MAX_ENTRIES = 4
# The setting that raises the cap; named in the refusal so an operator knows what to change.
MAX_MEMBER_SETTING = "LAKEHOUSE_ZIP_MAX_MEMBER_MIB"
_READABLE = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}


@dataclass(frozen=True)
class ZipLimits:
    """How large one archive member may inflate, and how many entries a zip may list."""

    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    max_entries: int = DEFAULT_MAX_ENTRIES

    def __post_init__(self) -> None:
        if self.max_member_bytes < 1:
            raise ValueError(f"max_member_bytes must be >= 1, got {self.max_member_bytes}")
        if self.max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {self.max_entries}")


DEFAULT_ZIP_LIMITS = ZipLimits()


class ZipLimitError(Exception):
    """A zip refused for its size or shape; ``str()`` is the reason, for the caller to name the file."""


def check_entries(archive: zipfile.ZipFile, limits: ZipLimits) -> list[zipfile.ZipInfo]:
    """The zip's entries, once their number is within the limit."""
    entries = archive.infolist()
    if len(entries) > limits.max_entries:
        raise ZipLimitError(
            f"oversized zip: it lists {len(entries)} entries, more than the {limits.max_entries} allowed "
            "(a Binance zip holds one CSV)"
        )
    return entries


def read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limits: ZipLimits) -> bytes:
    """The member's bytes, inflated within ``limits`` and CRC-checked.

    Raises ``ZipLimitError`` for a refused size or method, ``zipfile.BadZipFile`` for a damaged
    member (same messages as ``ZipFile.read``).
    """
    name = member.filename
    if member.compress_type not in _READABLE:
        raise ZipLimitError(
            f"zip member {name!r} uses compression method {member.compress_type}; only stored and "
            "deflated members are read (Binance deflates)"
        )
    declared = member.file_size
    if declared > limits.max_member_bytes:
        raise ZipLimitError(
            f"oversized zip: member {name!r} declares {_size(declared)} uncompressed, over the "
            f"{_size(limits.max_member_bytes)} limit; refused before inflating (raise {MAX_MEMBER_SETTING} "
            "if the file is genuine)"
        )
    # One byte more than declared is room enough to see a longer stream, and zipfile's own CRC
    # check is moved after the length check, so a lying member is named for its lie.
    probe = copy.copy(member)
    probe.file_size = declared + 1
    probe.CRC = None
    with archive.open(probe) as stream:
        data = stream.read(declared + 1)
    if len(data) > declared:
        raise ZipLimitError(
            f"corrupt zip: member {name!r} inflates to more than the {_size(declared)} its header "
            f"declares; stopped after {_size(len(data))}"
        )
    if len(data) < declared:
        raise zipfile.BadZipFile(f"member {name!r} inflates to {len(data)} bytes, its header declares {declared}")
    if zlib.crc32(data) != member.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {name!r}")
    return data


def _size(n: int) -> str:
    return f"{n:,} bytes" + (f" ({n / MIB:,.1f} MiB)" if n >= MIB else "")
