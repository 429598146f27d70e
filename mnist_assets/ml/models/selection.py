"""Which training samples to augment: the series' misclassified ones, or an active-learning style choice."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from mnist_assets.ml.core.errors import MissingInputError
from mnist_assets.ml.core.field_names import GROUND_TRUTH, HARDNESS, UNIQUENESS, scored_predictions

STRATEGIES = ("misclassified", "hardest", "most_unique", "least_confident", "active")


def percentile_rank(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1], so scores of different units can be averaged."""
    if len(values) <= 1:
        return np.zeros(len(values))
    return (rankdata(values) - 1) / (len(values) - 1)


def active_score(hardness: np.ndarray, uniqueness: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """The mean percentile rank of hardness, uniqueness and (1 - confidence): hard, rare, uncertain first."""
    return (percentile_rank(hardness) + percentile_rank(uniqueness) + percentile_rank(1 - confidence)) / 3


def select_samples(
    strategy: str,
    budget: int,
    *,
    correct: np.ndarray,
    hardness: np.ndarray,
    uniqueness: np.ndarray,
    confidence: np.ndarray,
) -> np.ndarray:
    """Positions of the chosen samples, most wanted first.

    `misclassified` takes the misclassified samples, hardest first, up to the
    budget (a better model misclassifies fewer than the series' 512, so it may
    return fewer). The others rank every sample by their score and take `budget`.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {strategy!r}; choose one of {STRATEGIES}")
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    hardness, uniqueness, confidence = (np.asarray(a, dtype=float) for a in (hardness, uniqueness, confidence))
    if strategy == "misclassified":
        wrong = np.flatnonzero(~np.asarray(correct, dtype=bool))
        return wrong[np.argsort(-hardness[wrong], kind="stable")][:budget]
    score = {
        "hardest": hardness,
        "most_unique": uniqueness,
        "least_confident": 1 - confidence,
        "active": active_score(hardness, uniqueness, confidence),
    }[strategy]
    return np.argsort(-score, kind="stable")[:budget]


def read_scores(view, predictions: str = scored_predictions("train")) -> dict[str, np.ndarray]:
    """The per-sample inputs of `select_samples` from a FiftyOne view: the quality fields and the
    predictions they were scored from (on train, the out-of-sample ones)."""
    truth, predicted, confidence, hardness, uniqueness = view.values(
        [f"{GROUND_TRUTH}.label", f"{predictions}.label", f"{predictions}.confidence", HARDNESS, UNIQUENESS]
    )
    if any(v is None for v in hardness) or any(v is None for v in predicted) or any(v is None for v in uniqueness):
        raise MissingInputError(f"samples lack {predictions}, {HARDNESS} or {UNIQUENESS}")
    return {
        "correct": np.array(predicted) == np.array(truth),
        "confidence": np.asarray(confidence, dtype=float),
        "hardness": np.asarray(hardness, dtype=float),
        "uniqueness": np.asarray(uniqueness, dtype=float),
    }
