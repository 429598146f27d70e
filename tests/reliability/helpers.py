"""Snapshots of what is stored, to prove a failure changed nothing."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from processes import REPO  # noqa: F401 - re-exported for the tests here

from mnist_assets.ml.store.fiftyone_store import split_view


def split_snapshot(settings, split: str) -> tuple:
    """Sample ids, files, labels and a hash of every image's bytes."""
    view = split_view(settings.store("mnist").dataset(), split)
    ids, paths, labels = view.values(["id", "filepath", "ground_truth.label"])
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return tuple(ids), tuple(paths), tuple(labels), digest.hexdigest()


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The messages of the failed step's error and its causes, outermost first."""
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error, messages = event.event_specific_data.error, []
            while error is not None:
                messages.append(error.message.strip())
                error = error.cause
            return "\n".join(messages)
    raise AssertionError("the run did not fail")


def subprocess_env(settings, **extra) -> dict:
    """Environment for a CLI run against the same folders and database as `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_ASSETS_")}
    env.update(
        MNIST_ASSETS_HOME=settings.home,
        MNIST_ASSETS_NAMESPACE=settings.namespace,
        MNIST_ASSETS_CLIP_MODEL="mnist-tiny",
        MNIST_ASSETS_CLIP_PRETRAINED="none",
        MNIST_ASSETS_DEVICE="cpu",
    )
    if settings.limit:
        env["MNIST_ASSETS_LIMIT"] = str(settings.limit)
    if settings.source_dir:
        env["MNIST_ASSETS_SOURCE_DIR"] = settings.source_dir
    env.update({k: str(v) for k, v in extra.items()})
    return env


def dagster_cli(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m", "mnist_assets.definitions", *args]


def run_cli(env: dict, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(dagster_cli(*args), env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
