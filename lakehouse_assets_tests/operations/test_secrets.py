"""Secrets in URLs never reach logs, metadata, error messages or the lake.

The end-to-end test runs the real code location the way an operator does: ``dagster asset
materialize`` processes configured only through environment variables, against the archive and
REST stand-ins on 127.0.0.1 reached with ``http://user:password@`` URLs (the servers accept the
basic-auth header, and the test checks it arrived, so the credentials were really used), a real
Dagster home (sqlite event log, compute logs of every step process), then the failure-alert sensor
with a webhook whose path is a secret. Afterwards every file of the lake, every file and sqlite
cell of the Dagster home, and everything the processes printed are searched for the secrets:
zero hits. Parquet files and compressed sqlite blobs are decoded first, so a hit cannot hide
behind compression.
"""

from __future__ import annotations

import base64
import gzip
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakehouse_assets.redact import redact_exception, redact_text, redact_url, url_host
from lakehouse_assets_tests.samples import REPO, SAMPLE_DATA
from lakehouse_dev.fakes.archive_server import ArchiveServer
from lakehouse_dev.fakes.rest_server import BinanceRestServer

DAGSTER = Path(sys.executable).parent / "dagster"

ARCHIVE_USER, ARCHIVE_PASSWORD = "archuser", "s3cretPW-archive"
REST_USER, REST_PASSWORD = "restuser", "s3cretPW-rest"
WEBHOOK_SECRET = "T0000/B0000/hooks3cretPath"


# --------------------------------------------------------------------------- the helper itself


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://user:pass@mirror.example/data/x.zip", "http://***@mirror.example/data/x.zip"),
        ("https://token@mirror.example:8443/", "https://***@mirror.example:8443/"),
        ("https://data.binance.vision/data/spot/x.zip", "https://data.binance.vision/data/spot/x.zip"),
        (
            "https://b.s3.amazonaws.com/k.zip?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F1"
            "&X-Amz-Signature=abc&X-Amz-Security-Token=tok&X-Amz-Expires=60",
            "https://b.s3.amazonaws.com/k.zip?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***"
            "&X-Amz-Signature=***&X-Amz-Security-Token=***&X-Amz-Expires=60",
        ),
        ("http://h/api?symbol=BTCUSDT&apiKey=k&signature=s&limit=5", "http://h/api?symbol=BTCUSDT&apiKey=***&signature=***&limit=5"),
        ("http://h/hook?token=t&password=p&secret=s&key=k", "http://h/hook?token=***&password=***&secret=***&key=***"),
        ("file:///srv/mirror", "file:///srv/mirror"),
        ("", ""),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_scrubs_every_url_in_a_message() -> None:
    message = (
        "binance GET http://u:pw1@127.0.0.1:81/api/v3/klines?symbol=X&signature=abc failed; "
        "see 'https://v:pw2@mirror/x.zip' and <http://h/p?token=pw3>"
    )
    redacted = redact_text(message)
    assert not any(secret in redacted for secret in ("pw1", "pw2", "pw3", "abc"))
    assert "http://***@127.0.0.1:81/api/v3/klines?symbol=X&signature=***" in redacted
    assert "'https://***@mirror/x.zip'" in redacted and "<http://h/p?token=***>" in redacted


def test_redact_exception_scrubs_the_whole_chain() -> None:
    try:
        try:
            raise ConnectionError("GET http://u:pw1@h/x")
        except ConnectionError as inner:
            raise RuntimeError("while fetching http://u:pw1@h/x") from inner
    except RuntimeError as outer:
        redact_exception(outer)
        assert "pw1" not in str(outer) and "pw1" not in str(outer.__cause__)


def test_url_host_names_only_the_host() -> None:
    assert url_host("https://hooks.slack.com/services/T0/B0/secret") == "https://hooks.slack.com"
    assert url_host("http://user:pw@127.0.0.1:8080/hook?token=x") == "http://127.0.0.1:8080"
    assert url_host(None) == "<unset>"


def test_rest_client_keeps_credentials_out_of_describe_errors_and_debug_logs(
    rest_server: BinanceRestServer, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG, ccxt and urllib3 log every request URL; a failure's message carries it too."""
    from datetime import UTC, datetime

    from lakehouse_assets.instruments import Instrument
    from lakehouse_assets.klines.rest import RestKlinesClient, RestSettings

    caplog.set_level(logging.DEBUG)
    url = _with_credentials(rest_server.base_url, REST_USER, REST_PASSWORD)
    rest = RestKlinesClient(RestSettings(base_urls={"spot": url}, max_attempts=2, backoff_seconds=0.01), sleep=lambda s: None)
    # A proxy's 502 page, twice: retries run out and the window's error quotes ccxt, which names the URL.
    rest_server.fail("/api/v3/klines", 502, body=b"<html>502 Bad Gateway</html>", times=2)
    outcome = rest.fetch(Instrument("spot", "BTCUSDT"), "1m", datetime(2020, 1, 1, tzinfo=UTC),
                         datetime(2020, 1, 1, 1, tzinfo=UTC))
    assert rest_server.authorizations[-1] is not None  # the credentials were sent, as basic auth
    assert outcome.error is not None and "http://***@127.0.0.1" in outcome.error
    assert rest.describe("spot") == f"binance via http://***@127.0.0.1:{rest_server.base_url.rsplit(':', 1)[1]}"
    debug_lines = [r.getMessage() for r in caplog.records if r.name == "ccxt.base.exchange"]
    assert debug_lines and all("***@127.0.0.1" in line for line in debug_lines)
    assert REST_PASSWORD not in caplog.text and REST_PASSWORD not in outcome.error


def test_compose_publishes_the_ui_and_consoles_on_loopback_by_default() -> None:
    """Dagster OSS has no login: with nothing set, no port of the compose file listens beyond 127.0.0.1."""
    import re

    import yaml

    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    published = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            # what Compose does with an empty environment: ${VAR:-default} -> default
            expanded = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(port))
            published.append((name, expanded))
    assert ("webserver", "127.0.0.1:3000:3000") in published
    assert all(spec.startswith("127.0.0.1:") for _, spec in published), published


# --------------------------------------------------------------------------- end to end


def _free_port() -> int:
    """A port nothing listens on (a webhook receiver that is down: connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_credentials(base_url: str, user: str, password: str) -> str:
    return base_url.replace("http://", f"http://{user}:{password}@", 1)


def _texts(path: Path) -> list[bytes]:
    """The bytes of a file plus decoded forms (Parquet values, sqlite cells, zlib/gzip blobs)."""
    data = path.read_bytes()
    texts = [data]
    if data[:2] == b"\x1f\x8b":
        texts.append(gzip.decompress(data))
    if data[:4] == b"PAR1":
        frame = pl.read_parquet(path)
        texts.append(frame.cast({c: pl.String for c in frame.columns if frame[c].dtype != pl.String}, strict=False)
                     .write_csv().encode())
        texts.append(repr(pl.read_parquet_metadata(path)).encode())
    if data.startswith(b"SQLite format 3"):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                for row in db.execute(f'SELECT * FROM "{table}"'):
                    for value in row:
                        if isinstance(value, bytes):
                            texts.append(value)
                            try:
                                texts.append(zlib.decompress(value))
                            except zlib.error:
                                pass
                        elif isinstance(value, str):
                            texts.append(value.encode())
    return texts


def _hits(roots: list[Path], outputs: list[str], needles: list[bytes]) -> list[str]:
    found = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            texts = _texts(path)
            found += [f"{path}: {n.decode()}" for n in needles if any(n in t for t in texts)]
    for i, output in enumerate(outputs):
        found += [f"process output {i}: {n.decode()}" for n in needles if n in output.encode()]
    return found


def _count(roots: list[Path], needle: bytes) -> int:
    return sum(sum(t.count(needle) for t in _texts(p)) for root in roots for p in root.rglob("*") if p.is_file())


_ALERT_CHILD = """
import sys
import dagster as dg
from dagster._utils.error import serializable_error_info_from_exc_info
from lakehouse_assets.definitions import defs
from lakehouse_assets.defs import operations

with dg.DagsterInstance.get() as instance:
    run = next(r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.FAILURE)
    failure = next(iter(instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE))).dagster_event
    context = dg.build_run_status_sensor_context(
        sensor_name="lakehouse_failure_alerts", dagster_event=failure, dagster_instance=instance,
        dagster_run=run, resources={"alerts": defs.resources["alerts"]},
    ).for_run_failure()
    try:
        operations.lakehouse_failure_alerts(context)
    except Exception:
        # What the sensor daemon records as the tick's error.
        print("TICK ERROR:", serializable_error_info_from_exc_info(sys.exc_info()).to_string(), flush=True)
        sys.exit(3)
print("delivered", flush=True)
"""


def test_credentials_in_urls_reach_no_log_metadata_error_or_lake_file(tmp_path: Path, mirror: Path) -> None:
    lake, home = tmp_path / "lake", tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    webhook_port = _free_port()
    outputs: list[str] = []

    with ArchiveServer(mirror) as archive, BinanceRestServer(SAMPLE_DATA) as rest:
        archive_shown = f"http://***@127.0.0.1:{archive.port}"
        # 2020-01-02: the archive lost the file (404), so the manifest row and the "missing files"
        # metadata name its URL, and the gap-fill asks REST for the whole day; REST first answers 503
        # (a retry warning quoting ccxt's message, which carries the URL), then something that is not a
        # page of klines (a fetch failure naming the source, recorded in silver/kline_gaps).
        archive.inject("BTCUSDT-1m-2020-01-02.zip", status=404, times=100)
        # 2020-01-03: a 403, a step failure whose message names the URL.
        archive.inject("BTCUSDT-1m-2020-01-03.zip", status=403, times=100)
        rest.fail("/api/v3/klines", 503, times=1)
        rest.fail("/api/v3/klines", 200, body={"unexpected": "not a list of klines"}, times=1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
        env.update(
            DAGSTER_HOME=str(home),
            PYTHONUNBUFFERED="1",
            LAKEHOUSE_STORAGE=str(lake),
            LAKEHOUSE_SYMBOLS="spot:BTCUSDT",
            LAKEHOUSE_START_DATE="2020-01-01",
            LAKEHOUSE_RETRY_MAX="0",
            LAKEHOUSE_ARCHIVE_URL=_with_credentials(archive.base_url, ARCHIVE_USER, ARCHIVE_PASSWORD),
            LAKEHOUSE_REST_URL=_with_credentials(rest.base_url, REST_USER, REST_PASSWORD),
            LAKEHOUSE_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{webhook_port}/services/{WEBHOOK_SECRET}",
        )

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
            outputs.extend([proc.stdout, proc.stderr])
            return proc

        def materialize(selection: str, partition: str) -> subprocess.CompletedProcess[str]:
            return run(str(DAGSTER), "asset", "materialize", "-m", "lakehouse_assets.definitions",
                       "--select", selection, "--partition", partition)

        bronze = materialize("bronze/klines_archive,silver/klines", "2020-01-02")
        assert bronze.returncode == 0, bronze.stdout[-3000:] + bronze.stderr[-3000:]
        filled = materialize("silver/klines_filled,silver/kline_gaps", "2020-01-02")
        assert filled.returncode == 0, filled.stdout[-3000:] + filled.stderr[-3000:]
        failed = materialize("bronze/klines_archive", "2020-01-03")
        assert failed.returncode != 0
        alert = run(sys.executable, "-c", _ALERT_CHILD)

        # The credentials were really used: both servers received them as basic auth.
        assert f"Basic {base64.b64encode(f'{ARCHIVE_USER}:{ARCHIVE_PASSWORD}'.encode()).decode()}" in archive.authorizations
        assert f"Basic {base64.b64encode(f'{REST_USER}:{REST_PASSWORD}'.encode()).decode()}" in rest.authorizations

    # What happened is still told, with the URLs redacted.
    manifest = pl.read_parquet(sorted((lake / "bronze/klines_archive").rglob("*.parquet")))
    assert manifest["source_url"].to_list() == [f"{archive_shown}/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-02.zip"]
    gaps = pl.read_parquet(sorted((lake / "silver/kline_gaps").rglob("*.parquet")))
    assert any("binance via http://***@127.0.0.1:" in r for r in gaps["reason"].to_list()), gaps["reason"].to_list()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["silver", "klines_filled"]))
        assert event is not None and event.asset_materialization is not None
        sources = event.asset_materialization.metadata["rest_sources"].value
        assert sources["spot"].startswith("binance via http://***@127.0.0.1:")
    assert f"{archive_shown}/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-03.zip" in failed.stdout + failed.stderr
    assert alert.returncode == 3, alert.stdout + alert.stderr
    assert f"alert webhook http://127.0.0.1:{webhook_port} did not accept the alert" in alert.stdout
    assert _count([lake], b"***@127.0.0.1") >= 2 and _count([home], b"***@127.0.0.1") >= 2  # the scan sees them

    # ...and no secret is anywhere.
    needles = [
        ARCHIVE_PASSWORD.encode(),
        REST_PASSWORD.encode(),
        WEBHOOK_SECRET.encode(),
        b"hooks3cretPath",
        base64.b64encode(f"{ARCHIVE_USER}:{ARCHIVE_PASSWORD}".encode()),
        base64.b64encode(f"{REST_USER}:{REST_PASSWORD}".encode()),
    ]
    assert _hits([lake, home], outputs, needles) == []
