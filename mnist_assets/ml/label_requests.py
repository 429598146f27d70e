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
- `random`: a seeded shuffle, the baseline every strategy must beat.

The default (`choose_strategy`) picks by what is known: typicality while there are fewer than
COLD_START_PER_CLASS labels per class, then margin with diversity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRATEGIES = ("typiclust", "margin_clusters", "random")
COLD_START_PER_CLASS = 20  # below this many labels per class a model's margin is not yet worth following
PCA_COMPONENTS = 50


@dataclass(frozen=True)
class LabelRequest:
    strategy: str
    why: str
    batch: np.ndarray  # positions in the pool, in the order to label them
    priority: np.ndarray  # per pool sample, in [0, 1]: higher, label sooner (the batch first, in its order)


def check_strategy(strategy: str | None) -> None:
    """Refuse a strategy name that is not one (None: the default's choice), naming the choices."""
    if strategy is not None and strategy not in STRATEGIES:
        raise ValueError(f"unknown label_requests strategy {strategy!r}; use one of {', '.join(STRATEGIES)}, or leave it empty.")


def choose_strategy(labeled: int, classes: int) -> tuple[str, str]:
    """The default strategy for what is known so far, and why."""
    cold = COLD_START_PER_CLASS * classes
    if labeled < cold:
        return (
            "typiclust",
            f"{labeled} labels, fewer than {cold} ({COLD_START_PER_CLASS} per class): cold start, typical samples of uncovered clusters",
        )
    return "margin_clusters", f"{labeled} labels, at least {cold}: the model's least sure sample in each of the batch's clusters"


def pixel_embedding(images: np.ndarray, components: int = PCA_COMPONENTS, seed: int = 0) -> np.ndarray:
    """What the pool itself offers without CLIP weights: its pixels' principal components (not whitened:
    whitening lost 5-13 points of a linear probe at 20-200 labels, TypiClust and random alike)."""
    from sklearn.decomposition import PCA

    flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return PCA(n_components=min(components, *flat.shape), whiten=False, random_state=seed).fit_transform(flat)


def request_labels(
    embedding: np.ndarray,
    labels: np.ndarray,
    batch: int,
    probabilities: np.ndarray | None = None,
    strategy: str | None = None,
    classes: int | None = None,
    seed: int = 0,
) -> LabelRequest:
    """Rank every sample whose label is negative (unlabeled) and pick the next `batch` of them.

    `embedding` and `labels` cover the labeled samples too (they tell typicality which clusters are
    covered); `probabilities` are a model's on every sample (needed by `margin_clusters`)."""
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
    elif strategy == "typiclust":
        order = _typiclust_order(embedding, labels, pool, batch, seed)
    else:
        if probabilities is None:
            raise ValueError("margin_clusters needs a model's probabilities on the pool; train a model on the labels first.")
        order = _margin_cluster_order(embedding, probabilities, pool, batch, seed)
    priority = np.zeros(len(labels))
    priority[order] = 1.0 - np.arange(len(order)) / len(order)
    return LabelRequest(strategy, why, order[:batch], priority)


def _typiclust_order(embedding, labels, pool, batch: int, seed: int) -> np.ndarray:
    """scikit-activeml's TypiClust batch first, then the rest of the pool by typicality."""
    from skactiveml.pool import TypiClust

    y = np.where(labels >= 0, labels, np.nan).astype(float)
    query = TypiClust(random_state=seed, cluster_algo_dict={"n_init": 1})
    chosen = query.query(X=embedding, y=y, batch_size=batch)
    rest = np.setdiff1d(pool, chosen)
    return np.concatenate([chosen, rest[np.argsort(-typicality(embedding, rest), kind="stable")]])


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


def _margin_cluster_order(embedding, probabilities, pool, batch: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    margin = margins(probabilities[pool])
    clusters = KMeans(n_clusters=batch, n_init=1, random_state=seed).fit_predict(embedding[pool])
    firsts = np.array([np.flatnonzero(clusters == c)[np.argmin(margin[clusters == c])] for c in np.unique(clusters)])
    firsts = firsts[np.argsort(margin[firsts], kind="stable")]
    rest = np.setdiff1d(np.arange(len(pool)), firsts)
    rest = rest[np.argsort(margin[rest], kind="stable")]
    return pool[np.concatenate([firsts, rest])]
