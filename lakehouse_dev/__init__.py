"""Developer tools beside the product, not installed with it.

``make demo`` (``demo/``), ``make bench`` (``bench/``), the fixture generators (``fixtures/``) and the
Binance stand-ins the demo and the tests share (``fakes/``). The product, ``lakehouse_assets``, never
imports this package; an import contract in pyproject.toml checks it (``make lint``).
"""

from pathlib import Path

#: The project root (this package is not installed, so it always sits beside ``lakehouse_assets``).
REPO = Path(__file__).resolve().parent.parent
#: The bundled real Binance files (provenance: PROVENANCE.md in that folder). The one pointer from
#: ``lakehouse_dev`` to the tests' data; everything here takes it from this constant.
SAMPLE_DATA = REPO / "lakehouse_assets_tests" / "data" / "binance"

__all__ = ["REPO", "SAMPLE_DATA"]
