"""The Dagster code location: ``dagster dev -w workspace.yaml`` and notebooks load ``defs`` from here.

Every asset, check, job, schedule and sensor defined at the top level of a module under ``defs/``
is picked up automatically (``load_from_defs_folder``); resources come from ``defs/resources.py``.
"""

from pathlib import Path

import dagster as dg

defs: dg.Definitions = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
