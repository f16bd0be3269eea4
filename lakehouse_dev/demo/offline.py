"""``make dev-offline``: the Dagster UI on the demo lake, with no call leaving the machine.

``dagster dev`` with the settings of ``sample.offline_env``: the archive is the demo's local mirror
(``file://``), the REST gap-fill is off, the universe is the sample's instruments, and the lake is the
demo lake. The sensors and schedules still run (the archive sensor finds nothing new in the mirror).
Run ``make demo`` first: it builds the mirror and the lake.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lakehouse_dev import REPO
from lakehouse_dev.demo.sample import MIRROR, default_storage, offline_env, shell_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--print-env", action="store_true", help="print the settings and exit")
    args, dagster_args = parser.parse_known_args(argv)
    env = offline_env(default_storage())
    if args.print_env:
        print(shell_line(env))
        return 0
    if not MIRROR.is_dir():
        print(f"{MIRROR} does not exist: run `make demo` first (it builds the mirror and the demo lake).", file=sys.stderr)
        return 1
    print(f"Dagster UI on the demo lake, offline: {shell_line(env)} dagster dev -w workspace.yaml", flush=True)
    dagster = Path(sys.executable).parent / "dagster"
    os.chdir(REPO)
    os.execve(dagster, [str(dagster), "dev", "-w", "workspace.yaml", *dagster_args], {**os.environ, **env})


if __name__ == "__main__":
    raise SystemExit(main())
