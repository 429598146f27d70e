"""Scale-out by settings alone: FiftyOne on an external MongoDB through FIFTYONE_DATABASE_URI, and
Dagster's run, event and schedule storage on PostgreSQL through deploy/dagster-postgres.yaml."""

import sys
from pathlib import Path

import pymongo
import pytest
from processes import REPO, mongod_server, postgres_database, run_ok


@pytest.fixture
def external_mongodb(tmp_path):
    """A second MongoDB server, started from the mongod that make setup installed."""
    with mongod_server(tmp_path) as uri:
        yield uri


@pytest.fixture
def postgres_server():
    with postgres_database() as variables:
        yield variables


def materialize_raw_dataset_test(tmp_path, dagster_yaml: str, **variables):
    """`dagster asset materialize mnist/raw_dataset --partition test` in a fresh environment, as a user would run it."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FIFTYONE_DATABASE_VALIDATION": "false",
        "FIFTYONE_DATABASE_DIR": str(tmp_path / "fiftyone_db"),
        "MNIST_ASSETS_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "MNIST_ASSETS_LIMIT": "100",
        "MNIST_ASSETS_NAMESPACE": "scale-out",
        **variables,
    }
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text(dagster_yaml)
    result = run_ok(
        [
            str(Path(sys.executable).with_name("dagster")),
            "asset",
            "materialize",
            "-m",
            "mnist_assets.definitions",
            "--select",
            "mnist/raw_dataset",
            "--partition",
            "test",
        ],
        env=env,
        timeout=300,
    )
    return result


def test_raw_dataset_lands_in_an_external_mongodb(external_mongodb, tmp_path):
    materialize_raw_dataset_test(tmp_path, "telemetry:\n  enabled: false\n", FIFTYONE_DATABASE_URI=external_mongodb)
    database = pymongo.MongoClient(external_mongodb)["fiftyone"]
    dataset = database["datasets"].find_one({"name": "scale-out-mnist"})
    assert dataset is not None
    samples = database[dataset["sample_collection_name"]]
    assert samples.count_documents({"split": "test"}) == 100
    assert not (tmp_path / "fiftyone_db").exists()  # no embedded database was started


def test_dagster_storage_on_postgres(postgres_server, tmp_path):
    import psycopg2

    shipped_config = (REPO / "deploy" / "dagster-postgres.yaml").read_text()
    materialize_raw_dataset_test(tmp_path, shipped_config, **postgres_server)

    connection = psycopg2.connect(
        host="127.0.0.1",
        port=postgres_server["DAGSTER_PG_PORT"],
        user="dagster",
        password=postgres_server["DAGSTER_PG_PASSWORD"],
        dbname="dagster",
    )
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM runs")
        assert [row[0] for row in cursor.fetchall()] == ["SUCCESS"]
        cursor.execute(
            "SELECT partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s",
            ['["mnist", "raw_dataset"]'],
        )
        assert [row[0] for row in cursor.fetchall()] == ["test"]
    connection.close()
    # Nothing went to the SQLite files that the default instance would have created.
    assert not (tmp_path / "dagster_home" / "storage" / "runs.db").exists()
    assert not (tmp_path / "dagster_home" / "history").exists()


def test_the_bench_follow_up_reads_the_database_its_end_to_end_run_wrote(external_mongodb, tmp_path):
    """`make bench` with FIFTYONE_DATABASE_URI set: its end-to-end run drops the URI for fresh folders,
    so the follow-up steps (benchmarks/run_all.use_e2e_database) must open that run's embedded
    database, not an empty dataset on the external one."""
    home = tmp_path / "home"
    materialize_raw_dataset_test(tmp_path, "telemetry:\n  enabled: false\n", FIFTYONE_DATABASE_DIR=str(home / "fiftyone_db"))
    script = (
        "import sys; from pathlib import Path; sys.path.insert(0, 'benchmarks')\n"
        "from run_all import use_e2e_database; use_e2e_database(Path(sys.argv[1]))\n"
        "from mnist_assets.ml.store.fiftyone_store import split_view\n"
        "from mnist_assets.resources import Settings\n"
        "print('test samples:', len(split_view(Settings.from_env().store('mnist').dataset(), 'test')))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FIFTYONE_DATABASE_URI": external_mongodb,
        "MNIST_ASSETS_HOME": str(tmp_path / "elsewhere"),
        "MNIST_ASSETS_NAMESPACE": "scale-out",
    }
    result = run_ok([sys.executable, "-c", script, str(home)], env=env, timeout=300)
    assert "test samples: 100" in result.stdout, result.stdout
    assert pymongo.MongoClient(external_mongodb)["fiftyone"]["datasets"].find_one({"name": "scale-out-mnist"}) is None
