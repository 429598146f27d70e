"""Which unlabeled images to label next: a ranking of the pool and the next batch.

Plain NumPy and scikit-learn: the label_requests asset calls `request_labels` on train's samples
(labeled and not) and writes what it returns. Strategies:

- `typiclust`: typicality on an embedding (Hacohen et al. 2022, scikit-activeml's `TypiClust`): the
  pool and the labeled samples clustered into labeled + batch clusters; from each cluster holding no
  label yet, its most typical sample (densest among its neighbours). For few or no labels, where a
  model's uncertainty means little (the cold start).
- `margin_clusters`: uncertainty with diversity: the model's margin (top probability minus the
  second), the pool clustered into `batch` clusters on the embedding, and from each cluster the
  sample the model is least sure of; clusters in order of that margin.
- `probcover`: coverage (Yehuda et al. 2022, scikit-activeml's `ProbCover`): balls of a radius
  chosen for purity around every sample of the unit-normalized embedding, and greedily the sample
  whose ball covers most samples no label covers yet. Its distance matrix is dense, so it looks at
  a seeded sample of at most PROBCOVER_POOL candidates (the labeled ones always included).
- `badge`: uncertainty and diversity in one (Ash et al. 2020, scikit-activeml's `Badge`): k-means++
  seeding on the gradient embedding of the model's last layer, which needs the model's penultimate
  features (`features`); the assets do not store them, so it is a benchmark's arm.
- `random`: a seeded shuffle, the baseline every strategy must beat.

The default (`choose_strategy`) picks by what is known: typicality while there are fewer than
COLD_START_PER_CLASS label per class (the first batch), then margin with diversity.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("typiclust", "probcover", "margin_clusters", "badge", "random")
# What the label_requests asset offers: not badge, which needs penultimate features the assets do not store.
ASSET_STRATEGIES = tuple(name for name in STRATEGIES if name != "badge")
PROBCOVER_POOL = 10_000  # its dense distance matrix: 10,000 candidates are 800 MB
# Fewer labels than this per class: no model worth following yet, so typicality (the cold start).
# Measured (benchmarks/bench_active_learning.py, MNIST, LeNet's few-labels recipe): margin with
# clusters from 10 labels on reached 72.7 / 91.7 / 94.4 / 96.2% at 20 / 50 / 100 / 200 labels,
# TypiClust 67.1 / 87.8 / 92.0 / 93.3, random 62.3 / 83.2 / 91.7 / 94.6 (docs/active-learning.md).
COLD_START_PER_CLASS = 1


@dataclass(frozen=True)
class LabelRequest:
    strategy: str
    why: str
    batch: np.ndarray  # positions in the pool, in the order to label them
    priority: np.ndarray  # per pool sample, in [0, 1]: higher, label sooner (the batch first, in its order)


def check_strategy(strategy: str | None, offered: tuple[str, ...] = STRATEGIES) -> None:
    """Refuse a strategy name that is not one on `offered` (None: the default's choice), naming the choices."""
    if strategy is not None and strategy not in offered:
        raise ValueError(f"label_requests offers no strategy {strategy!r}; use one of {', '.join(offered)}, or leave it empty.")


def choose_strategy(labeled: int, classes: int) -> tuple[str, str]:
    """The default strategy for what is known so far, and why."""
    cold = COLD_START_PER_CLASS * classes
    if labeled < cold:
        return (
            "typiclust",
            f"{labeled} labels, fewer than {cold} ({COLD_START_PER_CLASS} per class): cold start, typical samples of uncovered clusters",
        )
    return "margin_clusters", f"{labeled} labels, at least {cold}: the model's least sure sample in each of the batch's clusters"


def request_labels(
    embedding: np.ndarray,
    labels: np.ndarray,
    batch: int,
    probabilities: np.ndarray | None = None,
    strategy: str | None = None,
    classes: int | None = None,
    seed: int = 0,
    features: np.ndarray | None = None,
    rank_rest: bool = True,
) -> LabelRequest:
    """Rank every sample whose label is negative (unlabeled) and pick the next `batch` of them.

    `embedding` and `labels` cover the labeled samples too (they tell typicality which clusters are
    covered); `probabilities` are a model's on every sample (needed by `margin_clusters` and `badge`),
    `features` its penultimate features on every sample (needed by `badge`). Without `rank_rest` only
    the batch is ranked (the rest of the pool follows in no particular order): a caller that needs
    just the batch skips the cost of ordering the whole pool."""
    check_strategy(strategy)
    labels = np.asarray(labels)
    pool = np.flatnonzero(labels < 0)
    if strategy is None:
        strategy, why = choose_strategy(int((labels >= 0).sum()), classes or int(labels.max()) + 1)
    else:
        why = "chosen in the run config"
    batch = int(min(batch, len(pool)))
    if batch == 0:
        return LabelRequest(strategy, why, np.zeros(0, dtype=np.int64), np.zeros(len(labels)))
    if strategy == "random":
        order = np.random.default_rng(seed).permutation(pool)
    else:
        if strategy in ("margin_clusters", "badge") and probabilities is None:
            raise ValueError(f"{strategy} needs a model's probabilities on the pool; train a model on the labels first.")
        if strategy == "badge" and features is None:
            raise ValueError("badge needs the model's penultimate features on every sample (`features`).")
        if strategy == "typiclust":
            chosen = _typiclust_batch(embedding, labels, batch, seed)
        elif strategy == "probcover":
            chosen = _probcover_batch(embedding, labels, pool, batch, seed)
        elif strategy == "badge":
            chosen = _badge_batch(features, probabilities, labels, batch, seed)
        else:
            chosen = _margin_cluster_batch(embedding, probabilities, pool, batch, seed)
        rest = np.setdiff1d(pool, chosen)
        if rank_rest:  # past the batch: the typical first for coverage, the least sure first for a model
            rest_key = margins(probabilities[rest]) if strategy in ("margin_clusters", "badge") else -typicality(embedding, rest)
            rest = rest[np.argsort(rest_key, kind="stable")]
        order = np.concatenate([chosen, rest])
    priority = np.zeros(len(labels))
    priority[order] = 1.0 - np.arange(len(order)) / len(order)
    return LabelRequest(strategy, why, order[:batch], priority)


def clustering(clusters: int) -> tuple[type, dict]:
    """The k-means for a batch's clusters and its options (besides the cluster count and seed):
    Lloyd's up to 500 clusters, mini-batches beyond (2,000 clusters of 50,000 samples take minutes
    with Lloyd's on 2 cores)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if clusters <= 500:
        return KMeans, {"n_init": 1}
    return MiniBatchKMeans, {"n_init": 1, "batch_size": 4096}


def _typiclust_batch(embedding, labels, batch: int, seed: int) -> np.ndarray:
    """scikit-activeml's TypiClust: the labeled and the batch's clusters, the typical sample of each
    cluster no label covers yet."""
    from skactiveml.pool import TypiClust

    y = np.where(labels >= 0, labels, np.nan).astype(float)
    algorithm, options = clustering(int((labels >= 0).sum()) + batch)
    return TypiClust(random_state=seed, cluster_algo=algorithm, cluster_algo_dict=options).query(X=embedding, y=y, batch_size=batch)


def _probcover_batch(embedding, labels, pool, batch: int, seed: int) -> np.ndarray:
    """scikit-activeml's ProbCover on the labeled samples and at most PROBCOVER_POOL candidates."""
    from skactiveml.pool import ProbCover

    rng = np.random.default_rng(seed)
    candidates = pool if len(pool) <= PROBCOVER_POOL else np.sort(rng.choice(pool, PROBCOVER_POOL, replace=False))
    looked_at = np.concatenate([np.flatnonzero(labels >= 0), candidates])
    points = embedding[looked_at] / (np.linalg.norm(embedding[looked_at], axis=1, keepdims=True) + 1e-12)
    y = np.where(labels[looked_at] >= 0, labels[looked_at], np.nan).astype(float)
    query = ProbCover(n_classes=int(max(labels.max() + 1, 2)), deltas=np.arange(0.05, 1.05, 0.05), random_state=seed)
    with warnings.catch_warnings():  # a radius below the purity target is warned about, not wrong
        warnings.simplefilter("ignore")
        return looked_at[query.query(X=points, y=y, batch_size=min(batch, len(candidates)))]


def _badge_batch(features, probabilities, labels, batch: int, seed: int) -> np.ndarray:
    """scikit-activeml's Badge on the model's own outputs (FixedOutputs)."""
    from skactiveml.pool import Badge

    y = np.where(labels >= 0, labels, np.nan).astype(float)
    classifier = _fixed_outputs_class()(probabilities, features, classes=np.arange(probabilities.shape[1]))
    rows = np.arange(len(labels), dtype=float)[:, None]  # X is each sample's row: the outputs are looked up, not computed
    return Badge(clf_embedding_flag_name="return_features", random_state=seed).query(
        X=rows, y=y, clf=classifier, fit_clf=False, batch_size=batch
    )


@functools.cache  # the class once: scikit-activeml is imported only when BADGE runs
def _fixed_outputs_class():
    from skactiveml.base import SkactivemlClassifier

    class FixedOutputs(SkactivemlClassifier):
        """A model already trained, seen by scikit-activeml through its outputs on every sample:
        `predict_proba` of a column of row numbers returns those rows' probabilities (and, asked for
        `return_features`, their penultimate features: BADGE's gradient embedding)."""

        def __init__(self, probabilities=None, features=None, classes=None, missing_label=np.nan):
            super().__init__(classes=classes, missing_label=missing_label)
            self.probabilities = probabilities
            self.features = features

        def fit(self, X, y, sample_weight=None):
            return self

        def predict_proba(self, X, return_features=False):
            rows = np.asarray(X)[:, 0].astype(int)
            if return_features:
                return self.probabilities[rows], self.features[rows]
            return self.probabilities[rows]

    return FixedOutputs


def typicality(embedding: np.ndarray, positions: np.ndarray, k: int = 20) -> np.ndarray:
    """TypiClust's typicality: the inverse of the mean distance to the k nearest neighbours."""
    from sklearn.neighbors import NearestNeighbors

    points = embedding[positions]
    k = min(k, len(points) - 1)
    if k < 1:
        return np.ones(len(points))
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    return 1.0 / (distances[:, 1:].mean(axis=1) + 1e-8)


def margins(probabilities: np.ndarray) -> np.ndarray:
    """Top probability minus the second: small, the model is torn between two classes."""
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def _margin_cluster_batch(embedding, probabilities, pool, batch: int, seed: int) -> np.ndarray:
    """The pool in `batch` clusters; from each the sample the model is least sure of, least sure first."""
    margin = margins(probabilities[pool])
    algorithm, options = clustering(batch)
    clusters = algorithm(n_clusters=batch, random_state=seed, **options).fit_predict(embedding[pool])
    firsts = np.array([np.flatnonzero(clusters == c)[np.argmin(margin[clusters == c])] for c in np.unique(clusters)])
    return pool[firsts[np.argsort(margin[firsts], kind="stable")]]
