"""The comparison of a dataset's models on its test split: accuracy and recall, what fine-tuning
fixed and broke, and where each model ranks known label errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import recall_score

from mnist_assets.ml.data.label_errors import ranking_rows
from mnist_assets.ml.quality.quality_scores import self_confidence

PAIR_ENSEMBLE = "ensemble (mean probability)"  # the checkpoint and the fine-tuned model


@dataclass
class Comparison:
    rows: list[dict]  # per model: accuracy and recall per class, against the labels in use
    recalls: dict[str, list[float]]
    fixed: int | None = None  # test samples fine-tuning got right that the checkpoint got wrong
    broken: int | None = None
    label_error_rows: list[dict] = field(default_factory=list)  # per model: known errors in each top N

    def accuracy(self, model: str) -> float:
        return next(row["accuracy"] for row in self.rows if row["model"] == model)


def per_class_recall(truth, predicted, classes: list[str]) -> list[float]:
    return recall_score(truth, predicted, labels=classes, average=None, zero_division=0).tolist()


def compare_models(truth: np.ndarray, predictions: dict[str, np.ndarray], classes: list[str], before: str, after: str) -> Comparison:
    """Each model's accuracy and per-class recall against `truth` (the labels in use of the samples
    that count); fixed and broken between the models named `before` and `after` when both are there."""
    truth = np.asarray(truth)
    rows, recalls = [], {}
    for name, predicted in predictions.items():
        predicted = np.asarray(predicted)
        recalls[name] = per_class_recall(truth, predicted, classes)
        rows.append(
            {"model": name, "accuracy": float((predicted == truth).mean()), **{f"recall_{c}": r for c, r in zip(classes, recalls[name])}}
        )
    comparison = Comparison(rows, recalls)
    if before in predictions and after in predictions:
        right_before, right_after = np.asarray(predictions[before]) == truth, np.asarray(predictions[after]) == truth
        comparison.fixed, comparison.broken = int((~right_before & right_after).sum()), int((right_before & ~right_after).sum())
    return comparison


def rank_label_errors(
    source_index, labels: np.ndarray, logits: dict[str, np.ndarray], known: list[int], pair: tuple[str, str]
) -> list[dict]:
    """How each model (name -> logits on every sample) ranks the known label errors by the
    probability it gives the given `labels` (class positions), lowest first, and so does the mean of
    the `pair` of models' probabilities (PAIR_ENSEMBLE)."""
    confidence = {name: self_confidence(values, labels) for name, values in logits.items()}
    if all(name in confidence for name in pair):
        confidence[PAIR_ENSEMBLE] = np.mean([confidence[name] for name in pair], axis=0)
    return ranking_rows(source_index, {name: -values for name, values in confidence.items()}, known)
