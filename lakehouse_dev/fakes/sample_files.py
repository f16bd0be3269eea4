"""Reading the bundled sample the way the stand-ins serve it: a file is a one-CSV zip or a bare CSV."""

from __future__ import annotations

import zipfile
from pathlib import Path


def sample_text(path: Path) -> str | None:
    """The CSV text of a sample file (zipped or not); None for anything else (CHECKSUMs, notes)."""
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            (member,) = archive.namelist()
            return archive.read(member).decode()
    if path.name.endswith(".csv"):
        return path.read_text()
    return None
