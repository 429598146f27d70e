"""Dagster's daemon (`dagster-daemon run`) with the backfill loop every `MNIST_ASSETS_BACKFILL_INTERVAL`
seconds: what `make ui` starts (mnist_assets/ui.py says why). Run it alone as
`python -m mnist_assets.daemon run` where the daemon runs on a machine of its own."""

import os

DEFAULT_BACKFILL_INTERVAL = 5.0


def backfill_interval() -> float:
    raw = os.environ.get("MNIST_ASSETS_BACKFILL_INTERVAL", "").strip()
    if not raw:
        return DEFAULT_BACKFILL_INTERVAL
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 3600:
        raise SystemExit(f"MNIST_ASSETS_BACKFILL_INTERVAL={raw!r} must be a number of seconds between 0 and 3600; set it or unset it.")
    return seconds


def main() -> None:
    import dagster._daemon.controller as controller
    from dagster._daemon.cli import main as daemon_main

    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = backfill_interval()  # read by the backfill loop on each pass
    daemon_main()


if __name__ == "__main__":
    main()
