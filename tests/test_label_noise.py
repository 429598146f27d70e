"""Declared label noise (issue 34, part 1): the same noisy labels at every ingest, the truth kept
beside in ground_truth_clean, test never noised, and training reading the noisy labels only."""

import dagster as dg
import numpy as np
import pytest
from pydantic import ValidationError

from mnist_assets.ml.data.dataset_spec import DatasetSpec
from mnist_assets.ml.data.label_noise import noisy_labels

NOISY = {"name": "noisy_mnist", "source": "mnist", "label_noise": {"rate": 0.3, "sparsity": 0.6, "splits": ["train"], "seed": 1}}


def test_noise_flips_a_rate_of_keys_the_same_way_whatever_else_is_there():
    rng = np.random.default_rng(0)
    labels, keys = rng.integers(0, 10, 20000), np.arange(20000) * 7 + 3
    pairs = {}
    for sparsity in (0.0, 0.6):
        noisy = noisy_labels(labels, keys, 10, 0.2, sparsity, seed=5)
        flipped = noisy != labels
        assert 0.19 < flipped.mean() < 0.21  # about the rate, and a flipped label is always another class
        pairs[sparsity] = len(set(zip(labels[flipped], noisy[flipped])))
        # Per key, not per position: a sample limit or another order flips the same samples the same way.
        order = rng.permutation(500)
        assert np.array_equal(noisy_labels(labels[order], keys[order], 10, 0.2, sparsity, seed=5), noisy[order])
    assert pairs[0.0] >= 80 and pairs[0.6] <= 45  # of 90 class pairs: sparsity concentrates the errors
    assert not np.array_equal(noisy_labels(labels, keys, 10, 0.2, 0.0, seed=6), noisy_labels(labels, keys, 10, 0.2, 0.0, seed=5))


@pytest.mark.parametrize(
    "noise, message",
    [
        ({"rate": 0.2, "splits": ["test"]}, "Input should be 'train' or 'validation'"),
        ({"rate": 0}, "greater than 0"),
        ({"rate": 0.2, "sparsity": 1.0}, "less than 1"),
        ({"rate": 0.2, "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_noise_declarations_are_refused(noise, message):
    with pytest.raises((ValidationError, ValueError), match=message):
        DatasetSpec(name="noisy", source="mnist", label_noise=noise)


def test_a_noisy_declaration_ingests_the_same_noise_keeps_the_truth_beside_and_trains_on_the_noise(make_settings, mnist):
    from mnist_assets.assets.common import Pipeline
    from mnist_assets.assets.data import split_tensors
    from mnist_assets.ml.store.fiftyone_store import split_view
    from mnist_assets.pipeline import build_pipeline_defs

    spec = DatasetSpec(**NOISY)
    settings = make_settings(limit=1000)
    resources = {"settings": settings}
    raw = next(a for a in build_pipeline_defs(spec).assets if a.key == dg.AssetKey(["noisy_mnist", "raw_dataset"]))
    metadata = []
    for split in ("train", "train", "test"):  # train twice: a re-ingest
        result = dg.materialize([raw], partition_key=split, resources=resources)
        assert result.success
        metadata.append(
            {k: v.value for k, v in result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata.items()}
        )
    assert (metadata[1]["samples_kept"], metadata[1]["samples_replaced"]) == (1000, 0)  # the same noisy labels: nothing changed
    dataset = settings.store("noisy_mnist").dataset()
    train = split_view(dataset, "train")
    indices, noisy, original, clean = train.values(
        ["source_index", "ground_truth.label", "ground_truth_original.label", "ground_truth_clean.label"]
    )
    assert noisy == original and clean == [str(mnist.train_labels[i]) for i in indices]  # the truth beside, from the real files
    flipped = np.mean(np.array(noisy) != np.array(clean))
    assert 0.25 < flipped < 0.35, flipped
    assert noisy == [str(n) for n in noisy_labels(mnist.train_labels[indices], np.array(indices), 10, 0.3, 0.6, seed=1)]
    assert metadata[2]["count"] == 1000
    test = split_view(dataset, "test")
    test_indices, test_labels, test_clean = test.values(["source_index", "ground_truth.label", "ground_truth_clean.label"])
    assert test_labels == [str(mnist.test_labels[i]) for i in test_indices] and set(test_clean) == {None}  # test is never noised
    # What trains is the noisy label (the platform's "source label"), never the clean one.
    _, view, tensors = split_tensors(Pipeline(spec), settings, "train", standardize=False)
    assert [str(int(label)) for label in tensors.labels] == view.values("ground_truth.label") != view.values("ground_truth_clean.label")


def test_rankings_find_the_declared_wrong_labels_and_the_metrics_count_them():
    from mnist_assets.ml.quality.review_order import CHOSEN, ranking_metrics, rankings, review_priority

    rng = np.random.default_rng(1)
    truth = rng.integers(0, 10, 4000)
    labels = noisy_labels(truth, np.arange(4000), 10, 0.2, 0.6, seed=2)
    logits = np.eye(10)[truth] * 2.0 + rng.normal(0, 1.0, (4000, 10))  # a model that mostly knows the truth
    wrong = labels != truth
    found = rankings(logits, labels)
    assert np.array_equal(review_priority(logits, labels), found[CHOSEN])
    for name, priority in found.items():
        metrics = ranking_metrics(priority, wrong)
        assert metrics["average_precision"] > 0.5 > ranking_metrics(rng.random(4000), wrong)["average_precision"], name
    # Counted by hand on four samples: reviewed in the order 0, 1, 3, 2.
    metrics = ranking_metrics(np.array([0.9, 0.8, 0.1, 0.2]), np.array([True, False, True, False]), fractions=(0.25, 0.5, 1.0))
    assert (metrics["precision_at_25%"], metrics["recall_at_50%"], metrics["precision_at_100%"]) == (1.0, 0.5, 0.5)
    assert metrics["average_precision"] == pytest.approx((1 / 1 + 2 / 4) / 2)
