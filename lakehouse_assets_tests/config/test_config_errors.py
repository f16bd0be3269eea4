"""Configuration errors are found early, named, and never retried.

Real processes throughout: the code location loaded by Dagster's own CLI, a run in a child process
on a real instance, and the installed ``lakehouse`` command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from lakehouse_assets_tests.samples import REPO

BIN = Path(sys.executable).parent

BAD_ENV = {"LAKEHOUSE_SYMBOLS": "", "LAKEHOUSE_DAYS_PER_RUN": "0", "LAKEHOUSE_START_DATE": "2020-13-01"}
BAD_MESSAGE = (
    "3 configuration errors:\n"
    "- LAKEHOUSE_SYMBOLS='': is set but empty; expected at least one market:SYMBOL, e.g. 'spot:BTCUSDT' (an empty "
    "universe is not the default universe: unset the variable to use the default)\n"
    "- LAKEHOUSE_START_DATE='2020-13-01': expected a date YYYY-MM-DD, e.g. 2020-01-01\n"
    "- LAKEHOUSE_DAYS_PER_RUN='0': expected an integer >= 1"
)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_") and k != "DAGSTER_HOME"}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def test_bad_settings_stop_the_code_location_from_loading_with_every_message(tmp_path: Path) -> None:
    """What the UI shows for a code location that fails to load: every bad variable, value and rule."""
    out = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "lakehouse_assets.definitions"],
        cwd=tmp_path, env=clean_env(**BAD_ENV), capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"lakehouse_assets.settings.ConfigError: {BAD_MESSAGE}\n" in out.stdout + out.stderr


def test_definitions_load_with_no_environment_at_all(tmp_path: Path) -> None:
    code = "from lakehouse_assets.definitions import defs; print(len(list(defs.resolve_asset_graph().get_all_asset_keys())))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 8


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_empty_universe_is_a_named_error_and_nothing_is_written(tmp_path: Path, sample_mirror: Path) -> None:
    """LAKEHOUSE_SYMBOLS="" (an unset compose/Helm variable) once meant "the default universe", and a re-run
    then replaced the day with other instruments. Now the run never starts and the lake is untouched."""
    lake = tmp_path / "lake"
    day = lake / "silver/klines/date=2020-01-02"
    day.mkdir(parents=True)
    (day / "spot-ADABTC.parquet").write_bytes(b"stands for a good day of another instrument")
    before = _tree(lake)
    home = tmp_path / "home"
    home.mkdir()
    out = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "lakehouse_assets.definitions",
         "--select", "bronze/klines_archive,silver/klines", "--partition", "2020-01-02"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=clean_env(DAGSTER_HOME=str(home), LAKEHOUSE_STORAGE=str(lake), LAKEHOUSE_ARCHIVE_URL=sample_mirror.as_uri(),
                      LAKEHOUSE_SYMBOLS=""),
    )
    assert out.returncode != 0, out.stdout + out.stderr
    assert (
        "lakehouse_assets.settings.ConfigError: LAKEHOUSE_SYMBOLS='': is set but empty; expected at least one "
        "market:SYMBOL, e.g. 'spot:BTCUSDT' (an empty universe is not the default universe: unset the variable to "
        "use the default)\n"
    ) in out.stdout + out.stderr
    assert _tree(lake) == before
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs() == []


def test_a_config_typo_inside_a_run_fails_once_and_is_never_retried(tmp_path: Path, sample_mirror: Path) -> None:
    """A universe typo reaching a run (a resource built in code, or resolved at run time) fails the step at
    once, naming the variable: before, the step RetryPolicy re-ran it three times over ~6 minutes."""
    home = tmp_path / "home"
    home.mkdir()
    with dg.DagsterInstance.from_config(str(home)) as inst:  # create the sqlite storages up front
        inst.get_runs()
    proc = subprocess.run(
        [sys.executable, "-m", "lakehouse_assets_tests.run_child", str(tmp_path / "lake"), sample_mirror.as_uri(),
         "spot:BTCUSDT,xx:BTC", "2020-01-01", "2020-01-01"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        # a tiny delay so that any retry would show up quickly instead of after 30 s
        env=clean_env(DAGSTER_HOME=str(home), LAKEHOUSE_RETRY_DELAY_SECONDS="0.1"),
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    with dg.DagsterInstance.from_config(str(home)) as inst:
        (run,) = inst.get_runs()
        assert run.status == dg.DagsterRunStatus.FAILURE

        def steps(kind: dg.DagsterEventType) -> list[str]:
            return [e.step_key for e in inst.all_logs(run.run_id, of_type=kind)]

        assert steps(dg.DagsterEventType.STEP_START) == ["bronze__klines_archive"]
        assert steps(dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
        (failure,) = inst.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        data = failure.dagster_event.step_failure_data
        assert data.user_failure_data.description == (
            "configuration error: LAKEHOUSE_SYMBOLS='spot:BTCUSDT,xx:BTC': unknown market 'xx' for symbol 'BTC'; "
            "expected one of spot, um, cm; a universe is comma-separated market:SYMBOL entries (market spot, um, cm), "
            "market:PATTERN globs (* and ?) and !exclusions, e.g. 'um:BTCUSDT,spot:*USDT,!leveraged'"
        )
    assert not (tmp_path / "lake").exists()


def _config(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "lakehouse"), "config"], cwd=cwd, env=clean_env(**env), capture_output=True,
                          text=True, timeout=120)


def _rows(stdout: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in stdout.splitlines():
        name, rest = line.split(None, 1)
        value, source = (part.strip() for part in rest.rsplit("  ", 1))
        rows[name] = (value, source)
    return rows


def test_lakehouse_config_prints_each_setting_with_its_source_and_no_secret(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "LAKEHOUSE_DAYS_PER_RUN=7\n"
        'LAKEHOUSE_ALERT_WEBHOOK_URL="https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"\n'
    )
    out = _config(
        tmp_path,
        LAKEHOUSE_ARCHIVE_URL="http://mirror-user:s3cr3t-pw@127.0.0.1:8080/binance",
        LAKEHOUSE_SYMBOLS="spot:BTCUSDT, um:ethusdt",
        LAKEHOUSE_DAYS_PER_RUN="14",  # .env wins, as with `dagster dev`
        LAKEHOUSE_START_DATE="",  # an unset compose variable: the default
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    rows = _rows(out.stdout)
    assert list(rows)[:3] == ["LAKEHOUSE_STORAGE", "LAKEHOUSE_S3_ENDPOINT_URL", "LAKEHOUSE_S3_MAX_ATTEMPTS"]
    from lakehouse_assets.settings import SETTINGS

    assert set(rows) == set(SETTINGS)
    assert rows["LAKEHOUSE_DAYS_PER_RUN"] == ("7", ".env")
    assert rows["LAKEHOUSE_ALERT_WEBHOOK_URL"] == ("https://hooks.slack.com/***", ".env")
    assert rows["LAKEHOUSE_ARCHIVE_URL"] == ("http://***@127.0.0.1:8080/binance", "env")
    assert rows["LAKEHOUSE_SYMBOLS"] == ("spot:BTCUSDT, um:ethusdt", "env")
    assert rows["LAKEHOUSE_START_DATE"] == ("2020-01-01", "default (set but empty)")
    assert rows["LAKEHOUSE_STORAGE"] == ("lakehouse_data", "default")
    assert rows["LAKEHOUSE_S3_ENDPOINT_URL"] == ("<unset>", "default")
    assert "s3cr3t" not in out.stdout and "SECRET" not in out.stdout and "services" not in out.stdout


def test_lakehouse_config_exits_nonzero_with_the_messages_a_run_would_give(tmp_path: Path) -> None:
    out = _config(tmp_path, **BAD_ENV)
    assert out.returncode == 1
    assert out.stderr == f"lakehouse: {BAD_MESSAGE}\n"
    rows = _rows(out.stdout)
    assert rows["LAKEHOUSE_SYMBOLS"] == ("''", "env (INVALID)")
    assert rows["LAKEHOUSE_DAYS_PER_RUN"] == ("0", "env (INVALID)")
    assert rows["LAKEHOUSE_RETRY_MAX"] == ("3", "default")
