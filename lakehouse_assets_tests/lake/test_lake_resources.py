"""Where the lake is, and the Dagster resources over it: the default location from any working directory,
"no tables" messages that name the lake, the SQL layer as a dagster-duckdb resource, and the S3 client
configured through dagster-aws's S3Resource (against a real S3-protocol server)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import dagster as dg
import polars as pl
import pytest
from dagster_aws.s3 import S3Resource
from dagster_duckdb import DuckDBResource

from lakehouse_assets.defs.resources import LakeDuckDBResource
from lakehouse_assets.lake import store as store_module
from lakehouse_assets.lake.io_manager import HiveParquetIOManager, LakeResource, LakeS3Resource
from lakehouse_assets.lake.layout import write_partitions
from lakehouse_assets.lake.sql import query
from lakehouse_assets.lake.store import DEFAULT_STORAGE, LocalStore, S3Store, default_lake_dir, open_store
from lakehouse_assets_tests.samples import REPO, real_rows  # REPO: the project (pyproject.toml, lakehouse_assets/)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_") and k != "DAGSTER_HOME"}
    return {**env, **extra}


def lakehouse(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lakehouse_assets.cli", *args], cwd=cwd, env=clean_env(**env),
        capture_output=True, text=True, timeout=120,
    )


def make_lake(root: Path) -> None:
    write_partitions(LocalStore(root), "silver/klines", real_rows("2020-01-01", n=3), days=["2020-01-01"],
                     partition_column="open_time")


# --------------------------------------------------------------------------- where the default lake is


def test_the_default_lake_is_in_the_project_root_whatever_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_lake_dir() == REPO / DEFAULT_STORAGE
    assert open_store(None).root == REPO / DEFAULT_STORAGE
    assert open_store(DEFAULT_STORAGE).root == REPO / DEFAULT_STORAGE  # the default name, set explicitly
    assert open_store("elsewhere").root == tmp_path / "elsewhere"  # any other relative path: the working directory
    assert LakeResource().store().root_uri == str(REPO / DEFAULT_STORAGE)


def test_an_installed_package_without_its_project_uses_dagster_homes_parent(tmp_path, monkeypatch):
    site = tmp_path / "site-packages" / "lakehouse_assets" / "lake"
    monkeypatch.setattr(store_module, "__file__", str(site / "store.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "deploy" / "dagster_home"))
    assert default_lake_dir() == tmp_path / "deploy" / DEFAULT_STORAGE
    monkeypatch.delenv("DAGSTER_HOME")
    assert default_lake_dir() == tmp_path / DEFAULT_STORAGE  # nothing else to go by: the working directory


def test_cli_from_another_directory_reads_the_project_lake_and_names_it(tmp_path):
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    out = lakehouse("query", "select * from silver.no_such_table", cwd=elsewhere)
    assert out.returncode == 1
    assert f"the lake at {REPO / DEFAULT_STORAGE} (LAKEHOUSE_STORAGE unset: the default, 'lakehouse_data' in the project root)" in out.stderr
    # and it is the project's lake, the same whichever directory the command runs in
    assert lakehouse("tables", cwd=elsewhere).stdout == lakehouse("tables", cwd=REPO).stdout


def test_every_no_tables_outcome_says_which_lake_it_looked_at(tmp_path):
    empty = tmp_path / "empty lake"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    out = lakehouse("tables", cwd=elsewhere, LAKEHOUSE_STORAGE=str(empty))
    assert (out.returncode, out.stdout) == (1, "")
    assert f"the lake at {empty} (LAKEHOUSE_STORAGE={str(empty)!r}) holds no tables yet" in out.stderr

    out = lakehouse("query", "select count(*) from silver.klines", cwd=elsewhere, LAKEHOUSE_STORAGE=str(empty))
    assert out.returncode == 1
    assert "silver" in out.stderr and f"the lake at {empty} (LAKEHOUSE_STORAGE={str(empty)!r}) holds no tables yet" in out.stderr

    make_lake(empty)
    out = lakehouse("query", "select count(*) from gold.features", cwd=elsewhere, LAKEHOUSE_STORAGE=str(empty))
    assert out.returncode == 1
    assert f"the lake at {empty} (LAKEHOUSE_STORAGE={str(empty)!r}) holds: silver.klines" in out.stderr
    out = lakehouse("tables", cwd=elsewhere, LAKEHOUSE_STORAGE=str(empty))
    assert (out.returncode, out.stdout) == (0, "silver.klines\n")


# --------------------------------------------------------------------------- dagster-duckdb


def test_the_sql_layer_is_a_duckdb_resource_that_assets_get_and_query_uses_the_same_views(tmp_path):
    make_lake(tmp_path)
    lake = LakeResource(storage=str(tmp_path))
    sql = LakeDuckDBResource(lake=lake)
    assert isinstance(sql, DuckDBResource) and sql.database == ":memory:"

    seen: dict[str, pl.DataFrame] = {}

    @dg.asset
    def close_summary(duckdb: LakeDuckDBResource) -> None:
        with duckdb.get_connection() as con:
            assert con.execute("select current_setting('TimeZone')").fetchall() == [("UTC",)]
            seen["conn"] = con.sql("select count(*) n, max(close) hi from silver.klines").pl()
        seen["query"] = duckdb.query("select count(*) n, max(close) hi from silver.klines")

    # a probe asset built here (not the project's): it shows what any asset asking for `duckdb` gets
    assert dg.materialize([close_summary], resources={"duckdb": sql}).success
    expected = query("select count(*) n, max(close) hi from silver.klines", store=lake.store())
    assert seen["conn"].equals(expected) and seen["query"].equals(expected)
    assert expected.rows() == [(3, 7186.68)]
    assert sql.tables() == ["silver.klines"]


def test_the_code_location_ships_the_duckdb_and_s3_resources_wired_to_the_lake(monkeypatch):
    from lakehouse_assets.defs.resources import default_resources

    monkeypatch.setenv("LAKEHOUSE_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("LAKEHOUSE_S3_MAX_ATTEMPTS", "4")
    monkeypatch.setenv("LAKEHOUSE_S3_TIMEOUT_SECONDS", "7")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    resources = default_resources()
    assert isinstance(resources["duckdb"], LakeDuckDBResource)
    assert isinstance(resources["s3"], S3Resource) and resources["lake"].s3 is resources["s3"]
    assert resources["duckdb"].lake is resources["lake"] and resources["io_manager"].lake is resources["lake"]

    @dg.asset
    def probe(lake: LakeResource, s3: LakeS3Resource) -> dict:
        return {"endpoint": s3.endpoint_url, "attempts": s3.max_attempts, "timeout": s3.timeout_seconds,
                "region": s3.region_name, "same": lake.s3 == s3}

    # a probe asset built here (not the project's): it reports what the shipped resources resolve to in a run
    result = dg.materialize_to_memory([probe], resources={k: resources[k] for k in ("lake", "s3")})
    assert result.output_for_node("probe") == {
        "endpoint": "http://127.0.0.1:9000", "attempts": 4, "timeout": 7, "region": "eu-central-1", "same": True,
    }


# --------------------------------------------------------------------------- dagster-aws


def test_an_s3_lake_gets_its_client_from_the_s3_resource(s3_endpoint):
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    s3 = LakeS3Resource(endpoint_url=s3_endpoint, max_attempts=3, timeout_seconds=5)
    lake = LakeResource(storage=f"s3://{bucket}/lake", s3=s3)
    store = lake.store()
    assert isinstance(store, S3Store) and store.client_factory == s3.get_client
    config = store.client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert (config.connect_timeout, config.read_timeout) == (5.0, 5.0)
    client = s3.get_client()  # what S3Resource hands an op: the same configuration
    assert client.meta.config.retries == config.retries and client.meta.endpoint_url == s3_endpoint

    @dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2020-01-01"), metadata={"partition_expr": "open_time"},
              key=["silver", "t"])
    def table() -> pl.DataFrame:
        return real_rows("2020-01-01", n=3)

    # a one-table asset built here (not the project's): the IO manager alone, writing through the S3 resource
    resources = {"io_manager": HiveParquetIOManager(lake=lake), "s3": s3}
    assert dg.materialize([table], partition_key="2020-01-01", resources=resources).success
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["lake/silver/t/date=2020-01-01/spot-BTCUSDT.parquet"]
    assert query("select count(*) from silver.t", store=store).item() == 3


def test_the_s3_resources_profile_gives_the_lake_its_region_and_keys(tmp_path, monkeypatch, s3_endpoint):
    (tmp_path / "config").write_text("[profile lakehouse-test]\nregion = eu-west-3\n")
    (tmp_path / "credentials").write_text(
        "[lakehouse-test]\naws_access_key_id = profile-key\naws_secret_access_key = profile-secret\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    store = LakeResource(storage="s3://bucket/lake", s3=LakeS3Resource(profile_name="lakehouse-test",
                                                                       endpoint_url=s3_endpoint)).store()
    options = store.polars_storage_options
    assert (options["aws_region"], options["aws_access_key_id"], options["aws_secret_access_key"]) == (
        "eu-west-3", "profile-key", "profile-secret",
    )
    assert store.client.meta.region_name == "eu-west-3"


def test_a_bad_s3_setting_fails_at_once_naming_the_variable():
    with pytest.raises(dg.Failure, match="LAKEHOUSE_S3_MAX_ATTEMPTS"):
        LakeResource(storage="s3://bucket/x", s3=LakeS3Resource(max_attempts=0)).store()
