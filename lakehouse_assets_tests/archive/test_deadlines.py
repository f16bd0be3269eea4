"""Every HTTP transfer has a total deadline: a server trickling its answer cannot hang a step.

The fault lives in the servers (the archive and REST stand-ins, a webhook receiver, all on
127.0.0.1): they send their headers, then one byte per second, so every single socket read succeeds
and a per-read timeout never fires. Before the deadline existed each of these calls hung for hours
(a 70 KB zip at 1 byte/s). The bounds asserted are generous (15 s for a 2 s deadline, two
attempts): they only show that the hang is cut, not how fast.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lakehouse_assets import alerts
from lakehouse_assets.archive.client import ArchiveClient, ArchiveFetchError
from lakehouse_assets.instruments import Instrument
from lakehouse_assets.klines.rest import RestKlinesClient, RestSettings
from lakehouse_assets_tests.samples import REPO
from lakehouse_dev.fakes.archive_server import ArchiveServer
from lakehouse_dev.fakes.rest_server import BinanceRestServer

ZIP = "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip"
BOUND = 15.0  # seconds: far above 2 attempts x 2 s, far below "hangs for hours"


def client(server: ArchiveServer, **options: float) -> ArchiveClient:
    settings: dict = {"timeout": 5.0, "deadline_seconds": 2.0, "max_attempts": 2, "backoff_seconds": 0.01, **options}
    archive = ArchiveClient(server.base_url, **settings)
    archive.sleep = lambda seconds: None
    return archive


def timed(fn):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - returned for the test to inspect
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


# --------------------------------------------------------------------------- archive


def test_trickled_zip_is_cut_at_the_deadline_retried_and_reported(archive_server: ArchiveServer) -> None:
    archive_server.inject(ZIP, trickle_bytes_per_second=1, times=10, methods=("GET",))
    with client(archive_server) as archive:
        error, elapsed = timed(lambda: archive.fetch(ZIP))
    assert isinstance(error, ArchiveFetchError), error
    assert elapsed < BOUND
    message = str(error)
    assert f"{archive_server.base_url}/{ZIP}" in message  # the URL
    assert "deadline of 2 s exceeded after 2." in message  # the deadline and the time the attempt took
    assert re.search(r"after 2 attempts in \d+\.\d s", message)  # the total time spent
    assert error.transient and error.attempts == 2
    assert archive_server.count("GET", ZIP) == 2  # a deadline overrun is retried like any timeout


def test_a_trickle_that_ends_in_time_is_not_cut(archive_server: ArchiveServer) -> None:
    """The deadline bounds the transfer, it does not shorten the read timeout: a slow but finishing
    CHECKSUM (about 100 bytes at 200 bytes/s) arrives whole."""
    archive_server.inject(ZIP + ".CHECKSUM", trickle_bytes_per_second=200, methods=("GET",))
    with client(archive_server, deadline_seconds=10.0) as archive:
        text = archive.fetch(ZIP + ".CHECKSUM")
    assert text.startswith(b"dd579c62368ded93d3f01a1904575b932279e32936e181c062763e605793c1c2")


def test_trickled_checksum_and_head_probe_are_bounded(archive_server: ArchiveServer) -> None:
    """The sensor's probes: the CHECKSUM body and a HEAD whose very headers arrive at 1 byte/s."""
    archive_server.inject(ZIP + ".CHECKSUM", trickle_bytes_per_second=1, times=10, methods=("GET",))
    archive_server.inject(ZIP, trickle_bytes_per_second=1, times=10, methods=("HEAD",))
    with client(archive_server) as archive:
        checksum_error, checksum_elapsed = timed(lambda: archive.fetch_optional(ZIP + ".CHECKSUM"))
        head_error, head_elapsed = timed(lambda: archive.head(ZIP))
    for error, elapsed, method in ((checksum_error, checksum_elapsed, "GET"), (head_error, head_elapsed, "HEAD")):
        assert isinstance(error, ArchiveFetchError), (method, error)
        assert elapsed < BOUND, method
        assert "deadline of 2 s exceeded" in str(error) and ZIP in str(error)
    assert archive_server.count("HEAD", ZIP) == 2


_BRONZE_CHILD = """
import sys
import dagster as dg
from lakehouse_assets.defs.resources import BinanceArchiveResource
from lakehouse_assets_tests.harness import failure_text, resources, run_klines

lake, url = sys.argv[1:]
res = resources(lake, url, "spot:BTCUSDT")
res["archive"] = BinanceArchiveResource(base_url=url, deadline_seconds=2.0, max_attempts=2, backoff_seconds=0.01)
with dg.DagsterInstance.get() as instance:
    result = run_klines(res, "2020-01-01", "2020-01-02", instance, raise_on_error=False)
print(failure_text(result), flush=True)
sys.exit(0 if result.success else 1)
"""


def test_bronze_step_against_a_trickling_archive_fails_in_bounded_time_naming_the_file(
    tmp_path: Path, archive_server: ArchiveServer
) -> None:
    """A real run in its own process: the bronze step no longer holds its binance_archive slot forever.

    Step retries are off (LAKEHOUSE_RETRY_MAX=0) so the bound covers one step attempt.
    """
    archive_server.inject("BTCUSDT-1m-2020-01-02.zip", trickle_bytes_per_second=1, times=10, methods=("GET",))
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "LAKEHOUSE_RETRY_MAX": "0", "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _BRONZE_CHILD, str(tmp_path / "lake"), archive_server.base_url],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert elapsed < 120  # Python and Dagster start-up included; before the deadline this never ended
    text = proc.stdout
    assert f"{archive_server.base_url}/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-02.zip" in text, proc.stderr
    assert re.search(r"after 2 attempts in \d+\.\d s; last error: deadline of 2 s exceeded", text), text
    # The day that arrived in time is stored: the deadline cut one transfer, not the run's good work;
    # nothing of the cut one is.
    assert (tmp_path / "lake/bronze/binance" / ZIP).is_file()
    assert not (tmp_path / "lake/bronze/binance" / ZIP.replace("2020-01-01", "2020-01-02")).exists()


def test_redirect_loop_fails_at_once_naming_the_url(archive_server: ArchiveServer) -> None:
    """A CDN rule redirecting a file to itself: no retry can fix it, and the error says which URL loops."""
    archive_server.inject(ZIP, redirect_loop=True, times=1000, methods=("GET",))
    with client(archive_server, max_attempts=5) as archive:
        error, elapsed = timed(lambda: archive.fetch(ZIP))
    assert isinstance(error, ArchiveFetchError), repr(error)
    assert elapsed < BOUND
    message = str(error)
    assert f"giving up on {archive_server.base_url}/{ZIP} after 1 attempt" in message
    assert "redirect loop: more than 30 redirects" in message and f"{ZIP}?loop" in message
    assert not error.transient and error.attempts == 1


def test_deadline_settings_are_validated() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf"), 86_400.0):
        with pytest.raises(ValueError, match="deadline must be > 0"):
            ArchiveClient("http://127.0.0.1:9", deadline_seconds=bad)
        with pytest.raises(ValueError, match="deadline must be > 0"):
            RestSettings(deadline_seconds=bad)
    with pytest.raises(ValueError, match="connect timeout must be > 0"):
        ArchiveClient("http://127.0.0.1:9", connect_timeout=0.0)


# --------------------------------------------------------------------------- REST (ccxt)


def test_trickled_rest_page_is_cut_at_the_deadline_retried_and_reported(rest_server: BinanceRestServer) -> None:
    """Through the real RestKlinesClient and ccxt: ccxt's session is ours, so its requests have a deadline."""
    rest_server.trickle("/api/v3/klines", bytes_per_second=1, times=10)
    waits: list[float] = []
    settings = RestSettings(base_urls={"spot": rest_server.base_url}, max_attempts=2, backoff_seconds=0.01,
                            deadline_seconds=2.0)
    rest = RestKlinesClient(settings, sleep=waits.append)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    outcome = None

    def fetch() -> None:
        nonlocal outcome
        outcome = rest.fetch(Instrument("spot", "BTCUSDT"), "1m", start, datetime(2020, 1, 2, tzinfo=UTC))

    error, elapsed = timed(fetch)
    assert error is None and outcome is not None
    assert elapsed < BOUND
    assert outcome.frame.height == 0 and outcome.covered_until == start
    assert outcome.error is not None
    assert f"{rest_server.base_url}/api/v3/klines" in outcome.error  # the URL
    assert "deadline of 2 s exceeded" in outcome.error
    assert re.search(r"RequestTimeout after 2 attempts in \d+\.\d s", outcome.error)  # retried, time spent
    assert len(rest_server.kline_requests("spot")) == 2 and len(waits) == 1


# --------------------------------------------------------------------------- webhook


class _TricklingWebhook:
    """A webhook receiver that answers 200 with a body sent at 1 byte/s (it never finishes in time)."""

    def __init__(self) -> None:
        self.posts = 0
        self.stopping = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                owner.posts += 1
                body = json.dumps({"ok": True, "padding": "x" * 200}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        if owner.stopping.wait(1.0):
                            return
                except OSError:
                    return

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/webhooksecretpath"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trickling_webhook() -> Iterator[_TricklingWebhook]:
    hook = _TricklingWebhook()
    yield hook
    hook.close()


def test_trickling_webhook_is_cut_at_the_deadline_and_named_by_host_only(trickling_webhook: _TricklingWebhook) -> None:
    error, elapsed = timed(
        lambda: alerts.post_alert(trickling_webhook.url, {"text": "x"}, attempts=2, backoff_seconds=0.01,
                                  deadline_seconds=1.5)
    )
    assert isinstance(error, alerts.AlertDeliveryError), error
    assert elapsed < BOUND
    assert trickling_webhook.posts == 2  # retried
    message = str(error)
    host = trickling_webhook.url.split("/services/")[0]
    assert host in message and "deadline of 1.5 s exceeded" in message and "after 2 attempt(s)" in message
    assert "webhooksecretpath" not in message and "/services/" not in message

