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
