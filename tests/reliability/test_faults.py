"""Faults survived: a killed training run, concurrent splits, a stopped database, repeated runs."""

import json
import os
import signal
import subprocess
import time

import dagster as dg
import numpy as np
import torch
from graph import asset, op_config, saved_payload
from processes import mongod_processes, run_ok

from mnist_assets.ml.store.fiftyone_store import split_view

from .helpers import REPO, dagster_cli, file_hash, run_cli, subprocess_env


def test_killed_training_leaves_the_previous_checkpoint_intact(make_settings):
    settings = make_settings(limit=2000)
    resources = {"settings": settings}
    for split in ("train", "validation"):
        assert dg.materialize([asset("raw_dataset")], partition_key=split, resources=resources).success
    epochs_1 = op_config("lenet_checkpoint", {"epochs": 1})
    assert dg.materialize([asset("lenet_checkpoint")], resources=resources, run_config=epochs_1).success
    path = settings.store("mnist").artifact_path("checkpoints", "lenet_checkpoint.pt")
    before = file_hash(path)

    # A long training run in its own process group, SIGKILLed in the middle of its epochs.
    config = json.dumps(op_config("lenet_checkpoint", {"epochs": 500}))
    process = subprocess.Popen(
        dagster_cli("--select", "mnist/lenet_checkpoint", "--config-json", config),
        env=subprocess_env(settings),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 180
    for line in process.stdout:
        if "epoch 2/500" in line or time.time() > deadline:
            break
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    assert file_hash(path) == before  # the old checkpoint, whole
    assert saved_payload(path)["settings"]["epochs"] == 1
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith(".")] == ["lenet_checkpoint.pt"]
    # The next run starts cleanly.
    assert dg.materialize([asset("lenet_checkpoint")], resources=resources, run_config=epochs_1).success
    assert saved_payload(path)["epoch"] == 1


SPLITS = ("train", "validation", "test")


def materialize_splits_at_once(env: dict, selection: str) -> None:
    """`selection` for the three splits in three processes started together, as a backfill runs them."""
    processes = [
        subprocess.Popen(
            dagster_cli("--select", selection, "--partition", split),
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for split in SPLITS
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]


def test_stopped_database_is_restarted_and_finds_everything(make_settings, tmp_path):
    settings = make_settings(limit=300)
    db_dir = str(tmp_path / "own_db")  # a database of its own, which this test may stop
    # In process: the database is what is tested here (the concurrency test keeps the default executor).
    env = subprocess_env(settings, FIFTYONE_DATABASE_DIR=db_dir, MNIST_ASSETS_EXECUTOR="in_process")
    first = run_cli(env, "--select", "mnist/raw_dataset", "--partition", "test")
    assert first.returncode == 0, first.stderr[-2000:]
    for process in mongod_processes(db_dir):
        process.terminate()
        process.wait(30)
    assert not mongod_processes(db_dir)
    second = run_cli(env, "--select", "mnist/dataset_metadata", "--partition", "test")
    assert second.returncode == 0, second.stderr[-2000:]
    name = settings.store("mnist").name
    count = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "python"),
            "-c",
            f"import mnist_assets\nfrom mnist_assets.ml.store.fiftyone_store import get_dataset\nprint(len(get_dataset('{name}')))",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert count.stdout.strip().splitlines()[-1:] == ["300"], count.stderr[-2000:]
    for process in mongod_processes(db_dir):
        process.terminate()


def test_same_seed_gives_same_weights_and_predictions(make_settings):
    checkpoints, predictions = [], []
    for _ in range(2):
        settings = make_settings(limit=500, epochs=1)
        resources = {"settings": settings}
        for split in ("train", "validation", "test"):
            assert dg.materialize([asset("raw_dataset")], partition_key=split, resources=resources).success
        assert dg.materialize([asset("lenet_checkpoint")], resources=resources).success
        assert dg.materialize([asset("lenet_predictions")], partition_key="test", resources=resources).success
        checkpoints.append(saved_payload(settings.store("mnist").artifact_path("checkpoints", "lenet_checkpoint.pt"))["model"])
        predictions.append(np.array(split_view(settings.store("mnist").dataset(), "test").values("lenet_predictions.logits")))
    assert all(torch.equal(checkpoints[0][k], checkpoints[1][k]) for k in checkpoints[0])
    assert np.array_equal(predictions[0], predictions[1])


def test_database_folders_stay_isolated(make_settings, tmp_path):
    """A process pointed at another database folder gets its own database, never this one's."""
    import fiftyone as fo

    here = make_settings()
    here.store("mnist").dataset()  # this process's database is up, and FiftyOne exported its port
    code = (
        "import mnist_assets, fiftyone as fo\n"
        "from mnist_assets.ml.store.fiftyone_store import get_dataset\n"
        "get_dataset('isolated-elsewhere')\n"
        "print(sorted(fo.list_datasets()))\n"
    )
    env = {**os.environ, "FIFTYONE_DATABASE_DIR": str(tmp_path / "elsewhere_db")}
    result = run_ok([str(REPO / ".venv" / "bin" / "python"), "-c", code], env=env, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "['isolated-elsewhere']"
    assert "isolated-elsewhere" not in fo.list_datasets() and here.store("mnist").name in fo.list_datasets()
    for process in mongod_processes(str(tmp_path / "elsewhere_db")):
        process.terminate()


def test_every_per_split_asset_concurrently_in_separate_processes(make_settings):
    """Each per-split asset with its three partitions running at once (what "Materialize all" does):
    the three ingests land every sample once, each step's fields and views on every split."""
    settings = make_settings(limit=300, epochs=1)
    env = subprocess_env(settings, MNIST_ASSETS_EPOCHS=1)
    materialize_splits_at_once(
        env,
        "mnist/raw_dataset,mnist/label_review,mnist/dataset_metadata,mnist/clip_embeddings,mnist/umap_projection,mnist/zero_shot_predictions",
    )
    assert dg.materialize([asset("lenet_checkpoint"), asset("lenet_oof_predictions")], resources={"settings": settings}).success
    materialize_splits_at_once(
        env, "mnist/lenet_predictions,mnist/fold_ensemble_predictions,mnist/lenet_embeddings,mnist/hardness_scores,mnist/data_issues"
    )
    dataset = settings.store("mnist").dataset()
    dataset.reload()
    assert len(dataset) == 900 and len(set(dataset.values("filepath"))) == 900
    for split in SPLITS:
        view = split_view(dataset, split)
        assert len(view) == 300
        for field in (
            "clip_embeddings",
            "clip_zero_shot",
            "lenet_predictions",
            "fold_ensemble_predictions",
            "lenet_embeddings",
            "hardness",
            "mistakenness",
            "uniqueness",
            "label_quality",
            "issue_outlier",
            "data_issues",
        ):
            assert all(value is not None for value in view.values(field)), f"{field} missing on {split}"
        assert {f"clip_umap_{split}", f"lenet_umap_{split}"} <= set(dataset.list_brain_runs())
        assert {f"eval_clip_{split}", f"eval_lenet_{split}", f"eval_fold_ensemble_{split}"} <= set(dataset.list_evaluations())
        # Saved views live in one list on the dataset: three processes saving theirs at once must keep all.
        views = {f"likely-mislabeled-{split}", f"hardest-{split}", f"most-unique-{split}", f"label-issues-{split}"}
        assert views | {f"issues-dark-{split}", f"issues-near-duplicate-{split}"} <= set(dataset.list_saved_views())
