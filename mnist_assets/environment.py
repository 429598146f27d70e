"""Where the project keeps its state, resolved from the environment.

Everything the project writes goes under MNIST_ASSETS_HOME (images, tensors,
checkpoints, the embedded FiftyOne database) or DAGSTER_HOME, so both have
defaults inside the repository.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Set beside FiftyOne's FIFTYONE_PRIVATE_DATABASE_PORT: the database folder that port belongs to.
PORT_OWNER_VARIABLE = "MNIST_ASSETS_DATABASE_PORT_OWNER"


def assets_home() -> Path:
    """MNIST_ASSETS_HOME, default `<repo>/.mnist_assets`."""
    return Path(os.environ.get("MNIST_ASSETS_HOME") or REPO_ROOT / ".mnist_assets").resolve()


def configure_process_environment() -> None:
    """Point FiftyOne and Dagster at the project's folders unless the user chose others."""
    if not os.environ.get("FIFTYONE_DATABASE_URI") and not os.environ.get("FIFTYONE_DATABASE_DIR"):
        os.environ["FIFTYONE_DATABASE_DIR"] = str(assets_home() / "fiftyone_db")
    # FiftyOne hands its database port to child processes in this variable. A child
    # pointed at another database folder (a test, a benchmark) must not inherit it.
    if os.environ.get(PORT_OWNER_VARIABLE) != os.environ.get("FIFTYONE_DATABASE_DIR"):
        os.environ.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)
    # The embedded mongod (6.0) is older than FiftyOne's preferred version; it works.
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home"))
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
