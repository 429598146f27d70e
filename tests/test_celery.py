"""The graph's steps on two Celery workers, as on two machines: Redis as broker, PostgreSQL for
Dagster's runs and events (deploy/dagster-celery.yaml, the shipped file), one shared MongoDB, one
shared data folder, and a temporary folder (where a file lock would live) of each worker's own.

On limited data (100 samples per split, one epoch): "Materialize all" as a backfill through the daemon (the
three partitions of each per-split stage at once, on both workers); then the faults: a worker
killed during a step, and a run with no worker left.
"""

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from processes import (
    REPO,
    celery_worker,
    launch_materialize_all,
    make_server,
    mongod_server,
    postgres_database,
    redis_server,
    run_ok,
    set_sensor,
    wait_for_backfill,
)

from mnist_assets.definitions import defs

LIMIT = 100
SPLITS = ("train", "validation", "test")
WORKERS = ("w1", "w2")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("celery")
    with postgres_database() as pg, mongod_server(root / "mongo") as mongo, redis_server(root / "redis") as broker:
        home = root / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster-celery.yaml").read_text())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MNIST_ASSETS_", "FIFTYONE_DATABASE", "DAGSTER_"))}
        env.update(
            DAGSTER_HOME=str(home),
            DAGSTER_DISABLE_TELEMETRY="1",
            **pg,
            DAGSTER_CELERY_BROKER_URL=f"{broker}/0",
            DAGSTER_CELERY_BACKEND_URL=f"{broker}/1",
            MNIST_ASSETS_EXECUTOR="celery",
            MNIST_ASSETS_CELERY_WAIT_SECONDS="20",
            FIFTYONE_DATABASE_URI=mongo,
            MNIST_ASSETS_HOME=str(root / "shared-data"),
            MNIST_ASSETS_NAMESPACE="celery",
            MNIST_ASSETS_LIMIT=str(LIMIT),
            MNIST_ASSETS_EPOCHS="1",  # what is tested is where steps run, not how well 100 images train
            MNIST_ASSETS_CLIP_MODEL="mnist-tiny",
            MNIST_ASSETS_CLIP_PRETRAINED="none",
            MNIST_ASSETS_DEVICE="cpu",
            MNIST_ASSETS_THREADS="1",
        )
        # The one-time set-up of docs/scale-out.md: one heavy step per worker at a time.
        run_ok(
            [str(Path(sys.executable).with_name("dagster")), "instance", "concurrency", "set", "heavy", str(len(WORKERS))],
            env=env,
            timeout=120,
        )
        with contextlib.ExitStack() as running:
            workers = {}
            for name in WORKERS:  # each its own temporary folder: no file lock could be shared
                machine = root / f"machine-{name}"
                machine.mkdir()
                workers[name] = running.enter_context(celery_worker(name, {**env, "TMPDIR": str(machine)}, root / f"{name}.log"))
            yield env, root, workers


def materialize(env, selection: str, partition: str | None = None, config: dict | None = None, timeout: int = 600):
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "asset",
        "materialize",
        "-m",
        "mnist_assets.definitions",
        "--select",
        selection,
    ]
    command += ["--partition", partition] if partition else []
    command += ["--config-json", json.dumps(config)] if config else []
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(processes, timeout: int = 600) -> list[str]:
    outputs = []
    for process in processes:
        output, _ = process.communicate(timeout=timeout)
        assert process.returncode == 0, output[-4000:]
        outputs.append(output)
    return outputs


def instance(env) -> dg.DagsterInstance:
    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_PG_")})
    return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])


def workers_of_steps(env, run_id: str | None = None) -> dict[str, set[str]]:
    """Step key -> the Celery workers that ran it, from the event log in PostgreSQL (of every run, or one)."""
    found: dict[str, set[str]] = {}
    with instance(env) as dagster:
        for run in [dagster.get_run_by_id(run_id)] if run_id else dagster.get_runs():
            for entry in dagster.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
                if "in celery worker" in (entry.message or ""):
                    metadata = entry.dagster_event.engine_event_data.metadata
                    found.setdefault(entry.step_key, set()).add(metadata["Celery worker"].value)
    return found


def check_evaluations(env) -> list[tuple[str, bool, dict]]:
    """("<asset>:<check>", passed, the run's id and tags) of every check evaluation of every run."""
    found = []
    with instance(env) as dagster:
        for run in dagster.get_runs():
            for entry in dagster.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
                evaluation = entry.dagster_event.event_specific_data
                run_tags = {"run_id": run.run_id, **run.tags}  # the partition, and the backfill or sensor that launched it
                found.append((f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}", evaluation.passed, run_tags))
    return found


def materialized(env, name: str) -> set:
    with instance(env) as dagster:
        key = dg.AssetKey(["mnist", name])
        records = dagster.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=100).records
        return {record.partition_key for record in records}


def test_materialize_all_through_the_daemon_on_both_workers(cluster):
    """The UI's "Materialize all" on mnist: one backfill, its runs queued (the three partitions of
    each per-split stage at once) and their steps on both Celery workers."""
    env, root, _ = cluster
    with make_server("ui", "PORT", env, "/server_info", root / "ui.log") as port:
        # Lineage automation evaluates every condition every 5 s (about a third of a core); a
        # backfill's runs are the daemon's backfill loop's, and its interplay with automation is
        # test_automation.py's and test_servers.py's.
        set_sensor(port, "lineage_automation", running=False)
        backfill_id, keys = launch_materialize_all(port, "mnist")
        status = wait_for_backfill(port, backfill_id, timeout=1200)
        assert status == "COMPLETED_SUCCESS", status
    with instance(env) as dagster:
        records = dagster.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert records and all(record.dagster_run.status == dg.DagsterRunStatus.SUCCESS for record in records)
    # Partitions ran at once: the runs of two splits were in progress together.
    spans = [(record.start_time, record.end_time, record.dagster_run.tags.get("dagster/partition")) for record in records]
    assert any(
        None not in (a[2], b[2]) and a[2] != b[2] and max(a[0], b[0]) < min(a[1], b[1]) for a, b in itertools.combinations(spans, 2)
    ), spans
    for name in ("model_comparison", "finetuned_model", "augmented_set"):
        assert None in materialized(env, name)
    assert materialized(env, "finetuned_predictions") == set(SPLITS)
    stepped = workers_of_steps(env)
    assert "mnist__finetuned_model" in stepped and "mnist__model_comparison" in stepped
    assert {worker.split("@")[0] for workers in stepped.values() for worker in workers} == set(WORKERS), stepped
    for name in ("raw_dataset", "label_review", "dataset_metadata", "clip_embeddings", "lenet_predictions", "hardness_scores"):
        assert materialized(env, name) == set(SPLITS), name
    evaluations = check_evaluations(env)
    # data_issues' checks warn about what real digits hold (tests/test_graph.py); every other one passes
    assert all(passed for name, passed, _ in evaluations if "/data_issues:" not in name), evaluations
    # The backfill evaluated every check of every asset it selected once per partition: none skipped, none twice.
    graph = defs.resolve_asset_graph()
    nodes = [graph.get(dg.AssetKey(key)) for key in keys]
    expected = sum(len(node.check_keys) * (len(SPLITS) if node.partitions_def else 1) for node in nodes)
    backfilled = sorted(name for name, _, tags in evaluations if tags.get("dagster/backfill") == backfill_id)
    assert len(backfilled) == expected, backfilled
    # The backfill scores each split once.
    hardness = [run_tags for name, _, run_tags in evaluations if name == "mnist/hardness_scores:scores_complete"]
    by_backfill = [tags["dagster/partition"] for tags in hardness if tags.get("dagster/backfill") == backfill_id]
    assert sorted(by_backfill) == sorted(SPLITS), hardness
    # The shared MongoDB holds the samples every worker wrote, with the views of all three splits.
    import pymongo

    database = pymongo.MongoClient(env["FIFTYONE_DATABASE_URI"])["fiftyone"]
    document = database["datasets"].find_one({"name": "celery-mnist"})
    assert database[document["sample_collection_name"]].count_documents({}) == 3 * LIMIT
    views = {view["name"] for view in database["views"].find({"_dataset_id": document["_id"]})}
    assert {f"{view}-{split}" for view in ("likely-mislabeled", "review-queue") for split in SPLITS} <= views


def test_a_killed_worker_fails_its_step_by_name_and_the_rerun_completes(cluster):
    env, root, workers = cluster
    checkpoint = Path(env["MNIST_ASSETS_HOME"]) / "datasets" / "celery-mnist" / "checkpoints" / "lenet_checkpoint.pt"
    before = checkpoint.read_bytes()
    long_training = {"ops": {"mnist__lenet_checkpoint": {"config": {"epochs": 100000}}}}
    run = materialize(env, "mnist/lenet_checkpoint", config=long_training)
    deadline, victim = time.time() + 180, None
    while victim is None and time.time() < deadline:
        for name in WORKERS:
            if "epoch 3/100000" in (root / f"{name}.log").read_text():
                victim = name
        time.sleep(0.5)
    assert victim, "the long training never started"
    os.killpg(workers[victim].pid, signal.SIGKILL)  # the worker, its pool process, everything
    output, _ = run.communicate(timeout=300)
    assert run.returncode != 0
    assert f"Celery worker {victim}@" in output and "while it ran step 'mnist__lenet_checkpoint'" in output
    # Nothing half-written: the previous checkpoint whole, no temporary file beside it.
    assert checkpoint.read_bytes() == before
    assert [p.name for p in checkpoint.parent.iterdir() if p.name.startswith(".")] == []
    # The same run again completes on the remaining worker (the killed one's lease on any lock ends by itself).
    survivor = next(name for name in WORKERS if name != victim)
    output = finish([materialize(env, "mnist/lenet_checkpoint")])[0]
    run_id = re.search(r"([0-9a-f-]{36}) - \d+ - RUN_START", output).group(1)
    assert {worker.split("@")[0] for worker in workers_of_steps(env, run_id)["mnist__lenet_checkpoint"]} == {survivor}
    from graph import saved_payload

    assert saved_payload(checkpoint)["epoch"] >= 1


def test_a_run_with_no_worker_gives_up_with_the_fix(cluster):
    env, _, workers = cluster
    for process in workers.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    started = time.time()
    run = materialize(env, "mnist/raw_dataset", "test")
    output, _ = run.communicate(timeout=300)
    assert run.returncode != 0 and time.time() - started < 120
    assert "no Celery worker answered" in output and "make worker" in output
