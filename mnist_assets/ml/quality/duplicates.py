"""Exact duplicates (FiftyOne Brain's file hashes), near duplicates and leaks between splits.

Near duplicates are judged on the pixels at the declared shape (each image centred, cosine distance:
their correlation): a copy that was re-saved, re-encoded or slightly retouched stays near in pixels,
while CLIP or LeNet embeddings put every neat "1" next to every other one. The default threshold 0.01
is a pixel correlation of at least 0.99 (what it finds on MNIST and Fashion-MNIST:
docs/label-errors.md). One search (near_copies) serves duplicates_and_leaks and data_issues, so a
copy the one reports is a copy the other flags on the sample.
"""

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from mnist_assets.ml.quality.neighbours import NEIGHBOURS, nearest, unit

NEAR_DUPLICATE_THRESHOLD = 0.01
PRINCIPAL_COMPONENTS = 32  # where near copies' candidates are looked for


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


def near_copies(images: np.ndarray, keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The one near-copy search (data_issues' near_duplicate and leak, duplicates_and_leaks' groups):
    per image, the highest pixel correlation with another image and that image's position, among
    `keys` (uint8 images of the same shape) or, without keys, among `images` themselves. Candidates
    are the NEIGHBOURS nearest in the pixels' first principal components (an image and its copy
    project alike); an exact copy correlates 1 (flat images too)."""
    from sklearn.decomposition import PCA

    images = np.asarray(images)
    within = keys is None
    keys = images if within else np.asarray(keys)
    if len(images) == 0 or len(keys) < (2 if within else 1):
        return np.zeros(len(images)), np.full(len(images), -1)
    queries, targets = _centred(images), _centred(keys)
    fitted = PCA(min(PRINCIPAL_COMPONENTS, *targets.shape), random_state=0).fit(targets)
    query_components = unit(fitted.transform(queries))
    key_components = query_components if within else unit(fitted.transform(targets))
    _, candidates = nearest(query_components, key_components, NEIGHBOURS, same=within)
    similarity = np.einsum("nd,nkd->nk", queries, targets[candidates])
    best = similarity.argmax(axis=1)
    rows = np.arange(len(images))
    correlation, twins = similarity[rows, best], candidates[rows, best]
    first_of: dict[bytes, int] = {}
    for j, image in enumerate(keys):  # exact copies: the first image of each pixel content is the others' twin
        first_of.setdefault(np.ascontiguousarray(image).tobytes(), j)
    for i, image in enumerate(images):
        j = first_of.get(np.ascontiguousarray(image).tobytes())
        if j is not None and not (within and j == i):
            correlation[i], twins[i] = 1.0, j
            if within:
                correlation[j], twins[j] = 1.0, i
    return correlation, twins


def _centred(images: np.ndarray) -> np.ndarray:
    """Each image's pixels less their mean, unit length: their dot product is the images' correlation."""
    vectors = pixel_embeddings(images)
    return unit(vectors - vectors.mean(axis=1, keepdims=True))


def copy_groups(correlation: np.ndarray, twins: np.ndarray, threshold: float) -> list[list[int]]:
    """Positions of images joined by a near copy (1 - correlation under `threshold`), each group in
    position order (its first image the one kept), groups by their first."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    copied = np.flatnonzero((1 - np.asarray(correlation) < threshold) & (np.asarray(twins) >= 0))
    edges = coo_matrix((np.ones(len(copied)), (copied, np.asarray(twins)[copied])), shape=(len(twins), len(twins)))
    _, component = connected_components(edges, directed=False)
    members: dict[int, list[int]] = {}
    for position in np.flatnonzero(np.isin(component, component[copied])):
        members.setdefault(int(component[position]), []).append(int(position))
    return sorted((group for group in members.values() if len(group) > 1), key=lambda group: group[0])


def find_duplicates_and_leaks(samples, sample_ids: list[str], images: np.ndarray, split_field: str, threshold: float) -> DuplicateReport:
    """Exact duplicates (file hashes, FiftyOne Brain) and near duplicates and leaks (near_copies, the
    search data_issues flags with) among `samples`; `images` holds one uint8 image per id in `sample_ids`."""
    import fiftyone.brain as fob  # here, not above: the Dagster layer reads this module's threshold when it loads

    report = DuplicateReport()
    exact = fob.compute_exact_duplicates(samples, progress=False)
    report.exact_duplicate_ids = sorted({sid for original, copies in exact.items() for sid in (original, *copies)})

    correlation, twins = near_copies(images)
    report.groups = [[sample_ids[position] for position in group] for group in copy_groups(correlation, twins, threshold)]
    report.near_duplicate_ids = [sid for group in report.groups for sid in group[1:]]
    # A leak: a group holding samples of more than one split; each is a pair of the kept image and a copy.
    split_of = dict(zip(*samples.values(["id", split_field])))
    twins_in: dict[tuple[str, str], set[str]] = {}
    leaking: set[str] = set()
    for original, *copies in report.groups:
        for copy in copies:
            a, b = split_of[original], split_of[copy]
            if a != b:
                twins_in.setdefault((a, b), set()).add(original)
                twins_in.setdefault((b, a), set()).add(copy)
                leaking.update((original, copy))
    report.leak_ids = sorted(leaking)
    report.leaks_between = Counter({pair: len(ids) for pair, ids in twins_in.items()})
    return report
