"""Where the project keeps its state, resolved from the environment.

Everything the project writes goes under MNIST_ASSETS_HOME (images, tensors,
checkpoints, the embedded FiftyOne database) or DAGSTER_HOME, so both have
defaults inside the repository.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]  # where pyproject.toml is: relative dataset paths start here
# Set beside FiftyOne's FIFTYONE_PRIVATE_DATABASE_PORT: the database folder that port belongs to.
PORT_OWNER_VARIABLE = "MNIST_ASSETS_DATABASE_PORT_OWNER"


def assets_home() -> Path:
    """MNIST_ASSETS_HOME, default `<repo>/.mnist_assets`."""
    return Path(os.environ.get("MNIST_ASSETS_HOME") or REPO_ROOT / ".mnist_assets").resolve()


def store_name(dataset: str, namespace: str = "") -> str:
    """A declared dataset's FiftyOne name and data folder name: under the namespace when one is set."""
    return f"{namespace}-{dataset}" if namespace else dataset


def dataset_dir(dataset: str) -> Path:
    """`<MNIST_ASSETS_HOME>/datasets/<name>`: a dataset's checkpoints, arrays and release, as the
    environment says (MNIST_ASSETS_NAMESPACE included), without loading the settings."""
    return assets_home() / "datasets" / store_name(dataset, os.environ.get("MNIST_ASSETS_NAMESPACE") or "")


def seconds_setting(name: str, default: float, maximum: float | None = None, whole: bool = False) -> float:
    """A duration in seconds from environment variable `name` (unset or empty: `default`); anything
    but a positive number (a whole one if `whole`, at most `maximum`) is an error naming the fix."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = 0
    if not 0 < value <= (maximum or float("inf")):
        kind = "a positive whole number" if whole else "a positive number"
        bound = f", at most {maximum:g}" if maximum else ""
        raise ValueError(f"{name}={raw!r} must be {kind} of seconds{bound}; set it or unset it.")
    return value


def dagster_home() -> Path:
    """DAGSTER_HOME, default `<repo>/.dagster_home` (the Makefile exports the same)."""
    return Path(os.environ.get("DAGSTER_HOME") or REPO_ROOT / ".dagster_home")


def configure_fiftyone(fo) -> None:
    """Point FiftyOne at the project's database before the process first connects.

    Called by `fiftyone_store.connect()`, never at import: the embedded database lives in
    FIFTYONE_DATABASE_DIR if set, else `<MNIST_ASSETS_HOME>/fiftyone_db`. The choices go into the
    environment too, because FiftyOne's own child processes (the database service, the App server)
    read them there: that folder, no version validation (the embedded mongod 6.0 is older than
    FiftyOne prefers; it works) and no usage tracking. A database port inherited from a parent
    process pointed at another folder (a test, a benchmark) is dropped, so this process starts or
    finds its own folder's service.
    """
    if not fo.config.database_uri:
        fo.config.database_dir = os.environ.get("FIFTYONE_DATABASE_DIR") or str(assets_home() / "fiftyone_db")
        os.environ["FIFTYONE_DATABASE_DIR"] = fo.config.database_dir
    if os.environ.get(PORT_OWNER_VARIABLE) != fo.config.database_dir:
        os.environ.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)
    if "FIFTYONE_DATABASE_VALIDATION" not in os.environ:
        os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
        fo.config.database_validation = False
    if "FIFTYONE_DO_NOT_TRACK" not in os.environ:
        os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
        fo.config.do_not_track = True
