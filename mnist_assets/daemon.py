"""Dagster's daemon (`dagster-daemon run`) with the backfill loop every `MNIST_ASSETS_BACKFILL_INTERVAL`
seconds: what `make ui` starts (mnist_assets/ui.py says why). Run it alone as
`python -m mnist_assets.daemon run` where the daemon runs on a machine of its own."""

from mnist_assets.ml.core.environment import seconds_setting

DEFAULT_BACKFILL_INTERVAL = 5.0


def backfill_interval() -> float:
    try:
        return seconds_setting("MNIST_ASSETS_BACKFILL_INTERVAL", DEFAULT_BACKFILL_INTERVAL, maximum=3600)
    except ValueError as error:  # before any server starts: a one-line error, no traceback
        raise SystemExit(str(error)) from None


def main() -> None:
    import dagster._daemon.controller as controller
    from dagster._daemon.cli import main as daemon_main

    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = backfill_interval()  # read by the backfill loop on each pass
    daemon_main()


if __name__ == "__main__":
    main()
