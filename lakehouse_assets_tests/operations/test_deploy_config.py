"""deploy/ can't be started here (no Docker engine, no cluster), so every file is parsed and checked against
the schemas it targets: Dagster's own instance/workspace schemas and the launchers' config schemas, the
Compose service keys, and the Helm chart's value layout."""

from __future__ import annotations

import importlib
import re
import tomllib

import pytest
import yaml

from lakehouse_assets_tests.samples import REPO

DEPLOY = REPO / "deploy"

# env the instance files read; dummy values are enough to validate them
INSTANCE_ENV = {
    "DAGSTER_POSTGRES_HOST": "postgres", "DAGSTER_POSTGRES_PORT": "5432", "DAGSTER_POSTGRES_USER": "dagster",
    "DAGSTER_POSTGRES_PASSWORD": "x", "DAGSTER_POSTGRES_DB": "dagster", "DAGSTER_CURRENT_IMAGE": "lakehouse:latest",
    "DAGSTER_COMPUTE_LOG_BUCKET": "logs", "LAKEHOUSE_S3_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "us-east-1",
    "DAGSTER_K8S_NAMESPACE": "lakehouse",
}
# Compose specification: the service-level keys this file may use
COMPOSE_SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "volumes", "depends_on",
    "healthcheck", "networks", "restart", "deploy", "labels", "user", "working_dir", "expose",
}


@pytest.fixture
def instance_env(monkeypatch):
    for key, value in INSTANCE_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize(
    ("filename", "launcher"),
    [("dagster.yaml", "dagster_docker.DockerRunLauncher"), ("dagster-k8s.yaml", "dagster_k8s.K8sRunLauncher")],
)
def test_production_instance_files_validate_against_dagster_schemas(instance_env, filename, launcher):
    from dagster._config import process_config, resolve_to_config_type
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str(DEPLOY), config_filename=filename)  # raises on schema errors
    assert set(config["storage"]) == {"postgres"}
    sections = {
        "run_coordinator": "dagster._core.run_coordinator.QueuedRunCoordinator",
        "run_launcher": launcher,
        "compute_logs": "dagster_aws.s3.compute_log_manager.S3ComputeLogManager",
    }
    for section, expected in sections.items():
        entry = config[section]
        assert f"{entry['module']}.{entry['class']}" == expected
        cls = getattr(importlib.import_module(entry["module"]), entry["class"])
        result = process_config(resolve_to_config_type(cls.config_type()), entry.get("config") or {})
        assert result.success, (filename, section, [e.message for e in result.errors])
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    total = next(lim["limit"] for lim in limits if lim["key"] == "dagster/backfill" and "value" not in lim)
    assert total < config["concurrency"]["runs"]["max_concurrent_runs"]  # slots always left for daily runs
    assert config["concurrency"]["pools"]["default_limit"] >= 1
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]


def test_workspace_points_at_the_compose_code_server():
    from dagster._core.workspace.config_schema import ensure_workspace_config

    workspace = ensure_workspace_config(yaml.safe_load((DEPLOY / "workspace.yaml").read_text()), str(DEPLOY))
    (entry,) = workspace["load_from"]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    code = compose["services"][entry["grpc_server"]["host"]]
    assert code["command"][:3] == ["dagster", "code-server", "start"]
    assert code["command"][code["command"].index("-p") + 1] == str(entry["grpc_server"]["port"])
    assert entry["grpc_server"]["location_name"] == "lakehouse"
    assert "lakehouse_assets.definitions" in code["command"]


def test_compose_file_has_every_role_and_consistent_wiring():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "minio", "minio-init", "code", "webserver", "daemon"}
    for name, service in services.items():
        assert set(service) <= COMPOSE_SERVICE_KEYS, (name, set(service) - COMPOSE_SERVICE_KEYS)
        assert "image" in service or "build" in service, name
        for dep, condition in (service.get("depends_on") or {}).items():
            assert dep in services and condition["condition"] in {
                "service_started", "service_healthy", "service_completed_successfully"}
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], dep
    assert services["code"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["webserver"]["command"][0] == "dagster-webserver"
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["daemon"]["volumes"]
    assert set(compose["volumes"]) == {"postgres-data", "minio-data"}

    # DockerRunLauncher: the run containers join the compose network and get every variable they need
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    launcher = instance["run_launcher"]["config"]
    assert compose["networks"]["lakehouse"]["name"] == launcher["network"]
    env = services["code"]["environment"]
    assert services["daemon"]["environment"] == env == services["webserver"]["environment"]
    assert set(launcher["env_vars"]) <= set(env)
    assert env["DAGSTER_CURRENT_IMAGE"] == "${LAKEHOUSE_IMAGE}" == services["code"]["image"]
    # every ${VAR} without a default is provided by .env.example
    text = (DEPLOY / "docker-compose.yml").read_text()
    needed = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)\}", text))
    example = dict(
        line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert needed <= set(example), needed - set(example)
    assert example["LAKEHOUSE_STORAGE"].startswith(f"s3://{example['LAKEHOUSE_BUCKET']}/")


def test_helm_values_match_the_dagster_chart_layout():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    chart_top_level = {
        "global", "dagster-user-deployments", "dagsterWebserver", "dagsterDaemon", "runLauncher",
        "computeLogManager", "postgresql", "concurrency", "telemetry", "pythonLogs", "ingress", "rabbitmq",
        "redis", "flower", "scheduler", "serviceAccount", "generatePostgresqlPasswordSecret", "busybox",
        "retention", "imagePullSecrets", "nameOverride", "fullnameOverride", "rbacEnabled",
    }
    assert set(values) <= chart_top_level, set(values) - chart_top_level
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "lakehouse_assets.definitions"]
    assert {"repository", "tag", "pullPolicy"} <= set(deployment["image"])
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert set(values["runLauncher"]["config"]) == {"k8sRunLauncher"}
    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"
    assert values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlHost"]
    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    # the chart copies tagConcurrencyLimits verbatim into dagster.yaml: validate them with Dagster's schema
    from dagster._config import process_config
    from dagster._core.instance.config import get_concurrency_config

    result = process_config(
        get_concurrency_config().config_type,
        {"runs": {"max_concurrent_runs": queued["maxConcurrentRuns"],
                  "tag_concurrency_limits": queued["tagConcurrencyLimits"]},
         "pools": {"default_limit": values["concurrency"]["pools"]["defaultLimit"],
                   "granularity": values["concurrency"]["pools"]["granularity"]}},
    )
    assert result.success, [e.message for e in result.errors]
    # the chart refuses maxConcurrentRuns in both places
    assert "runs" not in values["concurrency"]


def test_image_installs_the_deploy_extra_and_only_the_product():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'pip install ".[deploy]"' in dockerfile
    assert "httpfs" not in dockerfile  # SQL over s3:// reads through pyarrow, no DuckDB extension
    copied = {src for line in dockerfile.splitlines() if line.startswith("COPY") for src in line.split()[1:-1]}
    assert copied == {"pyproject.toml", "README.md", "lakehouse_assets", "deploy/workspace.yaml", "deploy/dagster.yaml"}
    assert "dagster code-server start" in dockerfile.replace('", "', " ").replace('["', "").replace('"]', "")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deploy = project["optional-dependencies"]["deploy"]
    assert {d.split("==")[0] for d in deploy} == {"dagster-postgres", "dagster-docker", "dagster-k8s"}
    dagster_pin = next(d for d in project["dependencies"] if d.startswith("dagster=="))
    aws_pin = next(d for d in project["dependencies"] if d.startswith("dagster-aws=="))
    assert dagster_pin == "dagster==1.13.27" and all(d.endswith(aws_pin.split("==")[1]) for d in deploy)
