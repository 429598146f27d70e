"""The vectorized quality scores equal fiftyone-brain's own functions on real digits."""

import fiftyone as fo
import fiftyone.brain as fob
import numpy as np

from mnist_assets.ml.data.dataset_spec import DIGITS
from mnist_assets.ml.quality import quality_scores
from mnist_assets.ml.store.fiftyone_store import write_classifications, write_vectors

COUNT = 2000


def linear_logits(mnist):
    """Logits of a least-squares linear classifier fit on 5,000 training digits: real, imperfect predictions."""
    x_train = mnist.train_images[:5000].reshape(5000, -1) / 255.0
    targets = np.eye(10)[mnist.train_labels[:5000]]
    weights, *_ = np.linalg.lstsq(np.c_[x_train, np.ones(5000)], targets, rcond=None)
    x_test = mnist.test_images[:COUNT].reshape(COUNT, -1) / 255.0
    return 8 * np.c_[x_test, np.ones(COUNT)] @ weights


def test_scores_equal_fiftyone_brain(make_settings, mnist):
    settings = make_settings()
    dataset = settings.store("mnist").dataset()
    labels = mnist.test_labels[:COUNT]
    dataset.add_samples(
        [
            fo.Sample(filepath=f"/nowhere/{i}.png", split="test", source_index=i, ground_truth=fo.Classification(label=str(labels[i])))
            for i in range(COUNT)
        ]
    )
    ids = dataset.values("id")
    logits = linear_logits(mnist)
    embeddings = mnist.test_images[:COUNT].reshape(COUNT, -1).astype(np.float32) / 255.0
    write_classifications(dataset, "predictions", logits, ids, DIGITS)
    write_vectors(dataset, "pixels", embeddings, ids)
    correct = logits.argmax(axis=1) == labels
    assert 0.6 < correct.mean() < 0.95  # a real, imperfect classifier: both branches of mistakenness are used

    fob.compute_hardness(dataset, "predictions", hardness_field="brain_hardness", progress=False)
    fob.compute_mistakenness(
        dataset, "predictions", label_field="ground_truth", mistakenness_field="brain_mistakenness", use_logits=True, progress=False
    )
    fob.compute_uniqueness(dataset, embeddings="pixels", uniqueness_field="brain_uniqueness", progress=False)

    ours = {
        "hardness": quality_scores.hardness(logits),
        "mistakenness": quality_scores.mistakenness(logits, correct),
        "uniqueness": quality_scores.uniqueness(embeddings),
    }
    for name, values in ours.items():
        theirs = np.asarray(dataset.values(f"brain_{name}"), dtype=float)
        assert values.shape == (COUNT,)
        assert np.max(np.abs(values - theirs)) < 1e-6, name


def test_cleanlab_label_quality_finds_flipped_labels(mnist):
    """A model that is right about 2,000 real test digits, but whose given labels have 20 flipped:
    cleanlab's label quality ranks the flipped ones lowest and confident learning flags them."""
    rng = np.random.default_rng(0)
    truth = mnist.test_labels[:2000].astype(np.int64)
    logits = rng.normal(0, 1, (2000, 10))
    logits[np.arange(2000), truth] += 6
    given = truth.copy()
    flipped = rng.choice(2000, 20, replace=False)
    given[flipped] = (truth[flipped] + 1 + rng.integers(0, 9, 20)) % 10
    quality, issues = quality_scores.label_quality(logits, given)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.allclose(quality, probabilities[np.arange(2000), given])  # self-confidence of the given label
    assert set(np.argsort(quality)[:20]) == set(flipped)
    assert len(set(np.flatnonzero(issues)) & set(flipped)) >= 15 and issues.sum() <= 30  # recall and precision
