"""Refresh latency, measured against `make run` of the whole graph on the same limited data in the
same bench run, on the default executor and on Celery:

- `refresh_over_make_run`: from launching a re-ingest of `mnist/raw_dataset[train]` whose content
  changed (one more training sample) until what follows it has re-materialized through
  `lineage_automation` under the daemon (`make ui`) and no run is left: train's per-split assets
  and the training assets, which keep their models under the retrain policy (1 new sample of 600),
  so validation's and test's partitions do not re-run (`refresh_other_splits` lists any that did);
- `backfill_over_make_run`: the UI's "Materialize all" of mnist (one backfill) through the daemon,
  in fresh folders.

    .venv/bin/python benchmarks/bench_refresh.py [--executors multiprocess celery] [--limit 300]

The services come up as in the tests (tests/processes.py): `make ui` on a free port, Redis and two
`make worker` workers for Celery.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from processes import (  # noqa: E402
    celery_worker,
    graphql,
    launch_materialize_all,
    make_server,
    quick_run_env,
    redis_server,
    runs_in_flight,
    wait_for_backfill,
    wait_until_quiet,
)

SPLITS = ("train", "validation", "test")
TRAINED = ("lenet_checkpoint", "lenet_oof_predictions", "cnn_checkpoint", "finetuned_model")  # run, and keep their models
TIMEOUT = 3600


def environment(root: Path, limit: int) -> dict:
    env = quick_run_env(root, "bench")
    env.update(MNIST_ASSETS_LIMIT=str(limit), DATASETS="mnist")
    return env


@contextlib.contextmanager
def executor_services(kind: str, env: dict, root: Path):
    """What the executor needs beside `make ui`: nothing, or Redis and two Celery workers."""
    if kind != "celery":
        yield {**env, "MNIST_ASSETS_EXECUTOR": kind}
        return
    with redis_server(root / "redis") as broker, contextlib.ExitStack() as workers:
        env = {
            **env,
            "MNIST_ASSETS_EXECUTOR": "celery",
            "DAGSTER_CELERY_BROKER_URL": f"{broker}/0",
            "DAGSTER_CELERY_BACKEND_URL": f"{broker}/1",
        }
        for name in ("w1", "w2"):
            workers.enter_context(celery_worker(name, env, root / f"{name}.log"))
        yield env


def make_run(env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mnist_assets.run_all", "--datasets", "mnist"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"make run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def materializations(port: int) -> list[tuple[str, str | None, float]]:
    data = graphql(port, "{ assetNodes { assetKey { path } assetMaterializations(limit: 1000) { partition timestamp } } }")
    return [
        ("/".join(node["assetKey"]["path"]), event["partition"], int(event["timestamp"]) / 1000)
        for node in data["assetNodes"]
        for event in node["assetMaterializations"]
    ]


def wait_for(port: int, expected: set, since: float, quiet: float = 30) -> tuple[float, dict]:
    """Until every expected (asset, partition) has materialized after `since` and no run is in flight
    for `quiet` seconds; returns the time of the last materialization since, and every one since."""
    deadline, quiet_since = time.time() + TIMEOUT, None
    while time.time() < deadline:
        new = {(name, partition): stamp for name, partition, stamp in materializations(port) if stamp >= since}
        done = expected <= set(new) and runs_in_flight(port) == 0
        quiet_since = (quiet_since or time.time()) if done else None
        if quiet_since and time.time() - quiet_since > quiet:
            return max(new.values()), new
        time.sleep(2)
    raise TimeoutError(f"not materialized within {TIMEOUT} s: {sorted(expected - set(new))}")


def launch_raw_train(port: int) -> float:
    repository = graphql(port, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")
    repository = repository["repositoriesOrError"]["nodes"][0]
    started = time.time()
    launched = graphql(
        port,
        """
      mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
        {
            "params": {
                "selector": {
                    "repositoryLocationName": repository["location"]["name"],
                    "repositoryName": repository["name"],
                    "jobName": "mnist_raw_job",
                },
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "train"}]},
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return started


def refresh_expected(port: int) -> set:
    """What one more train sample re-runs under the default retrain policy (models kept: 1 new sample
    of 600): every per-split asset of train and the training assets, which keep their models."""
    nodes = graphql(port, "{ assetNodes { assetKey { path } partitionKeys } }")["assetNodes"]
    mnist = {"/".join(n["assetKey"]["path"]): n["partitionKeys"] for n in nodes if n["assetKey"]["path"][0] == "mnist"}
    expected = {(name, "train") for name, partitions in mnist.items() if partitions}
    return expected | {(f"mnist/{name}", None) for name in TRAINED}


def refresh(kind: str, root: Path, limit: int) -> dict:
    """`make run` on `limit` samples, then the UI with one more training sample: the re-ingest of
    train changes its content, and automation refreshes everything below it."""
    env = environment(root, limit)
    baseline = make_run(env)  # in process, whichever the executor: `make run` needs no worker
    # Celery workers read the settings themselves: they start with the changed limit, as the UI does.
    bigger = {**env, "MNIST_ASSETS_LIMIT": str(limit + 1)}
    with executor_services(kind, bigger, root) as bigger:
        with make_server("ui", "PORT", bigger, "/server_info", root / "ui.log") as port:
            wait_until_quiet(port, seconds=20, timeout=TIMEOUT, poll=2)
            started = launch_raw_train(port)
            finished, refreshed = wait_for(port, refresh_expected(port), started)
    return {
        "make_run_seconds": round(baseline, 1),
        "refresh_seconds": round(finished - started, 1),
        "refresh_over_make_run": round((finished - started) / baseline, 2),
        "refresh_materializations": len(refreshed),
        "refresh_other_splits": sorted(f"{name}[{partition}]" for name, partition in refreshed if partition in ("validation", "test")),
    }


def backfill(kind: str, root: Path, limit: int, baseline: float) -> dict:
    """The UI's "Materialize all" of mnist in fresh folders, through the daemon."""
    env = environment(root, limit)
    with executor_services(kind, env, root) as env:
        with make_server("ui", "PORT", env, "/server_info", root / "ui.log") as port:
            started = time.time()
            backfill_id, _ = launch_materialize_all(port, "mnist")
            status = wait_for_backfill(port, backfill_id, TIMEOUT, poll=2)
            finished = time.time()
            assert status == "COMPLETED_SUCCESS", status
            runs = graphql(
                port,
                '{ runsOrError(filter: {tags: [{key: "dagster/backfill", value: "%s"}]}) { ... on Runs { count } } }' % backfill_id,
            )["runsOrError"]["count"]
    return {
        "backfill_seconds": round(finished - started, 1),
        "backfill_runs": runs,
        "backfill_over_make_run": round((finished - started) / baseline, 2),
    }


def run(work: Path, executors=("multiprocess", "celery"), limit: int = 300, with_backfill: bool = True) -> dict:
    results = {"refresh_limit_per_split": limit}
    for kind in executors:
        suffix = "" if kind == "multiprocess" else f"_{kind}"
        print(f"== refresh and backfill, {kind} executor", flush=True)
        measured = refresh(kind, Path(tempfile.mkdtemp(dir=work, prefix=f"refresh-{kind}-")), limit)
        if with_backfill:
            root = Path(tempfile.mkdtemp(dir=work, prefix=f"backfill-{kind}-"))
            measured.update(backfill(kind, root, limit, measured["make_run_seconds"]))
        print(json.dumps(measured), flush=True)
        results.update({f"{key}{suffix}": value for key, value in measured.items()})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executors", nargs="+", default=["multiprocess", "celery"])
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--work", default=None, help="folder for the runs' data (default: a temporary one)")
    parser.add_argument("--no-backfill", action="store_true", help="measure the refresh only")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_refresh_"))
    work.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run(work, args.executors, args.limit, with_backfill=not args.no_backfill), indent=2))


if __name__ == "__main__":
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    main()
