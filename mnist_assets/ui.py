"""`make ui`: `dagster dev` (the webserver and the daemon) with the daemon's backfill loop every
`MNIST_ASSETS_BACKFILL_INTERVAL` seconds (default 5) instead of Dagster's fixed 30.

A backfill ("Materialize all") launches the graph's next level only on a pass of that loop, and the
graph alternates per-split and whole-dataset assets, so at 30 s a backfill of one dataset waited
minutes between finished runs and the next. Dagster 1.13.27 has no setting for it: `dagster dev`
here starts its daemon subprocess as `mnist_assets.daemon`, which sets the interval and then runs
Dagster's own daemon command. Both hooks are Dagster's private API (`dagster._cli.dev`,
`dagster._daemon.controller`): the dagster pin in pyproject.toml is load-bearing.
"""

import sys


def main() -> None:
    from dagster._cli import dev as dagster_dev
    from dagster._cli import main as dagster_main

    from mnist_assets.daemon import backfill_interval

    backfill_interval()  # a bad value fails here, before any server starts
    open_subprocess = dagster_dev.open_ipc_subprocess

    def open_daemon_as_ours(args, **kwargs):
        if list(args[1:3]) == ["-m", "dagster._daemon"]:
            args = [args[0], "-m", "mnist_assets.daemon", *args[3:]]
        return open_subprocess(args, **kwargs)

    dagster_dev.open_ipc_subprocess = open_daemon_as_ours
    sys.argv = ["dagster", "dev", *sys.argv[1:]]
    dagster_main()


if __name__ == "__main__":
    main()
