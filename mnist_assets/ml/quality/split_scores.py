"""Every quality score of a split at once: the scores (`quality_scores`) and the review priority
(`review_order`) that hardness_scores writes, and which samples are worth a person's look."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_assets.ml.core.field_names import HARDNESS, LABEL_QUALITY, MISTAKENNESS, REVIEW_PRIORITY, UNIQUENESS
from mnist_assets.ml.quality.quality_scores import hardness, label_quality, mistakenness, uniqueness
from mnist_assets.ml.quality.review_order import review_priority


@dataclass
class SplitScores:
    """The quality scores of a split's samples, in its order."""

    hardness: np.ndarray
    mistakenness: np.ndarray
    uniqueness: np.ndarray
    label_quality: np.ndarray  # cleanlab's self-confidence: low = likely mislabeled
    label_issues: np.ndarray  # cleanlab's confident-learning issues, a boolean mask
    review_priority: np.ndarray  # ml/quality/review_order.py: higher, review sooner

    def fields(self) -> dict[str, np.ndarray]:
        """The five scores by their sample field (ml/core/field_names.py)."""
        return {
            HARDNESS: self.hardness,
            MISTAKENNESS: self.mistakenness,
            UNIQUENESS: self.uniqueness,
            LABEL_QUALITY: self.label_quality,
            REVIEW_PRIORITY: self.review_priority,
        }

    def review_candidates(self, count: int) -> np.ndarray:
        """Positions worth a person's look: cleanlab's label issues and the `count` highest review
        priorities, highest first."""
        highest = np.argsort(-self.review_priority, kind="stable")
        chosen = set(highest[:count].tolist()) | set(np.flatnonzero(self.label_issues).tolist())
        return np.array([position for position in highest if position in chosen], dtype=np.int64)


def score_split(logits: np.ndarray, labels: np.ndarray, embeddings: np.ndarray, device: str = "cpu") -> SplitScores:
    """Every quality score of a split from a model's out-of-sample logits, the labels (class
    positions) and embeddings: fiftyone-brain's hardness, mistakenness and uniqueness, cleanlab's
    label quality and issues, vectorized, and the review priority."""
    quality, issues = label_quality(logits, labels)
    correct = np.asarray(logits).argmax(axis=1) == np.asarray(labels)
    priority = review_priority(logits, labels)
    return SplitScores(hardness(logits), mistakenness(logits, correct), uniqueness(embeddings, device), quality, issues, priority)
