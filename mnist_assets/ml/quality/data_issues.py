"""Every kind of data issue of a split, per sample: a score in [0, 1] (higher: worse) and a flag.

The definitions are CleanVision's (image properties: ml/quality/image_issues.py) and cleanlab Datalab's
(outlier, class imbalance), computed in bulk; each split is judged against the train split
(its distributions set the relative thresholds), so a test image is flagged by the same rule as a
training one. Thresholds, and where and why they differ from the libraries' (docs/data-issues.md):

- dark, light: CleanVision's (its score below 0.32 and 0.05: the brightest 1% under 32% brightness,
  the darkest 5% over 95%), or far from train's own: beyond Q3 + 3 IQR of train's scores and at
  least half way from Q3 to the worst (BRIGHTNESS_IQR_FACTOR). CleanVision's absolute thresholds are
  made for photographs: on MNIST's black backgrounds a digit on an 85% white background is over-exposed
  and CleanVision flags none (issue 44, item 7).
- odd_aspect_ratio: CleanVision's (score below 0.35).
- odd_size: CleanVision's rule (sqrt(area) beyond Q1 - 3 IQR or Q3 + 3 IQR of train's files).
- low_information: CleanVision's score, but flagged below a quarter of train's median entropy (per
  band: image_issues.band_entropy): its absolute threshold is set on photographs, and on 28-pixel
  digits flags 31% of MNIST.
- blurry: the edges' spread for the image's contrast (image_issues.sharpness) below 0.6 of train's
  median. CleanVision's measure, the edges' spread alone, falls with the amount of ink too: beyond
  train's fence it flagged 80 thin, sharp "1"s of MNIST, and at its own threshold no blurred digit.
- grayscale: a gray image in a 3-channel dataset whose train split is mostly in colour.
- outlier: the mean distance to the 10 nearest train samples of the sample's own class (of any
  class where it has fewer), in the gray pixels smoothed (a Gaussian of 1 pixel per 28) and centred:
  1 - correlation (gray: a tint does not make an image off-topic; smoothed: nor does a stroke's
  shift). Of the class: an off-topic set (noise, another dataset's images) is its own neighbourhood
  to a label-free search. Pixels, not LeNet's embedding: on the planted set LeNet's (trained on the
  outliers too) flagged hard digits as often as outliers. cleanlab's score, exp(-distance / train's
  median), and its rule, flagged beyond Q3 + (1 / threshold - 1) IQR of train's distances, at
  threshold 1/3 where cleanlab's is 0.37 (on the planted folder its 1.7 IQR flagged 9 ordinary
  digits beside 33 outliers, 2 IQR 7). Where the declaration adds CLIP's embedding
  (`outlier_spaces: [pixels, clip]`; real weights only), a sample far from its class in either space
  is flagged, each space by its own train fence, and its score is the larger of the two.
- near_duplicate: another sample of the split whose pixels correlate with its own above 0.99
  (the project's threshold, as duplicates_and_leaks measures it); candidates are the 10 nearest in
  the pixels' first 32 principal components.
- leak: a near copy (the same rule) in another split, by the same search duplicates_and_leaks groups
  copies with (ml/quality/duplicates.py near_copies): a test image with a twin in train flatters the test score,
  so it is flagged on the sample and enters the review queue, not only the `leaks-<split>` views.
- underperforming_group (needs a model: `underperforming_group`): cleanlab Datalab's rule, each
  cluster's mean self-confidence (the out-of-sample probability of the label in use) over the
  split's, on k-means clusters of LeNet's embedding (cleanlab clusters a kNN graph with DBSCAN, whose
  radius depends on the embedding's scale); every cluster whose ratio is under
  UNDERPERFORMING_THRESHOLD is flagged (cleanlab flags the worst alone, under 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mnist_assets.ml.core.field_names import PIXEL_ISSUE_TYPES
from mnist_assets.ml.quality import image_issues
from mnist_assets.ml.quality.duplicates import NEAR_DUPLICATE_THRESHOLD, near_copies
from mnist_assets.ml.quality.neighbours import NEIGHBOURS, nearest, unit

CLEANVISION_THRESHOLDS = {"dark": 0.32, "light": 0.05, "odd_aspect_ratio": 0.35}
LOW_INFORMATION_SHARE = 0.25  # of train's median entropy
BRIGHTNESS_IQR_FACTOR = 3.0  # dark and light relative to train: beyond Q3 + 3 IQR (CleanVision's odd_size factor)
BLURRY_SHARE = 0.6  # of train's median sharpness
SMOOTHING = 1.0  # the outlier's Gaussian, in pixels at 28x28
OUTLIER_THRESHOLD = 1 / 3  # cleanlab Datalab's rule (flagged beyond Q3 + (1 / threshold - 1) IQR), its 0.37 a little stricter
CLASS_IMBALANCE_THRESHOLD = 0.1  # cleanlab Datalab's: a class under 0.1 / K of the split
# A cluster's mean self-confidence under this share of the split's is flagged. cleanlab Datalab's
# 0.1 (worst cluster only) flagged nothing planted: the images no digit label fits sit at 0.14-0.16
# of the split, a batch of sideways digits at 0.40-0.50 (docs/data-issues.md).
UNDERPERFORMING_THRESHOLD = 0.5
CLUSTER_SIZE = 50  # samples per k-means cluster on average (at most MAX_CLUSTERS)
MAX_CLUSTERS = 100
MIN_CLUSTER_SAMPLES = 5  # cleanlab's: smaller clusters are not judged


def issue_field(issue: str) -> str:
    return f"issue_{issue}"


@dataclass(frozen=True)
class OutlierSpace:
    """One space outliers are judged in: train's unit vectors and labels in use, and the scale and
    fence train's own neighbour distances set."""

    vectors: np.ndarray
    labels: np.ndarray
    distances: np.ndarray  # train's own: each sample's mean distance to its class's neighbours (empty if cached)
    scale: float  # train's median mean distance to the neighbours
    fence: float  # the mean distance above which a sample is an outlier

    @property
    def cached(self) -> tuple[float, float]:
        return self.scale, self.fence


@dataclass(frozen=True)
class Reference:
    """What every split is judged against: the train split's distributions."""

    fences: dict[str, float]  # issue score above which a sample is flagged (relative types)
    sharpness: float  # train's median
    widths: np.ndarray  # train's files, for odd_size
    heights: np.ndarray
    mostly_colour: bool
    outliers: dict[str, OutlierSpace]  # "pixels" (train's centred pixels), then any embedding given ("clip")


@dataclass
class SplitIssues:
    scores: dict[str, np.ndarray]  # issue type -> [N] in [0, 1], higher: worse
    flags: dict[str, np.ndarray]  # issue type -> [N] bool
    twins: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # near duplicate's nearest copy (-1: none)
    outliers: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # space -> its (scores, flags)

    def flagged_types(self) -> list[list[str]]:
        """Per sample, the names of the issues it is flagged for."""
        names = list(self.flags)
        matrix = np.stack([self.flags[name] for name in names], axis=1) if names else np.zeros((0, 0), bool)
        return [[names[j] for j in np.flatnonzero(row)] for row in matrix]

    def counts(self) -> dict[str, int]:
        return {name: int(flags.sum()) for name, flags in self.flags.items()}


def fence(values: np.ndarray, iqr_factor: float) -> float:
    q1, q3 = np.percentile(values, [25, 75])
    return float(q3 + iqr_factor * (q3 - q1))


def distance_within_class(vectors: np.ndarray, labels, keys: np.ndarray, key_labels, same: bool) -> np.ndarray:
    """Per sample, the mean cosine distance to its NEIGHBOURS nearest `keys` of the same label (of
    any label where the class has fewer: a small class's few images are not each other's outliers)."""
    labels, key_labels = np.asarray(labels), np.asarray(key_labels)
    mean = np.ones(len(vectors))
    for label in np.unique(labels):
        members, candidates = np.flatnonzero(labels == label), np.flatnonzero(key_labels == label)
        if len(candidates) < NEIGHBOURS + 1:
            candidates = np.arange(len(keys))
        if same:  # positions of the members among the candidates, so that none is its own neighbour
            distances = _nearest_others(vectors[members], members, keys[candidates], candidates)
        else:
            distances, _ = nearest(vectors[members], keys[candidates], NEIGHBOURS, same=False)
        mean[members] = distances.mean(axis=1)
    return mean


def _nearest_others(queries, query_positions, keys, key_positions) -> np.ndarray:
    """Distances to the NEIGHBOURS nearest keys, leaving out each query itself (queries are among the keys)."""
    distances, where = nearest(queries, keys, NEIGHBOURS + 1, same=False)
    distances[key_positions[where] == np.asarray(query_positions)[:, None]] = np.inf
    return np.sort(distances, axis=1)[:, : min(NEIGHBOURS, len(keys) - 1)]


def centred_pixels(images: np.ndarray) -> np.ndarray:
    """Each image's gray pixels, smoothed, less their mean, unit length: their dot product is the
    smoothed images' correlation. (Every second pixel alone, a quarter of the cost, found one planted
    outlier fewer of the folder's 36.)"""
    from scipy.ndimage import gaussian_filter

    gray = image_issues.gray(image_issues.channels_last(images)).astype(np.float32)
    sigma = SMOOTHING * gray.shape[1] / 28
    vectors = gaussian_filter(gray, sigma=(0, sigma, sigma)).reshape(len(gray), -1)
    return unit(vectors - vectors.mean(axis=1, keepdims=True))


def brightness_fence(train_scores: np.ndarray) -> float:
    """The dark or light score (higher: worse) above which an image is far from train's own: Q3 + 3 IQR,
    and at least half way from Q3 to 1 (train's images may all score alike, as MNIST's black backgrounds do)."""
    halfway = (float(np.percentile(train_scores, 75)) + 1) / 2
    return max(fence(train_scores, BRIGHTNESS_IQR_FACTOR), halfway)


def outlier_space(train: np.ndarray, labels, cached: tuple[float, float] | None = None) -> OutlierSpace:
    """The outlier's reference in one space: train's vectors (made unit length) and labels; `cached`:
    train's (scale, fence) from an earlier run on the same vectors, which spares the class-wise
    neighbours of all of train (most of the cost of a small split)."""
    train, labels = unit(train), np.asarray(labels)
    distances = distance_within_class(train, labels, train, labels, same=True) if cached is None else np.zeros(0)
    scale, limit = cached or (max(float(np.median(distances)), 1e-12), fence(distances, 1 / OUTLIER_THRESHOLD - 1))
    return OutlierSpace(train, labels, distances, float(scale), float(limit))


def reference_from_train(
    properties: dict,
    widths,
    heights,
    images: np.ndarray,
    labels,
    channels: int,
    cached: dict[str, tuple[float, float]] | None = None,
    embeddings: dict[str, np.ndarray] | None = None,
) -> Reference:
    """Train's distributions. Outliers are judged in the pixels and in each of `embeddings` (space ->
    train's vectors, e.g. {"clip": ...}); `cached`: space -> train's (scale, fence), as outlier_space's."""
    scores = image_issues.cleanvision_scores(properties)
    cached = cached or {}
    spaces = {"pixels": centred_pixels(images), **(embeddings or {})}
    return Reference(
        fences={
            **{name: brightness_fence(1 - scores[name]) for name in ("dark", "light")},
            "blurry": 1 - BLURRY_SHARE,
            "low_information": 1 - LOW_INFORMATION_SHARE * float(np.median(scores["low_information"])),
        },
        sharpness=max(float(np.median(image_issues.sharpness(properties))), 1e-6),
        widths=np.asarray(widths),
        heights=np.asarray(heights),
        mostly_colour=channels == 3 and float(np.mean(properties["is_gray"])) < 0.5,
        outliers={name: outlier_space(vectors, labels, cached.get(name)) for name, vectors in spaces.items()},
    )


def outliers(reference: Reference, images: np.ndarray, labels, is_train: bool, embeddings: dict[str, np.ndarray] | None = None):
    """Per space of the reference (the pixels, then `embeddings`: space -> the split's vectors), each
    sample's outlier (score, flag): cleanlab's score, exp(-distance / train's median), and its fence."""
    vectors = {"pixels": centred_pixels(images) if not is_train else None, **(embeddings or {})}
    found = {}
    for name, space in reference.outliers.items():
        if name not in vectors:
            raise ValueError(f"outliers are judged in {name!r} too: give the split's {name} embeddings")
        if is_train:
            if len(space.distances) != len(labels):
                raise ValueError("train's issues need its own neighbour distances: build its reference without `cached`")
            mean = space.distances
        else:
            mean = distance_within_class(unit(vectors[name]), labels, space.vectors, space.labels, same=False)
        found[name] = (1 - np.exp(-mean / space.scale), mean > space.fence)
    return found


def split_issues(
    properties: dict, widths, heights, images: np.ndarray, labels, reference: Reference, is_train: bool, embeddings: dict | None = None
) -> SplitIssues:
    """Scores and flags of every issue type for one split: `properties` of its uint8 `images`, the
    sizes of their files, the labels in use; `embeddings`: the split's vectors in the reference's
    other outlier spaces."""
    cleanvision = image_issues.cleanvision_scores(properties)
    scores = {name: 1 - cleanvision[name] for name in ("dark", "light", "low_information")}
    scores["blurry"] = 1 - np.minimum(image_issues.sharpness(properties) / reference.sharpness, 1.0)
    flags = {
        name: (cleanvision[name] < CLEANVISION_THRESHOLDS[name]) | (scores[name] > reference.fences[name]) for name in ("dark", "light")
    }
    flags.update({name: scores[name] > reference.fences[name] for name in ("blurry", "low_information")})

    size, size_threshold = image_issues.size_scores(widths, heights, reference.widths, reference.heights)
    aspect = image_issues.aspect_ratio_scores(widths, heights)
    scores.update(odd_size=1 - size, odd_aspect_ratio=1 - aspect)
    flags.update(odd_size=size < size_threshold, odd_aspect_ratio=aspect < CLEANVISION_THRESHOLDS["odd_aspect_ratio"])

    is_gray = np.asarray(properties["is_gray"], dtype=bool)
    scores["grayscale"] = is_gray.astype(np.float64) if reference.mostly_colour else np.zeros(len(is_gray))
    flags["grayscale"] = is_gray & reference.mostly_colour

    spaces = outliers(reference, images, labels, is_train, embeddings)
    # Far from its class in any space: each space's own fence (a sample another space finds ordinary stays flagged)
    scores["outlier"] = np.max([score for score, _ in spaces.values()], axis=0)
    flags["outlier"] = np.any([flagged for _, flagged in spaces.values()], axis=0)

    correlation, twins = near_copies(image_issues.channels_last(np.asarray(images)))
    scores["near_duplicate"], flags["near_duplicate"] = copy_issue(correlation)
    return SplitIssues(
        {name: np.asarray(scores[name], dtype=np.float64) for name in PIXEL_ISSUE_TYPES},
        {name: np.asarray(flags[name], dtype=bool) for name in PIXEL_ISSUE_TYPES},
        np.where(flags["near_duplicate"], twins, -1),
        spaces,
    )


def leaks(images: np.ndarray, other_splits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """leak of a split: per image its highest pixel correlation with an image of another split
    (`other_splits`, their images stacked) as the score, and the flag: a near copy there."""
    return copy_issue(near_copies(images, other_splits)[0])


def copy_issue(correlation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """near_duplicate's and leak's score (the best correlation) and flag (a near copy) from near_copies'."""
    return np.clip(correlation, 0, 1), 1 - correlation < NEAR_DUPLICATE_THRESHOLD


@dataclass(frozen=True)
class Groups:
    """underperforming_group of a split: per sample its cluster's score and flag, and per cluster
    (id, size, mean self-confidence over the split's), worst first."""

    scores: np.ndarray  # 1 - the cluster's ratio where it is below the split's mean, else 0
    flags: np.ndarray
    clusters: list[tuple[int, int, float]]


def underperforming_group(embeddings: np.ndarray, probabilities: np.ndarray, labels, seed: int = 0) -> Groups:
    """cleanlab Datalab's underperforming group on k-means clusters of `embeddings`: each cluster's
    mean self-confidence (`probabilities` of the `labels`, out of sample) over the whole split's; every
    cluster whose ratio is under UNDERPERFORMING_THRESHOLD is flagged."""
    from cleanlab.rank import get_self_confidence_for_each_label
    from sklearn.cluster import KMeans

    n = len(labels)
    scores, flags = np.zeros(n), np.zeros(n, dtype=bool)
    count = min(MAX_CLUSTERS, n // CLUSTER_SIZE)
    if count < 2:
        return Groups(scores, flags, [])
    clusters = KMeans(count, n_init=1, random_state=seed).fit_predict(unit(np.asarray(embeddings, dtype=np.float32)))
    confidence = get_self_confidence_for_each_label(np.asarray(labels), np.asarray(probabilities))
    sizes = np.bincount(clusters, minlength=count)
    judged = sizes >= MIN_CLUSTER_SAMPLES
    mean = confidence[judged[clusters]].mean()
    ratios = np.bincount(clusters, weights=confidence, minlength=count) / np.maximum(sizes, 1) / max(mean, 1e-12)
    below = judged & (ratios < 1)
    scores = np.where(below[clusters], 1 - ratios[clusters], 0.0)
    order = [int(c) for c in np.argsort(ratios) if judged[c]]
    flags = (judged & (ratios < UNDERPERFORMING_THRESHOLD))[clusters]
    return Groups(scores, flags, [(c, int(sizes[c]), round(float(ratios[c]), 4)) for c in order])


def train_fingerprint(images: np.ndarray, labels) -> str:
    """What train's reference depends on: its pixels and labels in use, in order."""
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:32]


def class_imbalance(counts: dict[str, int]) -> dict:
    """cleanlab Datalab's class imbalance: a class under CLASS_IMBALANCE_THRESHOLD / K of the split;
    and the smallest class against the median one."""
    values = np.array(list(counts.values()), dtype=np.float64)
    total = values.sum()
    if total == 0:
        return {"smallest_class": None, "smallest_over_median": 0.0, "imbalanced_classes": []}
    smallest = min(counts, key=counts.get)
    limit = CLASS_IMBALANCE_THRESHOLD / len(counts) * total
    return {
        "smallest_class": smallest,
        "smallest_over_median": round(float(counts[smallest] / max(np.median(values), 1)), 4),
        "imbalanced_classes": sorted(name for name, count in counts.items() if count < limit),
    }
