"""Dagster instance plumbing that ``dagster.yaml`` names by module path (storage classes).

The webserver, the daemon and every run worker import this from the instance config, without loading
the code location, so nothing here imports ``lakehouse_assets.defs``.
"""
