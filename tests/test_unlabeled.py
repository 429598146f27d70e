"""Samples without a label: MNIST declared with a label budget (all but 60 of train's labels hidden),
and a folder with half its photos in an `unlabeled:` folder, through every asset of the graph. The
unlabeled samples are ingested, embedded and predicted like any other; they never train a model and
never count in an accuracy or a label score; label_requests proposes which to label next."""

import dagster as dg
import numpy as np
import pytest
from fiftyone import ViewField as F
from graph_runs import failed_checks, materialize_every_asset

from mnist_assets.ml.data.dataset_spec import DatasetSpec
from mnist_assets.ml.data.sources import hidden_labels
from mnist_assets.ml.store.fiftyone_store import split_view, usable_view
from mnist_assets.pipeline import declared_spec
from mnist_assets.run_all import materialize_stage

LIMIT, LABELED, BATCH = 300, 60, 25


def test_hidden_labels_keep_the_same_samples_whatever_the_order():
    keys = np.arange(1000)
    labels = keys % 10
    hidden = hidden_labels(labels, keys, 100, seed=3)
    assert (hidden >= 0).sum() == 100 and (hidden[hidden >= 0] == labels[hidden >= 0]).all()
    order = np.random.default_rng(0).permutation(1000)
    assert (hidden_labels(labels[order], keys[order], 100, seed=3) == hidden[order]).all()  # chosen per key
    assert (hidden_labels(labels, keys, 100, seed=4) >= 0).sum() == 100
    assert set(np.flatnonzero(hidden_labels(labels, keys, 100, seed=4) >= 0)) != set(np.flatnonzero(hidden >= 0))


def test_a_label_budget_is_checked_when_it_loads():
    with pytest.raises(ValueError, match="labeled"):
        declared_spec("mnist").model_copy(update={"label_budget": None}).model_validate(
            {**declared_spec("mnist").model_dump(), "label_budget": {"labeled": -1}}
        )
    with pytest.raises(ValueError, match="extra"):
        DatasetSpec(**{**declared_spec("mnist").model_dump(), "label_budget": {"labeled": 5, "sed": 1}})
    with pytest.raises(ValueError, match="declares hidden labels with label_budget"):
        DatasetSpec(**{**declared_spec("mnist").model_dump(), "unlabeled": "/tmp"})


@pytest.fixture(scope="module")
def budget_graph(tmp_path_factory):
    from mnist_assets.resources import Settings

    home = tmp_path_factory.mktemp("unlabeled")
    spec = DatasetSpec(
        **{
            **declared_spec("mnist").model_dump(),
            "name": "mnist_few",
            "label_budget": {"labeled": LABELED, "seed": 0},
            "label_batch": BATCH,
        }
    )
    settings = Settings(
        home=str(home), namespace="unlabeled", limit=LIMIT, epochs=1, clip_model="mnist-tiny", clip_pretrained="none", device="cpu"
    )
    instance, checks, defs = materialize_every_asset(spec, settings)
    return settings, instance, checks, spec, defs


def metadata(instance, name: str, partition: str | None = None) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["mnist_few", name]), asset_partitions=[partition] if partition else None), limit=1
    ).records
    return {key: value.value for key, value in records[0].asset_materialization.metadata.items()}


def test_unlabeled_samples_are_ingested_predicted_and_counted_but_never_trained_on(budget_graph):
    settings, instance, checks, _, _ = budget_graph
    dataset = settings.store("mnist_few").dataset()
    train = split_view(dataset, "train")
    labels, clean, original = train.values(["ground_truth.label", "ground_truth_clean.label", "ground_truth_original.label"])
    assert len(train) == LIMIT and sum(label is not None for label in labels) == LABELED
    assert all(c is not None for c in clean) and labels == original  # the truth beside, for measurement only
    assert len(usable_view(dataset, "train")) == LABELED
    assert all(label is not None for label in split_view(dataset, "validation").values("ground_truth.label"))

    # every sample is predicted and embedded; only labeled ones are scored against their label
    for field in ("lenet_predictions", "clip_embeddings", "lenet_embeddings", "clip_zero_shot"):
        assert all(value is not None for value in train.values(field)), field
    quality = train.values("label_quality")
    assert all((q is None) == (label is None) for q, label in zip(quality, labels))

    raw = metadata(instance, "raw_dataset", "train")
    assert (raw["labeled"], raw["unlabeled"]) == (LABELED, LIMIT - LABELED)
    info = metadata(instance, "dataset_metadata", "train")
    assert (info["labeled"], info["unlabeled"], info["excluded"]) == (LABELED, LIMIT - LABELED, 0)
    checkpoint = metadata(instance, "lenet_checkpoint")
    assert checkpoint["train_samples"] == LABELED  # labels; spread labels of the pool (never stored) counted apart
    assert 0 < checkpoint["pseudo_labeled"] <= LIMIT - LABELED and "spread from the 60 given" in checkpoint["pool_labels"]  # MNIST: on
    assert metadata(instance, "lenet_oof_predictions")["count"] == LABELED  # the fold models too
    queue = dataset.load_saved_view("review-queue-train")  # nothing to review on a sample with no label
    assert len(queue) and all(label is not None for label in queue.values("ground_truth.label"))
    predictions = metadata(instance, "lenet_predictions", "train")
    assert predictions["count"] == LIMIT and predictions["evaluated"] == LABELED
    requests = metadata(instance, "label_requests")
    assert (requests["strategy"], requests["labeled"], requests["unlabeled"], requests["batch"]) == (
        "margin_clusters",  # a label per class and more: the model's doubts, one per cluster
        LABELED,
        LIMIT - LABELED,
        BATCH,
    )
    assert requests["embedding"] == "hog"  # as mnist declares (pool_embedding)
    failed = failed_checks(checks)
    assert not {name for name in failed if "labels_in_range" in name or "sample_count" in name}, failed


def test_a_label_given_in_the_app_or_a_file_is_a_label_decision_that_survives_re_ingest_and_trains(budget_graph):
    from mnist_assets.ml.decisions import DecisionError, record_rows

    settings, instance, _, spec, defs = budget_graph
    store = settings.store("mnist_few")
    dataset = store.dataset()
    unlabeled = split_view(dataset, "train").match(~F("ground_truth.label").exists())
    by_app, by_file = unlabeled.limit(2)
    by_app.ground_truth.label = by_app.ground_truth_clean.label  # as the App's label editor writes it
    by_app.save()
    row = {"split": "train", "source_index": by_file.source_index, "label": by_file.ground_truth_clean.label}
    with pytest.raises(DecisionError, match="has no label in the source: use `label`"):
        record_rows(
            store.decision_log(), [(1, {**row, "decision": "relabel"})], "file:x.csv", spec, settings.source_dir, settings.downloads_dir
        )
    record_rows(store.decision_log(), [(1, {**row, "decision": "label"})], "python", spec, settings.source_dir, settings.downloads_dir)

    keys = [dg.AssetKey(["mnist_few", name]) for name in ("raw_dataset", "label_review")]  # the weekly re-ingest, then the review
    assert materialize_stage(instance, keys, "train", {"settings": settings}, defs.assets).success
    kept = dataset.select([by_app.id, by_file.id], ordered=True)
    assert kept.values("id") == [by_app.id, by_file.id]  # the same samples, not replaced
    assert kept.values("ground_truth.label") == [by_app.ground_truth_clean.label, by_file.ground_truth_clean.label]
    assert kept.values("ground_truth_original.label") == [None, None]  # the source's: none
    assert len(usable_view(dataset, "train")) == LABELED + 2  # both now train
    decisions = [d for d in store.decision_log().read() if d.source_index in (by_app.source_index, by_file.source_index)]
    assert sorted((d.decision, d.via) for d in decisions) == [("label", "app"), ("label", "python")]


def test_the_next_batch_is_unlabeled_samples_in_priority_order_in_the_app_and_a_file(budget_graph):
    import csv

    from mnist_assets.assets.label_requests import requests_file

    settings, _, _, _, _ = budget_graph
    store = settings.store("mnist_few")
    dataset = store.dataset()
    to_label = dataset.load_saved_view("to-label")
    priorities = to_label.values("label_priority")
    assert len(to_label) == BATCH and priorities == sorted(priorities, reverse=True) and min(priorities) > 0
    assert all(label is None for label in to_label.values("ground_truth.label"))
    train = split_view(dataset, "train")
    labeled_priorities = train.match(F("ground_truth_original.label").exists()).values("label_priority")  # by the source
    assert max(labeled_priorities) == 0 and max(priorities) == 1.0  # a labeled sample is never proposed
    with open(requests_file(store), newline="") as handle:
        rows = list(csv.DictReader(handle))
    # the file is the view (less what was labeled since it was written): same order, the model's guess
    unlabeled = set(train.match(~F("ground_truth.label").exists()).values("id"))
    still = [row for row in rows if row["sample_id"] in unlabeled]
    assert len(rows) == BATCH and len(still) >= BATCH - 2
    assert [row["sample_id"] for row in still] == to_label.values("id")[: len(still)]
    assert [row["predicted"] for row in still] == to_label.values("lenet_predictions.label")[: len(still)]
    # the batch's clusters spread it over the pool
    truth = to_label.values("ground_truth_clean.label")
    assert len(set(truth)) >= 8


def test_label_requests_of_a_dataset_without_unlabeled_samples_says_so(capsys):
    from mnist_assets.review import main

    assert main(["requests", "--dataset", "mnist"]) == 2
    assert "mnist declares no unlabeled samples (label_budget)" in capsys.readouterr().err


def test_a_half_unlabeled_folder_goes_through_every_asset(make_settings, tmp_path):
    """A user's folder where half the photos of each class were never labeled: `unlabeled:` points at
    them (in sub-folders of their own); they join train without a label and go through the graph."""
    import shutil

    from image_folders import folder_declaration, write_image_folder

    from mnist_assets.ml.data.idx_source import load_fashion_mnist

    labeled = write_image_folder(tmp_path / "clothes", load_fashion_mnist(None, tmp_path / "downloads"), per_class=60)
    pool = tmp_path / "new_photos"
    for number, path in enumerate(sorted(p for p in labeled.rglob("*") if p.is_file())[1::2]):  # every other file
        target = pool / f"day{number % 3}" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
    moved = sum(1 for p in pool.rglob("*") if p.is_file())
    spec = DatasetSpec(**folder_declaration(labeled, name="half_labeled", unlabeled=str(pool), label_batch=20))
    settings = make_settings(epochs=1)
    instance, checks, _ = materialize_every_asset(spec, settings)

    dataset = settings.store("half_labeled").dataset()
    paths, splits, labels, issues = dataset.values(["source_path", "split", "ground_truth.label", "data_issues"])
    from_pool = [path.startswith("~unlabeled/") for path in paths]
    assert sum(from_pool) == moved and all(split == "train" for split, pooled in zip(splits, from_pool) if pooled)
    assert all((label is None) == pooled for label, pooled in zip(labels, from_pool))  # the pool only, all of it
    assert all(found is not None for found in issues)  # data issues judged on every image, labeled or not
    train = split_view(dataset, "train")
    assert len(usable_view(dataset, "train")) == len(train) - moved > 0
    requests = {
        k: v.value
        for k, v in instance.get_latest_materialization_event(
            dg.AssetKey(["half_labeled", "label_requests"])
        ).asset_materialization.metadata.items()
    }
    assert (requests["unlabeled"], requests["batch"]) == (moved, 20) and requests["embedding"] == "pixels"  # the default
    assert len(dataset.load_saved_view("to-label")) == 20
    failed = failed_checks(checks)
    assert not {name for name in failed if "labels_in_range" in name or "sample_count" in name or "class_balance" in name}, failed


def test_new_images_in_the_unlabeled_folder_change_what_the_source_sensor_compares(tmp_path):
    import shutil

    from image_folders import folder_declaration, write_image_folder

    from mnist_assets.ml.data.idx_source import load_fashion_mnist
    from mnist_assets.ml.data.sources import source_fingerprint, watched_fingerprint

    labeled = write_image_folder(tmp_path / "clothes", load_fashion_mnist(None, tmp_path / "downloads"), per_class=20)
    pool = tmp_path / "new_photos"
    pool.mkdir()
    first = next(p for p in labeled.rglob("*") if p.is_file())
    shutil.copy(first, pool / first.name)
    plain = DatasetSpec(**folder_declaration(labeled))
    spec = DatasetSpec(**folder_declaration(labeled, unlabeled=str(pool)))
    assert watched_fingerprint(plain, None) == source_fingerprint(labeled, recursive=True)  # as recorded before `unlabeled` existed
    before = watched_fingerprint(spec, None)
    assert before != watched_fingerprint(plain, None)
    shutil.copy(first, pool / ("another" + first.suffix))  # a new photo arrives
    assert watched_fingerprint(spec, None) != before


def test_an_unknown_label_requests_strategy_is_refused_by_name(budget_graph):
    settings, instance, _, _, defs = budget_graph
    key = dg.AssetKey(["mnist_few", "label_requests"])
    result = materialize_stage(instance, [key], None, {"settings": settings}, defs.assets, configs={key: {"strategy": "badge"}})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "label_requests offers no strategy 'badge'; use one of typiclust, probcover, margin_clusters, random" in str(
        failure.event_specific_data.error
    )
