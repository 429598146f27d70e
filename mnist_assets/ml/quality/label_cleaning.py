"""The data-quality loop where the truth is known: a simulated reviewer answering the top of the
review order with the true label, and the label sets the benchmark's comparisons train on.

Plain NumPy and cleanlab (no Dagster): benchmarks/bench_label_cleaning.py records what the reviewer
decides through the platform's review log and lets the lineage retrain, as a person's decisions would.
"""

from __future__ import annotations

import numpy as np

REVIEWER = "simulated-reviewer"  # the `via` of the reviewer's decisions in the review log


def next_to_review(priority: np.ndarray, reviewed: np.ndarray, count: int) -> np.ndarray:
    """Positions of the `count` highest priorities not reviewed yet (the queue holds only samples no
    one has decided on), highest first; ties keep the split's order."""
    priority = np.where(np.asarray(reviewed, dtype=bool), -np.inf, np.asarray(priority, dtype=np.float64))
    order = np.argsort(-priority, kind="stable")
    return order[: min(count, int((~np.asarray(reviewed, dtype=bool)).sum()))]


def reviewer_rows(
    positions: np.ndarray, source_indices, given: np.ndarray, truth: np.ndarray, classes: list[str], split: str
) -> list[dict]:
    """What the reviewer decides on each position: `relabel` to the true class where the label in use
    is wrong, `confirm` where it is right (rows for `record_decisions`; `given`, `truth`: class positions)."""
    rows = []
    for position in positions:
        row = {"split": split, "source_index": int(source_indices[position]), "decision": "confirm"}
        if given[position] != truth[position]:
            row.update(decision="relabel", label=classes[int(truth[position])])
        rows.append(row)
    return rows


def random_review(size: int, count: int, seed: int) -> np.ndarray:
    """`count` positions of a split of `size` in a seeded random order: the baseline a ranking must beat."""
    return np.random.default_rng(seed).permutation(size)[:count]


def reviewed_labels(given: np.ndarray, truth: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The labels after a review of `positions` with the true answer: the given ones elsewhere."""
    labels = np.array(given, copy=True)
    labels[positions] = np.asarray(truth)[positions]
    return labels


def prune_by_noise_rate(given: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Automatic cleaning without review: the samples confident learning flags as label issues
    (cleanlab's `find_label_issues`, `filter_by="prune_by_noise_rate"`), to leave out of training.
    One process (`n_jobs=1`): cleanlab's pool forks this process, and a fork of a process whose torch
    threads are running can hang (it did, once in two full-data runs), as quality_scores knows too."""
    from cleanlab.filter import find_label_issues

    given, probabilities = np.asarray(given, dtype=np.int64), np.asarray(probabilities, dtype=np.float64)
    return find_label_issues(given, probabilities, filter_by="prune_by_noise_rate", n_jobs=1)


def review_curve(order: np.ndarray, wrong: np.ndarray, fractions) -> dict[str, float]:
    """Precision and recall after reviewing each fraction of the split in `order` (positions, first
    reviewed first); a fraction beyond the reviews in `order` is left out."""
    wrong = np.asarray(wrong, dtype=bool)
    found = np.cumsum(wrong[np.asarray(order, dtype=np.int64)])
    metrics = {}
    for fraction in fractions:
        reviewed = max(1, int(round(fraction * len(wrong))))
        if reviewed > len(found):
            continue
        metrics[f"precision_at_{fraction:.0%}"] = float(found[reviewed - 1] / reviewed)
        metrics[f"recall_at_{fraction:.0%}"] = float(found[reviewed - 1] / max(wrong.sum(), 1))
    return metrics
