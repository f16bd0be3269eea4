"""Run klines_job (bronze -> silver) for a day range in a separate process (fault-tolerance tests kill or race it).

Usage: python -m lakehouse_assets_tests.run_child LAKE ARCHIVE_URL SYMBOLS START END
The Dagster instance is $DAGSTER_HOME's. Test-only hooks, set through the environment, act on the
silver/klines files written through a local lake (they wrap LocalStore.put_many and its fsync, in this process only):

* LAKEHOUSE_TEST_HANG_AT_PUT=N: during the N-th silver file write, after the temp file is written
  but before it is fsynced and renamed into place, touch $LAKEHOUSE_TEST_MARKER and hang (the test kills -9).
* LAKEHOUSE_TEST_PUT_BATCH=K: store K files per ``put_many`` batch (``layout.PUT_BATCH``) instead of 256.
* LAKEHOUSE_TEST_BARRIER=DIR:N: at the first silver file write, wait until N processes got there.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def _install_hooks() -> None:
    from lakehouse_assets.lake import layout, store
    from lakehouse_assets.lake.store import LocalStore

    hang_at = int(os.environ.get("LAKEHOUSE_TEST_HANG_AT_PUT") or 0)
    barrier = os.environ.get("LAKEHOUSE_TEST_BARRIER")
    if os.environ.get("LAKEHOUSE_TEST_PUT_BATCH"):
        layout.PUT_BATCH = int(os.environ["LAKEHOUSE_TEST_PUT_BATCH"])
    original_put_many = LocalStore.put_many
    original_fsync = store._fsync_or_error  # noqa: SLF001
    state = {"silver_puts": 0, "hang_key": ""}

    def put_many(self: LocalStore, items) -> None:
        silver = [key for key, _ in items if key.startswith("silver/klines/")]
        if barrier and silver and state["silver_puts"] == 0:
            directory, n = barrier.rsplit(":", 1)
            Path(directory, str(os.getpid())).touch()
            deadline = time.monotonic() + 60
            while len(list(Path(directory).iterdir())) < int(n) and time.monotonic() < deadline:
                time.sleep(0.05)
        if hang_at and state["silver_puts"] < hang_at <= state["silver_puts"] + len(silver):
            state["hang_key"] = silver[hang_at - state["silver_puts"] - 1]
        state["silver_puts"] += len(silver)
        return original_put_many(self, items)

    def fsync_or_error(handle):  # the hang: that file's temp is written, its fsync (and rename) never come
        if state["hang_key"] and Path(handle.name).name.startswith("." + state["hang_key"].rsplit("/", 1)[1] + "."):
            if Path(handle.name).parent.name == state["hang_key"].rsplit("/", 2)[1]:
                Path(os.environ["LAKEHOUSE_TEST_MARKER"]).write_text(state["hang_key"])
                time.sleep(600)
        return original_fsync(handle)

    LocalStore.put_many = put_many  # type: ignore[method-assign]
    store._fsync_or_error = fsync_or_error  # noqa: SLF001


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
