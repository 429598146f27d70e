"""A quick probe of ml/quality/label_requests.py's strategies, before the platform's benchmark: a pool of MNIST
train images, 10 random labels to start, batches up to 20, 50, 100 and 200 labels, a logistic
regression on the pixels' principal components, accuracy on MNIST test images (docs/active-learning.md).

    .venv/bin/python scripts/label_request_probe.py [--pool 10000] [--test 3000] [--seeds 2]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from mnist_assets.ml.data.idx_source import load_mnist
from mnist_assets.ml.data.pixel_embedding import pixel_embedding
from mnist_assets.ml.quality.label_requests import STRATEGIES, request_labels

BUDGETS = (20, 50, 100, 200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=10_000)
    parser.add_argument("--test", type=int, default=3_000)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    mnist = load_mnist(None, Path(tempfile.gettempdir()) / "mnist_assets_downloads")
    images, truth = mnist.train_images[: args.pool], mnist.train_labels[: args.pool].astype(int)
    test_images, test_truth = mnist.test_images[: args.test], mnist.test_labels[: args.test].astype(int)
    embedding = pixel_embedding(np.concatenate([images, test_images]))
    pool, test = embedding[: len(images)], embedding[len(images) :]
    print("| strategy | seed | " + " | ".join(f"{b} labels" for b in BUDGETS) + " |")
    for strategy in ("random", *[s for s in STRATEGIES if s != "random"]):
        for seed in range(args.seeds):
            labels = np.full(len(images), -1)
            start = np.random.default_rng(seed).choice(len(images), 10, replace=False)
            labels[start] = truth[start]
            row = []
            for budget in BUDGETS:
                model = LogisticRegression(max_iter=500).fit(pool[labels >= 0], labels[labels >= 0])
                probabilities = np.zeros((len(images), 10))
                probabilities[:, model.classes_] = model.predict_proba(pool)
                request = request_labels(pool, labels, budget - int((labels >= 0).sum()), probabilities, strategy, 10, seed)
                labels[request.batch] = truth[request.batch]  # the simulated annotator answers with the truth
                model = LogisticRegression(max_iter=500).fit(pool[labels >= 0], labels[labels >= 0])
                row.append(f"{model.score(test, test_truth) * 100:.1f}")
            print(f"| {strategy} | {seed} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
