"""Run klines_job (bronze -> silver) for a day range in a separate process (fault-tolerance tests kill or race it).

Usage: python -m lakehouse_assets_tests.run_child LAKE ARCHIVE_URL SYMBOLS START END
The Dagster instance is $DAGSTER_HOME's. Test-only hooks, set through the environment, act on the
silver/klines files written through a local lake (they wrap LocalStore.put_bytes in this process only):

* LAKEHOUSE_TEST_HANG_AT_PUT=N: during the N-th silver file write, after the temp file is written
  but before it is renamed into place, touch $LAKEHOUSE_TEST_MARKER and hang (the test kills -9).
* LAKEHOUSE_TEST_BARRIER=DIR:N: at the first silver file write, wait until N processes got there.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from unittest import mock


def _install_hooks() -> None:
    from lakehouse_assets.lake.store import LocalStore

    hang_at = int(os.environ.get("LAKEHOUSE_TEST_HANG_AT_PUT") or 0)
    barrier = os.environ.get("LAKEHOUSE_TEST_BARRIER")
    original = LocalStore.put_bytes
    state = {"silver_puts": 0}

    def put_bytes(self: LocalStore, key: str, data: bytes) -> None:
        if not key.startswith("silver/klines/"):
            return original(self, key, data)
        state["silver_puts"] += 1
        if barrier and state["silver_puts"] == 1:
            directory, n = barrier.rsplit(":", 1)
            Path(directory, str(os.getpid())).touch()
            deadline = time.monotonic() + 60
            while len(list(Path(directory).iterdir())) < int(n) and time.monotonic() < deadline:
                time.sleep(0.05)
        if state["silver_puts"] == hang_at:

            def hang(fd: int) -> None:
                Path(os.environ["LAKEHOUSE_TEST_MARKER"]).write_text(key)
                time.sleep(600)

            with mock.patch("os.fsync", hang):
                return original(self, key, data)
        return original(self, key, data)

    LocalStore.put_bytes = put_bytes  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    import dagster as dg

    from lakehouse_assets_tests.harness import resources, run_klines

    lake, archive_url, symbols, start, end = argv
    _install_hooks()
    res = resources(lake, archive_url, symbols, s3_endpoint_url=os.environ.get("LAKEHOUSE_S3_ENDPOINT_URL"))
    with dg.DagsterInstance.get() as instance:
        result = run_klines(res, start, end, instance, raise_on_error=False)
    print(f"run {result.run_id} success={result.success}", flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
