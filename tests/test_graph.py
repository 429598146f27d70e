"""The whole asset graph materialized in process on 1,000 real samples per split, then inspected."""

import hashlib
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import torch
from graph import asset, saved_payload
from graph_runs import NINE
from PIL import Image

from mnist_assets.assets.common import Pipeline
from mnist_assets.assets.data import split_tensors
from mnist_assets.definitions import defs
from mnist_assets.ml.data.dataset_spec import DIGITS
from mnist_assets.ml.models.checkpoints import load_models
from mnist_assets.ml.quality.review_order import review_priority
from mnist_assets.ml.store.fiftyone_store import split_view
from mnist_assets.pipeline import declared_spec
from mnist_assets.resources import Settings
from mnist_assets.run_all import materialize_stage, stages

LIMIT = 1000
SPLITS = ("train", "validation", "test")


def test_definitions_load_every_declared_dataset_with_checks_jobs_and_sensors():
    graph = defs.resolve_asset_graph()
    all_keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    names = set(NINE) | {
        "lenet_predictions",
        "lenet_embeddings",
        "lenet_oof_predictions",
        "fold_ensemble_predictions",
        "finetuned_predictions",
        "model_comparison",
        "duplicates_and_leaks",
        "data_issues",
        "label_review",
        "cnn_checkpoint",
        "model_release",
    }
    assert all_keys == {f"{dataset}/{name}" for dataset in ("mnist", "fashion_mnist") for name in names}
    keys = {f"mnist/{name}" for name in names}
    checked = {check.asset_key.to_user_string() for check in graph.asset_check_keys}
    assert checked == all_keys  # at least one check on every asset
    node = lambda key: graph.get(dg.AssetKey(key.split("/")))  # noqa: E731
    assert node("mnist/raw_dataset").partitions_def.get_partition_keys() == list(SPLITS)
    assert node("mnist/lenet_checkpoint").partitions_def is None
    assert node("fashion_mnist/raw_dataset").group_name == "fashion_mnist_dataset"
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {f"{d}_{j}" for d in ("mnist", "fashion_mnist") for j in ("per_split_job", "clip_job", "training_job", "raw_job")} <= jobs
    assert defs.resolve_sensor_def("lineage_automation").default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_sensor_def("mnist_source_sensor") and defs.resolve_sensor_def("fashion_mnist_source_sensor")
    assert defs.resolve_sensor_def("mnist_review_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    for key in all_keys:
        assert node(key).description, f"{key} needs a description"
        assert node(key).code_version, f"{key} needs a code version"
        assert node(key).automation_condition is not None, f"{key} needs an automation condition"
    # Lineage as README.md and docs/graph.md draw it.
    parents = {key.split("/")[1]: {p.to_user_string() for p in node(key).parent_keys} for key in keys}
    assert parents["clip_embeddings"] == {"mnist/raw_dataset"}
    assert parents["umap_projection"] == {"mnist/clip_embeddings", "mnist/label_review"}  # plotted by the labels in use
    assert parents["zero_shot_predictions"] == {"mnist/clip_embeddings", "mnist/label_review"}
    assert parents["label_review"] == {"mnist/raw_dataset"}  # the labels in use: every reader of labels is below it
    assert parents["dataset_metadata"] == parents["lenet_checkpoint"] == parents["cnn_checkpoint"] == {"mnist/label_review"}
    assert parents["lenet_embeddings"] == {"mnist/lenet_checkpoint", "mnist/label_review"}  # its UMAP coloured by the labels in use
    assert parents["hardness_scores"] == {
        "mnist/label_review",
        "mnist/lenet_embeddings",
        "mnist/lenet_oof_predictions",
        "mnist/fold_ensemble_predictions",
    }
    assert parents["lenet_oof_predictions"] == {"mnist/label_review"}
    assert parents["fold_ensemble_predictions"] == {"mnist/lenet_oof_predictions", "mnist/label_review"}
    assert parents["finetuned_model"] == {"mnist/lenet_checkpoint", "mnist/augmented_set", "mnist/label_review"}
    assert parents["finetuned_predictions"] == {"mnist/finetuned_model", "mnist/label_review"}
    assert parents["model_comparison"] == {
        "mnist/lenet_predictions",
        "mnist/finetuned_predictions",
        "mnist/fold_ensemble_predictions",
        "mnist/label_review",
        "mnist/cnn_checkpoint",  # the release candidates' costs
    }
    assert parents["duplicates_and_leaks"] == {"mnist/label_review"}
    # it reads the models hardness_scores scores, and every split's labels in use and pixels (leaks)
    assert parents["data_issues"] == {"mnist/hardness_scores", "mnist/label_review"}
    assert parents["model_release"] == {
        "mnist/lenet_checkpoint",
        "mnist/finetuned_model",
        "mnist/lenet_oof_predictions",
        "mnist/cnn_checkpoint",
        "mnist/label_review",
    }


def test_make_run_stages_follow_the_graph():
    """make run's stages come from the graph: every asset once, each after all its parents."""
    graph = defs.resolve_asset_graph()
    seen = []
    for keys, partitioned in stages(graph, ["mnist"]):
        for key in keys:
            assert (graph.get(key).partitions_def is not None) == partitioned
            assert all(parent in seen or parent in keys for parent in graph.get(key).parent_keys)
        seen += keys
    assert sorted(seen) == sorted(key for key in graph.get_all_asset_keys() if key.path[0] == "mnist")


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("graph")
    settings = Settings(
        home=str(home), namespace="graph-test", limit=LIMIT, epochs=1, clip_model="mnist-tiny", clip_pretrained="none", device="cpu"
    )
    instance = dg.DagsterInstance.ephemeral()
    return settings, instance, materialize_all(settings, instance)


def materializations(results, asset):
    found = {}
    for (_, partition), result in results.items():
        for event in result.get_asset_materialization_events():
            materialization = event.event_specific_data.materialization
            if materialization.asset_key.to_user_string() == f"mnist/{asset}":
                found[partition] = {k: v.value for k, v in materialization.metadata.items()}
    return found


def test_every_check_passed(graph_run):
    _, _, results = graph_run
    evaluations = [
        event.event_specific_data
        for result in results.values()
        for event in result.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    # Every check of every asset, once per partition: none skipped, none twice.
    graph = defs.resolve_asset_graph()
    mnist_nodes = [graph.get(key) for key in graph.get_all_asset_keys() if key.path[0] == "mnist"]
    assert len(evaluations) == sum(len(node.check_keys) * (len(SPLITS) if node.partitions_def else 1) for node in mnist_nodes)
    failed = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations if not e.passed]
    # data_issues' checks warn about what real digits hold (a few outliers, neat "1"s that correlate
    # above 0.99); they never block without issue_gates.
    warned = [e for e in evaluations if not e.passed and e.asset_key.path[-1] == "data_issues"]
    assert all(e.severity == dg.AssetCheckSeverity.WARN for e in warned)
    assert not [name for name in failed if "/data_issues:" not in name]


def test_each_split_holds_its_samples_with_every_field(graph_run):
    settings, _, _ = graph_run
    dataset = settings.store("mnist").dataset()
    assert len(dataset) == 3 * LIMIT
    for split in SPLITS:
        view = split_view(dataset, split)
        assert len(view) == LIMIT
        sample = view.first()
        assert sample.split == split and sample.tags == [split]
        assert sample.ground_truth.label in [str(d) for d in range(10)]
        assert np.asarray(sample.clip_embeddings).shape == (64,)
        assert np.asarray(sample.lenet_embeddings).shape == (84,)
        for field in ("clip_zero_shot", "lenet_predictions", "finetuned_predictions", "fold_ensemble_predictions"):
            # Every sample: the label is the stored logits' argmax, the confidence its softmax probability.
            labels, confidences, logits = view.values([f"{field}.label", f"{field}.confidence", f"{field}.logits"])
            logits = np.asarray(logits, dtype=np.float64)
            assert logits.shape == (LIMIT, 10), field
            probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
            probabilities /= probabilities.sum(axis=1, keepdims=True)
            predicted = probabilities.argmax(axis=1)
            assert labels == [DIGITS[i] for i in predicted], field
            assert np.allclose(confidences, probabilities[np.arange(LIMIT), predicted], rtol=0, atol=1e-5), field
        for field in ("hardness", "mistakenness", "uniqueness"):
            values = np.asarray(view.values(field), dtype=float)
            assert values.shape == (LIMIT,) and np.isfinite(values).all()
    brain_runs = set(dataset.list_brain_runs())
    for split in SPLITS:
        assert {f"clip_umap_{split}", f"clip_pca_{split}", f"lenet_umap_{split}"} <= brain_runs
    assert {"hardest-test", "likely-mislabeled-test", "most-unique-test"} <= set(dataset.list_saved_views())
    # cleanlab's label quality: the given label's probability by the out-of-sample predictions (on
    # train each sample's fold model, elsewhere the fold models' ensemble).
    for split in SPLITS:
        view = split_view(dataset, split)
        predictions = "lenet_oof_predictions" if split == "train" else "fold_ensemble_predictions"
        quality, truth, logits = view.values(["label_quality", "ground_truth.label", f"{predictions}.logits"])
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        assert np.allclose(quality, probabilities[np.arange(LIMIT), [int(t) for t in truth]], atol=1e-6)
        issues = dataset.load_saved_view(f"label-issues-{split}")
        assert 0 < len(issues) < LIMIT and issues.values("label_quality") == sorted(issues.values("label_quality"))
        # review_priority: the chosen ranking (ml/quality/review_order.py) of the same predictions, on every sample.
        priority = np.asarray(view.values("review_priority"), dtype=float)
        assert np.allclose(priority, review_priority(np.asarray(logits), [int(t) for t in truth]), atol=1e-9)
        queue = dataset.load_saved_view(f"review-queue-{split}")
        assert 0 < len(queue) and queue.values("review_priority") == sorted(queue.values("review_priority"), reverse=True)
    # Out of sample, train is scored like data the model never saw: not near-perfectly, as memorized.
    train = split_view(dataset, "train")
    truth, oof, in_sample = train.values(["ground_truth.label", "lenet_oof_predictions.label", "lenet_predictions.label"])
    assert None not in oof and 0.2 < np.mean(np.array(oof) == np.array(truth)) <= np.mean(np.array(in_sample) == np.array(truth)) + 0.02


def test_source_indices_match_real_mnist(graph_run, mnist):
    settings, _, _ = graph_run
    view = split_view(settings.store("mnist").dataset(), "test")
    indices, labels = view.values(["source_index", "ground_truth.label"])
    assert indices == list(range(LIMIT))
    assert [int(label) for label in labels] == mnist.test_labels[:LIMIT].tolist()


def test_metadata_values_agree_with_the_dataset(graph_run):
    settings, _, results = graph_run
    raw = materializations(results, "raw_dataset")
    assert all(raw[split]["count"] == LIMIT for split in SPLITS)
    meta = materializations(results, "dataset_metadata")["test"]
    assert 50 < meta["size_bytes_min"] <= meta["size_bytes_mean"] <= meta["size_bytes_max"] < 2000
    assert 0.10 < meta["pixel_mean"] < 0.16 and 0.28 < meta["pixel_std"] < 0.34  # MNIST: 0.13, 0.31
    clip = materializations(results, "clip_embeddings")["test"]
    assert clip["weights"] == "random" and clip["shape"] == f"({LIMIT}, 64)"
    assert materializations(results, "zero_shot_predictions")["test"]["weights"] == "random"
    view = split_view(settings.store("mnist").dataset(), "test")
    truth, predicted = view.values(["ground_truth.label", "lenet_predictions.label"])
    accuracy = float(np.mean(np.array(truth) == np.array(predicted)))
    assert materializations(results, "lenet_predictions")["test"]["accuracy"] == pytest.approx(accuracy)
    assert accuracy > 0.2  # one epoch on 1,000 digits; chance is 0.1
    hardness = materializations(results, "hardness_scores")["test"]
    assert hardness["confirmed_label_errors_present"] == 1  # of the 15, only 947 is among the first 1,000
    # 947's rank by each score, recomputed here from the stored fields: the counts must say the same.
    indices, quality_947, mistaken = view.values(["source_index", "label_quality", "mistakenness"])
    position = indices.index(947)
    by_quality = int(np.sum(np.array(quality_947) < quality_947[position]))
    by_mistakenness = int(np.sum(np.array(mistaken) > mistaken[position]))
    for top in (20, 50, 100):
        assert hardness[f"cleanlab_confirmed_label_errors_in_top{top}"] == int(by_quality < top)
        assert hardness[f"confirmed_label_errors_in_top{top}"] == int(by_mistakenness < top)
    assert hardness["confirmed_label_error_ranks"] == f"| 947 |\n|---|\n| {by_quality} |"
    assert "cleanlab label quality" in hardness["label_error_rankings"] and hardness["label_issues"] > 0
    oof = materializations(results, "lenet_oof_predictions")[None]
    assert oof["count"] == LIMIT and oof["folds"] == 5 and oof["misclassified"] == round((1 - oof["accuracy"]) * LIMIT)
    # the fold models' ensemble on test, evaluated like the checkpoint's predictions
    folds_truth, folds_predicted = view.values(["ground_truth.label", "fold_ensemble_predictions.label"])
    folds_accuracy = float(np.mean(np.array(folds_truth) == np.array(folds_predicted)))
    folds_meta = materializations(results, "fold_ensemble_predictions")["test"]
    assert folds_meta["accuracy"] == pytest.approx(folds_accuracy) and folds_accuracy > 0.2
    assert folds_meta["checkpoint_epoch"] == "1, 1, 1, 1, 1"  # five fold models of one epoch each
    scored = {split: materializations(results, "hardness_scores")[split]["scored_predictions"] for split in SPLITS}
    assert scored == {"train": "lenet_oof_predictions", "validation": "fold_ensemble_predictions", "test": "fold_ensemble_predictions"}
    # likely-mislabeled = lowest label quality first; its top rows are those of the metadata table
    likely = settings.store("mnist").dataset().load_saved_view("likely-mislabeled-test")
    quality = likely.values("label_quality")
    assert len(quality) == 200 and quality == sorted(quality)
    table_rows = hardness["top20_likely_mislabeled"].split("\n")[2:]
    assert len(table_rows) == 20 and table_rows[0].startswith(f"| {likely.first()['source_index']} |")
    duplicates = materializations(results, "duplicates_and_leaks")[None]
    assert duplicates["images"] == 3 * LIMIT and duplicates["exact_duplicates"] == 0  # MNIST has no byte-identical images
    assert duplicates["test_leaks_into_train"] == 0  # the nearest pair in the full set is 1 test/train pair (docs/label-errors.md)
    assert {"duplicates", "leaks-train", "leaks-validation", "leaks-test"} <= set(settings.store("mnist").dataset().list_saved_views())
    comparison = materializations(results, "model_comparison")[None]
    assert comparison["accuracy_lenet"] == pytest.approx(accuracy)
    before, after = (np.array(view.values(f"{field}.label")) == np.array(truth) for field in ("lenet_predictions", "finetuned_predictions"))
    assert (comparison["fixed"], comparison["broken"]) == (int((~before & after).sum()), int((before & ~after).sum()))
    assert (
        "ensemble (mean probability)" in comparison["label_error_rankings"] and "LeNet fold ensemble" in comparison["label_error_rankings"]
    )
    assert comparison["accuracy_lenet_fold_ensemble"] == pytest.approx(folds_accuracy)
    # Every release candidate with its costs: the LeNet's accuracy as its predictions gave it.
    rows = comparison["release_candidates"].split("\n")[2:]
    assert [row.split("|")[1].strip() for row in rows] == ["lenet_checkpoint", "finetuned_model", "fold_ensemble", "cnn_checkpoint"]
    assert comparison["test_accuracy_lenet_checkpoint"] == pytest.approx(accuracy, abs=1e-5)
    # What a tie on validation is broken by, counted on each model: five LeNets cost five times one.
    macs = {
        name: comparison[f"multiply_adds_{name}"] for name in ("lenet_checkpoint", "finetuned_model", "fold_ensemble", "cnn_checkpoint")
    }
    assert (
        macs["lenet_checkpoint"] == macs["finetuned_model"]
        and macs["fold_ensemble"] == 5 * macs["lenet_checkpoint"] < macs["cnn_checkpoint"]
    )
    pair = np.mean(
        [
            np.exp(view.values(f"{f}.logits")) / np.exp(view.values(f"{f}.logits")).sum(axis=1, keepdims=True)
            for f in ("lenet_predictions", "finetuned_predictions")
        ],
        axis=0,
    )
    given = pair[np.arange(LIMIT), [int(t) for t in truth]]
    pair_rank = int(np.sum(given < given[position]))
    assert [comparison[f"ensemble_confirmed_label_errors_in_top{top}"] for top in (20, 50, 100)] == [
        int(pair_rank < t) for t in (20, 50, 100)
    ]


def test_checkpoints_are_complete_and_safe(graph_run):
    settings, _, _ = graph_run
    for name in ("lenet_checkpoint", "finetuned_model", "cnn_checkpoint"):
        payload = saved_payload(settings.store("mnist").artifact_path("checkpoints", f"{name}.pt"))
        assert payload["epoch"] == 1 and isinstance(payload["model"]["fc2.weight"], torch.Tensor)
        assert payload["settings"]["seed"] == 51 and payload["settings"]["training_seconds"] > 0
    cnn = saved_payload(settings.store("mnist").artifact_path("checkpoints", "cnn_checkpoint.pt"))
    # The CNN's recipe (ml/models/recipes.py): digits get the affine, not mirror images.
    assert cnn["arch"] == "vgg_small" and (cnn["settings"]["ema"], cnn["settings"]["label_smoothing"]) == (0.0, 0.1)
    assert (cnn["settings"]["batch_augmentation"], cnn["settings"]["horizontal_flip"]) == ("affine", False)
    lenet = saved_payload(settings.store("mnist").artifact_path("checkpoints", "lenet_checkpoint.pt"))["settings"]
    assert lenet["batch_augmentation"] == "affine"  # MNIST's declaration (defs/mnist/defs.yaml)
    folds = load_models(settings.store("mnist").artifact_path("checkpoints", "lenet_oof_predictions.pt"))
    assert len(folds) == 5 and {payload["settings"]["batch_augmentation"] for _, payload in folds} == {"none"}  # plain scorers
    finetuned = saved_payload(settings.store("mnist").artifact_path("checkpoints", "finetuned_model.pt"))["settings"]
    assert (finetuned["recipe"], finetuned["lr"], finetuned["batch_augmentation"], finetuned["keep"]) == (
        "onecycle",
        1e-3,
        "affine",
        "last",
    )
    assert finetuned["augmented_count"] > 0


def test_augmented_samples_link_to_their_sources(graph_run):
    settings, _, results = graph_run
    meta = materializations(results, "augmented_set")[None]
    dataset = settings.store("mnist").augmented()
    assert len(dataset) == meta["count"] == meta["selected"] * 10 > 0
    main = settings.store("mnist").dataset()
    source_ids, labels, strategies = dataset.values(["source_sample_id", "ground_truth.label", "strategy"])
    sources = main.select(list(set(source_ids)))
    source_labels = dict(zip(sources.values("id"), sources.values("ground_truth.label")))
    assert all(source_labels[s] == label for s, label in zip(source_ids, labels))
    assert set(strategies) == {"hardest"}  # the default (docs/recipes.md)


def split_contents(dataset, split: str) -> dict:
    """Every field of every sample of a split, by sample id (the ingest must keep all of it)."""
    view = split_view(dataset, split)
    fields = sorted(set(dataset.get_field_schema()) - {"metadata"}) + ["metadata.size_bytes", "metadata.width"]
    plain = lambda value: value.tolist() if isinstance(value, np.ndarray) else value  # noqa: E731
    return {field: [plain(v) for v in values] for field, values in zip(fields, view.values(fields))}


def test_rematerializing_an_unchanged_split_keeps_every_sample_and_field(graph_run):
    settings, instance, _ = graph_run
    dataset = settings.store("mnist").dataset()
    before = {split: split_contents(dataset, split) for split in SPLITS}
    assert all(v is not None for v in before["test"]["lenet_predictions"]) and before["test"]["metadata.width"][0] == 28
    result = dg.materialize([asset("raw_dataset")], partition_key="test", instance=instance, resources={"settings": settings})
    assert result.success
    metadata = {k: v.value for k, v in result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata.items()}
    assert (metadata["samples_kept"], metadata["samples_replaced"], metadata["samples_added"], metadata["samples_removed"]) == (
        LIMIT,
        0,
        0,
        0,
    )
    dataset.reload()
    assert {split: split_contents(dataset, split) for split in SPLITS} == before


def test_a_changed_label_replaces_exactly_that_sample(make_settings, mnist):
    """Re-ingest keeps what is still true: one changed label, one new and one vanished sample."""
    from mnist_assets.ml.data.sources import pixel_hashes
    from mnist_assets.ml.store.fiftyone_store import sync_split

    settings = make_settings()
    dataset = settings.store("mnist").dataset()
    images, labels = mnist.test_images[:50], mnist.test_labels[:50].copy()
    indices = np.arange(50)
    paths = [f"/data/t10k/{i:05d}.png" for i in indices]
    first = sync_split(dataset, "test", paths, labels, indices, pixel_hashes(images), DIGITS)
    assert first == {"kept": 0, "replaced": 0, "added": 50, "removed": 0, "count": 50}
    before = dict(zip(split_view(dataset, "test").values("source_index"), split_view(dataset, "test").values("id")))

    labels[7] = (labels[7] + 1) % 10
    keep = np.r_[0:49]  # sample 49 vanishes
    new_images = np.concatenate([images[keep], mnist.test_images[60:61]])
    new_labels = np.r_[labels[keep], mnist.test_labels[60:61]]
    new_indices = np.r_[indices[keep], 60]
    new_paths = [f"/data/t10k/{i:05d}.png" for i in new_indices]
    second = sync_split(dataset, "test", new_paths, new_labels, new_indices, pixel_hashes(new_images), DIGITS)
    assert second == {"kept": 48, "replaced": 1, "added": 1, "removed": 1, "count": 50}
    view = split_view(dataset, "test")
    after = dict(zip(view.values("source_index"), view.values("id")))
    assert {i for i in after if after[i] == before.get(i)} == set(range(49)) - {7}
    assert view.match({"source_index": 7}).first().ground_truth.label == str(labels[7])
    assert 49 not in after and 60 in after


# --- The release ----------------------------------------------------------------------------------


def release_env(settings) -> dict:
    from reliability.helpers import subprocess_env

    return subprocess_env(settings)


def predict_cli(settings, *args: str):
    import subprocess
    import sys

    from processes import REPO

    return subprocess.run(
        [sys.executable, "-m", "mnist_assets.predict", *args],
        env=release_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_release_is_the_best_on_validation_and_ships_as_onnx(graph_run):
    import json

    import onnxruntime

    settings, _, results = graph_run
    meta = materializations(results, "model_release")[None]
    candidates = {row.split("|")[1].strip(): float(row.split("|")[2]) for row in meta["candidates"].split("\n")[2:]}
    cheapest_first = ("lenet_checkpoint", "finetuned_model", "fold_ensemble", "cnn_checkpoint")
    assert set(candidates) == set(cheapest_first)
    best = max(candidates.values())
    cheapest_best = next(name for name in cheapest_first if candidates[name] == best)
    assert meta["challenger"] == meta["released_model"] == cheapest_best and meta["promoted"] is True
    assert meta["validation_accuracy"] == pytest.approx(best, abs=1e-4) and "test accuracy is reported, never used" in meta["reason"]
    folder = settings.store("mnist").dir / "release"
    # One folder per release, the paths users rely on switched with it as one unit.
    assert sorted(p.name for p in folder.iterdir()) == ["current", "model.onnx", "model_card.json", "model_card.md", "versions"]
    assert [p.name for p in (folder / "versions").iterdir()] == [meta["released"]]
    assert meta["decision"].startswith(f"{cheapest_best} is the first release")
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    properties = session.get_modelmeta().custom_metadata_map
    assert json.loads(properties["classes"]) == [str(d) for d in range(10)]
    assert (properties["image_size"], properties["channels"], properties["resize"], properties["source_size"]) == ("28", "1", "pad", "28")
    assert set(json.loads(properties["data_version"])) == set(SPLITS) and properties["dataset"] == "mnist"
    (batch_input,) = session.get_inputs()
    assert batch_input.type == "tensor(uint8)" and batch_input.shape[1:] == [1, 28, 28]
    card = json.loads((folder / "model_card.json").read_text())
    assert card["model"] == cheapest_best and {c["model"] for c in card["candidates"]} == set(candidates)
    assert card["version"] == meta["released"] and card["replaces"]["champion_version"] is None
    assert card["model_sha256"] == hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    assert card["onnx_parity"]["argmax_agree"] == card["onnx_parity"]["samples"] == LIMIT
    assert card["onnx_parity"]["onnx_test_accuracy"] == pytest.approx(meta["test_accuracy"])
    assert set(card["test_per_class_recall"]) == {str(d) for d in range(10)} and card["confirmed_label_errors"]
    assert "Chosen on validation" in (folder / "model_card.md").read_text()
    # Its predictions on every split, evaluated: the App shows what the shipped model gets wrong.
    dataset = settings.store("mnist").dataset()
    for split in SPLITS:
        view = split_view(dataset, split)
        images = np.stack([np.asarray(Image.open(path)) for path in view.values("filepath")])[:, None]
        expected = session.run(None, {batch_input.name: images})[0].argmax(axis=1)
        assert view.values("release_predictions.label") == [str(c) for c in expected]
        assert f"eval_release_{split}" in dataset.list_evaluations()
    checks = [e.event_specific_data for r in results.values() for e in r.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert {(c.check_name, c.passed) for c in checks if c.asset_key.path[-1] == "model_release"} == {
        ("onnx_parity", True),
        ("not_worse_than_champion", True),
    }


def test_a_weaker_candidate_loses_and_a_tie_goes_to_the_cheaper_model(graph_run):
    from mnist_assets.assets.data import load_models_for
    from mnist_assets.ml.models.architectures import build_model
    from mnist_assets.ml.release import export as release

    settings, _, _ = graph_run
    p = Pipeline(declared_spec("mnist"))
    store = settings.store("mnist")
    _, _, validation = split_tensors(p, settings, "validation", store, standardize=False)
    _, _, test = split_tensors(p, settings, "test", store, standardize=False)
    models, _, standardized = load_models_for(p, store, "lenet_checkpoint", test)
    trained = release.Candidate("lenet_checkpoint", release.Probabilities(models, standardized.mean, standardized.std), "trained")
    untrained = release.Candidate("finetuned_model", release.Probabilities([build_model("lenet5", 7)], 0.13, 0.31), "weaker")
    for candidate in (trained, untrained):
        release.score(candidate, (validation.images, validation.labels.numpy()), (test.images, test.labels.numpy()), p.classes())
    assert trained.validation_accuracy > 0.3 > untrained.validation_accuracy  # one epoch against none; chance is 0.1
    assert release.choose([untrained, trained])[0] is trained
    twin = release.Candidate(
        "fold_ensemble", release.Probabilities(models * 5, standardized.mean, standardized.std), "the same model, 5 times"
    )
    release.score(twin, (validation.images, validation.labels.numpy()), (test.images, test.labels.numpy()), p.classes())
    assert twin.validation_accuracy == trained.validation_accuracy and twin.cost == 5 * trained.cost
    assert release.choose([twin, trained])[0] is trained and "cheaper" in release.choose([twin, trained])[1]


def test_a_tampered_or_failed_export_keeps_the_previous_release(graph_run, monkeypatch):
    import onnx

    from mnist_assets.ml.release import export as release

    settings, instance, _ = graph_run
    folder = settings.store("mnist").dir / "release"
    before = {name: (folder / name).read_bytes() for name in ("model.onnx", "model_card.json")}
    exported = release.export_onnx

    def tampered(*args, **kwargs):
        graph = onnx.load_from_string(exported(*args, **kwargs))
        weights = graph.graph.initializer[0]
        values = onnx.numpy_helper.to_array(weights).copy()
        weights.CopyFrom(onnx.numpy_helper.from_array(values + 0.05, weights.name))
        return graph.SerializeToString()

    monkeypatch.setattr(release, "export_onnx", tampered)
    result = dg.materialize([asset("model_release")], instance=instance, resources={"settings": settings}, raise_on_error=False)
    evaluations = {
        e.event_specific_data.check_name: e.event_specific_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert evaluations["onnx_parity"] is False and metadata_of(result, "model_release")["promoted"] is False
    assert {name: (folder / name).read_bytes() for name in before} == before

    def broken(*args, **kwargs):
        raise RuntimeError("the exporter crashed")

    monkeypatch.setattr(release, "export_onnx", broken)
    result = dg.materialize([asset("model_release")], instance=instance, resources={"settings": settings}, raise_on_error=False)
    assert not result.success and {name: (folder / name).read_bytes() for name in before} == before
    monkeypatch.setattr(release, "export_onnx", exported)

    # A retrained model worse than the release in place (the champion, re-scored on the labels in
    # use) does not replace it: the run succeeds, a warning check says by how much, nothing changes.
    from mnist_assets.assets import release as release_asset
    from mnist_assets.ml.models.architectures import build_model

    def weaker(*_):
        return [release.Candidate("lenet_checkpoint", release.Probabilities([build_model("lenet5", 7)], 0.13, 0.31), "untrained")]

    monkeypatch.setattr(release_asset, "candidates_for", weaker)
    result = dg.materialize([asset("model_release")], instance=instance, resources={"settings": settings})
    meta = metadata_of(result, "model_release")
    (duel,) = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == "not_worse_than_champion"
    ]
    assert duel.passed is False and duel.severity == dg.AssetCheckSeverity.WARN
    assert meta["promoted"] is False and " stays: the new lenet_checkpoint is worse by " in meta["decision"]
    assert meta["champion_validation_accuracy"] > meta["validation_accuracy"] and meta["margin_points"] < 0
    assert {name: (folder / name).read_bytes() for name in before} == before and len(list((folder / "versions").iterdir())) == 1


def test_predict_needs_only_onnxruntime_numpy_and_pillow(graph_run, tmp_path):
    import json
    import subprocess
    import sys

    from processes import REPO

    settings, _, _ = graph_run
    imports = subprocess.run(
        [sys.executable, "-c", "import sys, mnist_assets.predict; print(sorted({m.split('.')[0] for m in sys.modules}))"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imports.returncode == 0 and not {"dagster", "fiftyone", "torch"} & set(eval(imports.stdout))
    # Samples of test saved as RGB PNGs (another mode, the same pixels): the release's own predictions.
    view = split_view(settings.store("mnist").dataset(), "test").limit(12)
    files = []
    for number, (path, label) in enumerate(zip(view.values("filepath"), view.values("release_predictions.label"))):
        copy = tmp_path / f"digit-{number}.png"
        Image.open(path).convert("RGB").save(copy)
        files.append((str(copy), label))
    done = predict_cli(settings, "--dataset", "mnist", "--json", *(f for f, _ in files))
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [r["label"] for r in results] == [label for _, label in files]
    assert all(len(r["top"]) == 3 and r["top"][0]["label"] == r["label"] and 0 < r["probability"] <= 1 for r in results)
    # Bad input: each a one-line error with the fix; a bad file does not stop the others.
    truncated, text = tmp_path / "cut.png", tmp_path / "notes.png"
    truncated.write_bytes(Path(files[0][0]).read_bytes()[:60])
    text.write_text("not an image")
    mixed = predict_cli(settings, "--dataset", "mnist", "--json", str(truncated), files[1][0], str(text))
    assert mixed.returncode == 1
    first, second, third = json.loads(mixed.stdout)
    assert "cut.png is not a readable image" in first["error"] and second["label"] == files[1][1] and "notes.png" in third["error"]
    undeclared = predict_cli(settings, "--dataset", "mnsit", files[0][0])
    assert undeclared.returncode == 2 and "no dataset 'mnsit' is declared" in undeclared.stderr
    missing = predict_cli(settings, "--dataset", "fashion_mnist", files[0][0])
    assert missing.returncode == 2 and "materialize fashion_mnist/model_release first" in missing.stderr


# --- Human review through the graph ----------------------------------------------------------------


def metadata_of(result, name: str) -> dict:
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == f"mnist/{name}":
            return {k: v.value for k, v in materialization.metadata.items()}
    raise AssertionError(f"mnist/{name} was not materialized")


def materialize_all(settings, instance) -> dict:
    """Every asset of mnist, every partition, as `make run` (and the UI's "Materialize all") does."""
    results = {}
    for keys, partitioned in stages(datasets=["mnist"]):
        for partition in SPLITS if partitioned else [None]:
            result = materialize_stage(instance, keys, partition, {"settings": settings})
            assert result.success, f"stage {keys} [{partition}] failed"
            results[(tuple(keys), partition)] = result
    return results


def test_a_reviewers_work_survives_the_weekly_refresh_and_materialize_all(graph_run, mnist):
    settings, instance, _ = graph_run
    dataset = settings.store("mnist").dataset()
    view = split_view(dataset, "test")
    corrected, tagged, excluded = (view.match({"source_index": i}).first() for i in (5, 6, 7))
    wrong = str((int(corrected.ground_truth.label) + 1) % 10)
    corrected.ground_truth.label = wrong  # what the App's label editor writes
    corrected.save()
    view.select([tagged.id]).tag_samples("blurry")  # a person's own tag
    view.select([excluded.id]).tag_samples("review:exclude")
    junk = split_view(dataset, "train").first()  # an exclusion on train retrains without it
    split_view(dataset, "train").select([junk.id]).tag_samples("review:exclude")
    before = split_contents(dataset, "test")

    # The review sensor notices the App edits on test, and only there.
    from mnist_assets.definitions import defs

    sensor = defs.resolve_sensor_def("mnist_review_sensor")
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources={"settings": settings}, definitions=defs))
    assert sorted(request.partition_key for request in tick.run_requests) == ["test", "train"]

    # The weekly refresh re-ingests test before any review ran; then "Materialize all".
    refresh = dg.materialize([asset("raw_dataset")], partition_key="test", instance=instance, resources={"settings": settings})
    assert refresh.success and metadata_of(refresh, "raw_dataset")["samples_kept"] == LIMIT
    results = materialize_all(settings, instance)

    dataset.reload()
    after = split_contents(dataset, "test")
    assert after["id"] == before["id"] and after["tags"] == before["tags"]  # same samples, every tag kept
    assert all(value is not None for field in ("clip_embeddings", "lenet_predictions", "hardness") for value in after[field])
    view = split_view(dataset, "test")
    assert view.match({"source_index": 5}).first().ground_truth.label == wrong
    assert view.match({"source_index": 5}).first().ground_truth_original.label == str(mnist.test_labels[5])
    assert view.match({"source_index": 7}).first().review_decision == "exclude"
    review = next(
        metadata_of(r, "label_review")
        for (keys, partition), r in results.items()
        if partition == "test" and dg.AssetKey(["mnist", "label_review"]) in keys
    )
    assert (review["decisions_relabel"], review["decisions_exclude"], review["usable"]) == (1, 1, LIMIT - 1)
    assert review["review_yield_last_50"] == "1 of 2 changed a label"  # the relabel of 5; the exclusion of 7 did not
    log = settings.store("mnist").decision_log().read()
    assert sorted((d.split, d.source_index, d.decision, d.via) for d in log) == [
        ("test", 5, "relabel", "app"),
        ("test", 7, "exclude", "tag:review:exclude"),
        ("train", junk.source_index, "exclude", "tag:review:exclude"),
    ]

    # The excluded training sample is out of training, the fold models, augmentation and duplicates.
    checkpoint = saved_payload(settings.store("mnist").artifact_path("checkpoints", "lenet_checkpoint.pt"))
    assert checkpoint["settings"]["train_count"] == LIMIT - 1
    assert materializations(results, "lenet_oof_predictions")[None]["count"] == LIMIT - 1
    assert junk.id not in set(settings.store("mnist").augmented().values("source_sample_id"))
    assert materializations(results, "duplicates_and_leaks")[None]["images"] == 3 * LIMIT - 2

    # The excluded sample is out of every evaluation; the source-label accuracy counts every sample.
    predictions = materializations(results, "lenet_predictions")["test"]
    assert (predictions["evaluated"], predictions["excluded"]) == (LIMIT - 1, 1)
    in_use, source, decided, predicted = view.values(
        ["ground_truth.label", "ground_truth_original.label", "review_decision", "lenet_predictions.label"]
    )
    kept = [(p, t) for p, t, d in zip(predicted, in_use, decided) if d != "exclude"]
    assert predictions["accuracy"] == pytest.approx(sum(p == t for p, t in kept) / len(kept))
    assert predictions["accuracy_source_labels"] == pytest.approx(np.mean(np.array(predicted) == np.array(source)))
    assert len(dataset.load_evaluation_view("eval_lenet_test")) == LIMIT - 1
    comparison = materializations(results, "model_comparison")[None]
    assert comparison["evaluated"] == LIMIT - 1 and comparison["accuracy_lenet"] == pytest.approx(predictions["accuracy"])
    assert comparison["accuracy_source_labels_lenet"] == pytest.approx(predictions["accuracy_source_labels"])
    hardness = materializations(results, "hardness_scores")["test"]
    assert hardness["count"] == LIMIT - 1
    queue = dataset.load_saved_view("review-queue-test")
    assert 0 < len(queue) and not {5, 7} & set(queue.values("source_index"))
    assert queue.values("review_priority") == sorted(queue.values("review_priority"), reverse=True)
    excluded = split_view(dataset, "test").match({"source_index": 7}).first()
    assert excluded.review_priority == 0.0  # every sample has one: an excluded sample has nothing left to review

    # The sensor sees nothing new once label_review ran.
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources={"settings": settings}, definitions=defs))
    assert not tick.run_requests

    # A dataset rebuilt from the source gets the decisions back at ingest.
    dataset.delete()
    rebuilt = dg.materialize([asset("raw_dataset")], partition_key="test", instance=instance, resources={"settings": settings})
    assert rebuilt.success and metadata_of(rebuilt, "raw_dataset")["samples_added"] == LIMIT
    view = split_view(settings.store("mnist").dataset(), "test")
    assert view.match({"source_index": 5}).first().ground_truth.label == wrong
    assert view.match({"source_index": 7}).first().review_decision == "exclude"


def test_the_shipped_mnist_review_applies_with_one_command(graph_run, tmp_path):
    """`make review DECISIONS=...` on the human verdicts for the 15 confirmed test label errors: of
    them, only 947 is among the first 1,000 test images this run ingested; the others wait in the log."""
    import subprocess
    import sys

    from processes import REPO, run_ok
    from reliability.helpers import subprocess_env

    settings, _, _ = graph_run
    command = [sys.executable, "-m", "mnist_assets.review", "import"]
    shipped = REPO / "mnist_assets/defs/mnist/reviewed_test_labels.csv"
    done = run_ok([*command, str(shipped)], env=subprocess_env(settings), timeout=600)
    assert "recorded 15 decisions" in done.stdout and "mnist/label_review[test]" in done.stdout
    assert "no Dagster daemon runs for this instance: mnist/label_review applied in this process" in done.stdout  # headless
    log = settings.store("mnist").decision_log().read()
    shipped_decisions = [d for d in log if d.via.startswith("file:reviewed_test_labels.csv")]
    assert sorted(d.source_index for d in shipped_decisions) == [
        947,
        1621,
        1901,
        2130,
        2462,
        2597,
        2654,
        3520,
        3558,
        5937,
        6651,
        6783,
        8527,
        9679,
        9729,
    ]
    assert sum(d.decision == "exclude" for d in shipped_decisions) == 5
    sample = split_view(settings.store("mnist").dataset(), "test").match({"source_index": 947}).first()
    assert (sample.ground_truth.label, sample.ground_truth_original.label, sample.review_decision) == ("9", "8", "relabel")

    # A bad file is refused whole, naming the line and the fix; the log is untouched.
    bad = tmp_path / "bad.csv"
    bad.write_text("source_index,decision,label\n12,relabel,9\n10000,exclude,\n")
    refused = subprocess.run(
        [*command, str(bad), "--split", "test"], env=subprocess_env(settings), cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert refused.returncode == 2 and "line 3: no test sample has source_index 10000" in refused.stderr
    assert settings.store("mnist").decision_log().read() == log
