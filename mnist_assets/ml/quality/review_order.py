"""The order in which a person should review labels: candidate rankings of "this label is wrong" from
out-of-sample predictions, and how well a ranking finds the wrong labels where the truth is known.

Each ranking gives every sample a priority (higher: review sooner). `review_priority` is the one the
platform writes (field `review_priority`, the review queues' order); the others stay here so that
`scripts/review_order_study.py` can compare them on declared label noise (docs/label-cleaning.md).
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax

from mnist_assets.ml.quality.label_cleaning import review_curve
from mnist_assets.ml.quality.quality_scores import mistakenness

# cleanlab's label-quality methods (cleanlab.rank.get_label_quality_scores); low quality: review sooner.
CLEANLAB_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
CHOSEN = "normalized_margin"  # best or within 0.03 of the best average precision in every scenario measured (docs/label-cleaning.md)
BASE_RANKINGS = (*CLEANLAB_METHODS, "mistakenness")
FRACTIONS = (0.01, 0.02, 0.05, 0.10, 0.20, 0.30)


def ranking(name: str, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One base ranking of a split (priorities, higher: review sooner) from out-of-sample logits and
    the labels (class positions): one of cleanlab's label-quality methods, or brain's mistakenness."""
    from cleanlab.rank import get_label_quality_scores

    probabilities = softmax(np.asarray(logits, dtype=np.float64), axis=1)
    labels = np.asarray(labels, dtype=np.int64)
    if name == "mistakenness":
        return mistakenness(logits, probabilities.argmax(axis=1) == labels)
    return 1.0 - get_label_quality_scores(labels, probabilities, method=name)


def rankings(logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Every candidate ranking: the base ones, the mean rank of cleanlab's three, and of normalized
    margin and mistakenness."""
    found = {name: ranking(name, logits, labels) for name in BASE_RANKINGS}
    found["cleanlab_mean_rank"] = mean_rank([found[method] for method in CLEANLAB_METHODS])
    found["margin_and_mistakenness"] = mean_rank([found["normalized_margin"], found["mistakenness"]])
    return found


def review_priority(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The platform's single estimate that each label is wrong, in [0, 1] (higher: review sooner):
    the chosen ranking alone, since hardness_scores computes it on every split."""
    return ranking(CHOSEN, logits, labels)


def mean_rank(priorities: list[np.ndarray]) -> np.ndarray:
    """An ensemble of rankings: each sample's mean rank among them, scaled to [0, 1]."""
    ranks = [np.argsort(np.argsort(priority, kind="stable"), kind="stable") for priority in priorities]
    return np.mean(ranks, axis=0) / max(len(priorities[0]) - 1, 1)


def ranking_metrics(priority: np.ndarray, wrong: np.ndarray, fractions=FRACTIONS) -> dict[str, float]:
    """How a ranking finds the wrong labels (`wrong`: a boolean mask, the truth): average precision
    over the whole split, and precision and recall after reviewing each fraction of it."""
    from sklearn.metrics import average_precision_score

    wrong = np.asarray(wrong, dtype=bool)
    order = np.argsort(-np.asarray(priority, dtype=np.float64), kind="stable")
    metrics = {"average_precision": float(average_precision_score(wrong, priority)) if wrong.any() else 0.0}
    return {**metrics, **review_curve(order, wrong, fractions)}
