"""Resources for every asset under defs/, built from environment variables (see README, Configuration)."""

import dagster as dg

from lakehouse_assets.defs.common.resources import default_resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=default_resources())
