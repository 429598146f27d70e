"""Exact duplicates, near duplicates and leaks between splits, with FiftyOne Brain.

Near duplicates are judged on the pixels at the declared shape (centred, cosine distance, as the
brain's sklearn index computes it): a copy that was re-saved, re-encoded or slightly retouched
stays near in pixels, while CLIP or LeNet embeddings put every neat "1" next to every other one.
The default threshold 0.01 is a pixel correlation of at least 0.99 (what it finds on MNIST and
Fashion-MNIST: docs/label-errors.md).
"""

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

NEAR_DUPLICATE_THRESHOLD = 0.01


def pixel_embeddings(images: np.ndarray) -> np.ndarray:
    """uint8 images [N, C, H, W] (or [N, H, W]) as float32 vectors in [0, 1], one row per image."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


@dataclass
class DuplicateReport:
    """What the brain found. A group is an image the index kept followed by its near copies."""

    exact_duplicate_ids: list[str] = field(default_factory=list)  # every sample that has a byte-identical twin
    near_duplicate_ids: list[str] = field(default_factory=list)  # the copies (each group keeps one original)
    groups: list[list[str]] = field(default_factory=list)
    leak_ids: list[str] = field(default_factory=list)  # samples with a near twin in another split
    leaks_between: Counter = field(default_factory=Counter)  # ("test", "train") -> samples of test with a twin in train

    @property
    def near_duplicate_groups(self) -> int:
        return len(self.groups)

    @property
    def duplicate_groups_in_order(self) -> list[str]:
        return [sid for group in self.groups for sid in group]

    def leak_groups(self, split_of: dict[str, str], split: str) -> list[list[str]]:
        """The groups holding a sample of `split` and one of another split, the split's samples first."""
        found = []
        for group in self.groups:
            splits = {split_of[sid] for sid in group}
            if split in splits and len(splits) > 1:
                found.append(sorted(group, key=lambda sid: split_of[sid] != split))
        return found


def find_duplicates_and_leaks(
    samples, sample_ids: list[str], embeddings: np.ndarray, split_field: str, threshold: float
) -> DuplicateReport:
    """Run the three brain methods on `samples` (one similarity index serves the two near-duplicate
    ones); `embeddings` holds one row per id in `sample_ids`."""
    import fiftyone.brain as fob  # here, not above: the Dagster layer reads this module's threshold when it loads

    report = DuplicateReport()
    exact = fob.compute_exact_duplicates(samples, progress=False)
    report.exact_duplicate_ids = sorted({sid for original, copies in exact.items() for sid in (original, *copies)})

    index = fob.compute_similarity(samples.select(sample_ids, ordered=True), embeddings=embeddings, backend="sklearn", progress=False)
    near = fob.compute_near_duplicates(samples, threshold=threshold, similarity_index=index)
    report.near_duplicate_ids = list(near.duplicate_ids)
    report.groups = [[original, *(copy for copy, _ in copies)] for original, copies in near.neighbors_map.items()]

    leaks = fob.compute_leaky_splits(samples, splits=split_field, threshold=threshold, similarity_index=index)
    report.leak_ids = sorted(set(leaks.leak_ids))
    # The brain pairs each copy with the image its index kept; a leak is such a pair across splits.
    split_of = dict(zip(*samples.values(["id", split_field])))
    twins_in: dict[tuple[str, str], set[str]] = {}
    for original, *copies in report.groups:
        for copy in copies:
            a, b = split_of[original], split_of[copy]
            if a != b:
                twins_in.setdefault((a, b), set()).add(original)
                twins_in.setdefault((b, a), set()).add(copy)
    report.leaks_between = Counter({pair: len(ids) for pair, ids in twins_in.items()})
    return report
