"""Helpers for tests that start real processes: free ports, servers started with make, mongod."""

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil

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


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it if it has not gone in 20 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def make_server(target: str, port_variable: str, env: dict, ready_path: str, log_path: Path):
    """`make <target> <port_variable>=<free port>` running until the block ends; yields the port."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen(["make", target, f"{port_variable}={port}"], cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_http(f"http://127.0.0.1:{port}{ready_path}", 240, process)
            yield port
        finally:
            stop(process)


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


def installed_with_apt(executable: str, package: str, search: str = "") -> str | None:
    """Path of `executable` (on PATH or matching the `search` glob), apt-installing `package` when missing.

    The tests run as root in CI, so they can install what they need; elsewhere this returns None.
    """
    def find():
        matches = sorted(glob.glob(search)) if search else []
        return shutil.which(executable) or (matches[-1] if matches else None)

    if find() is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], capture_output=True, timeout=900,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return find()


def quick_run_env(root: Path, namespace: str) -> dict:
    """Environment for servers and runs on 200 samples per split, 1 epoch and the tiny CLIP, with a
    Dagster home, data folder and database of their own under `root`."""
    import os

    dagster_home = root / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MNIST_ASSETS_", "FIFTYONE_DATABASE"))}
    env.update(
        DAGSTER_HOME=str(dagster_home), MNIST_ASSETS_HOME=str(root / "data"), FIFTYONE_DATABASE_DIR=str(root / "db"),
        MNIST_ASSETS_LIMIT="200", MNIST_ASSETS_EPOCHS="1", MNIST_ASSETS_NAMESPACE=namespace,
        MNIST_ASSETS_CLIP_MODEL="mnist-tiny", MNIST_ASSETS_CLIP_PRETRAINED="none", MNIST_ASSETS_DEVICE="cpu",
    )
    return env


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    """The data of a query to the Dagster UI's GraphQL API; fails the test on errors."""
    import json

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body.get("errors")
    return body["data"]


def runs_in_flight(port: int) -> int:
    data = graphql(port, '{ runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED]}) { ... on Runs { results { runId } } } }')
    return len(data["runsOrError"]["results"])


def wait_until_quiet(port: int, seconds: float = 45, timeout: float = 900) -> None:
    """Until no run has been queued or running for `seconds` (automation may still be finishing
    what the backfill started)."""
    deadline, quiet_since = time.time() + timeout, None
    while time.time() < deadline:
        quiet_since = (quiet_since or time.time()) if runs_in_flight(port) == 0 else None
        if quiet_since and time.time() - quiet_since > seconds:
            return
        time.sleep(5)
    raise AssertionError(f"runs kept going for {timeout:.0f} s")
