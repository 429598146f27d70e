"""Which embedding of an unlabeled pool should label_requests rank on and the few-labels checkpoint
spread labels along, where no CLIP weights exist (issue 45)? For MNIST and Fashion-MNIST: a pool of
train images, random labels (and TypiClust's) at a few budgets, and per embedding the accuracy of a
linear probe on test images and of the surest half of the labels spread over the pool.

    .venv/bin/python scripts/pool_embedding_probe.py [--pool 20000] [--test 5000] [--seeds 3]

The embeddings: the pixels' 50 principal components (ml/data/pixel_embedding.py, what the platform
uses), UMAP of those components (10 dimensions), and HOG descriptors' 50 principal components.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from mnist_assets.ml.data.idx_source import load_fashion_mnist, load_mnist
from mnist_assets.ml.data.pixel_embedding import hog_embedding, pixel_embedding
from mnist_assets.ml.models.pseudo_labels import spread_labels
from mnist_assets.ml.quality.label_requests import request_labels

BUDGETS = (20, 100, 500)


def umap_of_pixels(images: np.ndarray, seed: int = 0) -> np.ndarray:
    import umap

    return umap.UMAP(n_components=10, n_neighbors=15, min_dist=0.0, random_state=seed).fit_transform(pixel_embedding(images))


EMBEDDINGS = {"pixels_pca": pixel_embedding, "umap_of_pixels": umap_of_pixels, "hog_pca": hog_embedding}


def probe(embedding: np.ndarray, truth: np.ndarray, pool: int, labels: np.ndarray) -> tuple[float, float]:
    """A linear probe's test accuracy, and the accuracy of the surest half of the spread labels."""
    known = np.flatnonzero(labels[:pool] >= 0)
    model = LogisticRegression(max_iter=1000).fit(embedding[known], labels[known])
    probe_accuracy = model.score(embedding[pool:], truth[pool:])
    spread = spread_labels(embedding[:pool], labels[:pool], 10)
    spread_accuracy = float((spread.labels == truth[spread.positions]).mean()) if len(spread.positions) else float("nan")
    return probe_accuracy * 100, spread_accuracy * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=20_000)
    parser.add_argument("--test", type=int, default=5_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    parser.add_argument("--embeddings", nargs="+", default=list(EMBEDDINGS))
    args = parser.parse_args()
    downloads = Path(tempfile.gettempdir()) / "mnist_assets_downloads"
    for name in args.datasets:
        arrays = (load_mnist if name == "mnist" else load_fashion_mnist)(None, downloads)
        images = np.concatenate([arrays.train_images[: args.pool], arrays.test_images[: args.test]])
        truth = np.concatenate([arrays.train_labels[: args.pool], arrays.test_labels[: args.test]]).astype(int)
        print(f"\n## {name}: pool {args.pool}, test {args.test}, mean of {args.seeds} seeds (probe % / spread labels right %)")
        print("| embedding | seconds | " + " | ".join(f"random {b} | typiclust {b}" for b in BUDGETS) + " |")
        for embedding_name in args.embeddings:
            started = time.perf_counter()
            embedding = EMBEDDINGS[embedding_name](images)
            seconds = time.perf_counter() - started
            cells = []
            for budget in BUDGETS:
                for strategy in ("random", "typiclust"):
                    results = []
                    for seed in range(args.seeds):
                        labels = np.full(len(images), -1)
                        if strategy == "random":
                            chosen = np.random.default_rng(seed).choice(args.pool, budget, replace=False)
                        else:
                            request = request_labels(
                                embedding[: args.pool], labels[: args.pool], budget, None, "typiclust", 10, seed, rank_rest=False
                            )
                            chosen = request.batch
                        labels[chosen] = truth[chosen]
                        results.append(probe(embedding, truth, args.pool, labels))
                    mean = np.mean(results, axis=0)
                    cells.append(f"{mean[0]:.1f} / {mean[1]:.1f}")
            print(f"| {embedding_name} | {seconds:.0f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
